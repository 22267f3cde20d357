"""A real small disk for storage-fault tests: a tmpfs mounted for the test and unmounted after.

Mounting needs root (CI runs as root); where it is not permitted the test is skipped."""
from __future__ import annotations

import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (e.g. "4m") mounted at `where`."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        # Lazy: a file a failed test left open must not keep the mount after the session.
        subprocess.run(["umount", "-l", str(where)], check=True)


def remount(where: Path, mode: str) -> None:
    """`ro` or `rw`: the file system turns read-only (or writable) under whoever uses it."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], check=True,
                   capture_output=True)


def fill(disk: Path) -> Path:
    """Take every free byte of the disk with one file; returns it (unlink it to free the disk)."""
    filler = disk / "filler"
    with open(filler, "ab", buffering=0) as f:
        for chunk in (65536, 512):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError:
                pass
    return filler
