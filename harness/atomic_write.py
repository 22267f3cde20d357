"""Writing an output file whole or not at all: written beside its final name, synced, then
renamed over it. A full or read-only disk leaves the earlier file as it was (never a truncated
compare.md or JUnit XML a CI system would read) and is one line naming the file."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from harness.errors import StorageError


def write_atomic(path: Path, content: str | bytes, what: str) -> Path:
    """`content` into `path` (text as UTF-8); `what` names the file in the error, e.g.
    "compare.md"."""
    path = Path(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise StorageError(f"{what} {path}: could not write it ({exc.strerror or exc}); free "
                           "space or fix the folder's permissions, then run again") from None
    return path
