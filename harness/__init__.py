"""bench: make ML models fit for phones and prove it on real (or virtual) Android devices."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
