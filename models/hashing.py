"""File fingerprints: the sha256 of a model, weights or source file (models.registry) and of a
built artifact (harness.optimize.artifacts, which takes these from here so there is one implementation).
Importing this module stays cheap: no torch."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

_HASH_CHUNK_BYTES = 1 << 20  # files can be GBs of weights: hashed in chunks, never read whole


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def module_source_sha256(module_name: str) -> str:
    """The sha256 of a module's source file, found without importing it (importing models.digits
    or harness.optimize.* would load torch)."""
    module_spec = importlib.util.find_spec(module_name)
    if module_spec is None or module_spec.origin is None:
        raise RuntimeError(f"cannot find the source of {module_name}")
    return sha256_file(Path(module_spec.origin))
