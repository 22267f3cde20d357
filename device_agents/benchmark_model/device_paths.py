"""Mapping the device paths the tool is given to host paths.

The virtual device runs this tool with cwd = the sandbox folder matching the device cwd and
BENCH_DEVICE_ROOT = the host folder that is the device's `/`. Absolute paths are device paths;
relative ones are relative to cwd and so already right. Without BENCH_DEVICE_ROOT (run directly
on the host) paths are host paths.
"""
import os
import posixpath

DEVICE_ROOT_ENV = "BENCH_DEVICE_ROOT"


class PathEscapeError(ValueError):
    """A device path that `..` would take outside the device's root."""


def host_path(device_path: str, environ=os.environ) -> str:
    root = environ.get(DEVICE_ROOT_ENV)
    if not root or not device_path.startswith("/"):
        return device_path
    normalized = posixpath.normpath(device_path)
    # normpath keeps leading '..' only for relative paths; for an absolute one, '/..' becomes '/'.
    # Refuse any '..' component outright so a path never silently changes meaning.
    if ".." in device_path.split("/"):
        raise PathEscapeError(device_path)
    return os.path.join(os.path.realpath(root), normalized.lstrip("/"))
