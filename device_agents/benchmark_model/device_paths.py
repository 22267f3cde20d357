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
    """A device path that would lead outside the device's root."""


def host_path(device_path: str, environ=os.environ) -> str:
    root = environ.get(DEVICE_ROOT_ENV)
    if not root:
        return device_path
    # Refuse any '..' component outright so a path never silently changes meaning.
    if ".." in device_path.split("/"):
        raise PathEscapeError(device_path)
    real_root = os.path.realpath(root)
    if device_path.startswith("/"):
        candidate = os.path.join(real_root, posixpath.normpath(device_path).lstrip("/"))
    else:  # cwd is the sandbox folder of the device's cwd
        candidate = os.path.join(os.getcwd(), device_path)
    # Whatever the path says, the file opened must lie inside the device's root.
    resolved = os.path.realpath(candidate)
    if resolved != real_root and not resolved.startswith(real_root + os.sep):
        raise PathEscapeError(device_path)
    return candidate
