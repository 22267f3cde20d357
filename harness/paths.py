"""Where bench keeps things on the host. Each location can be moved with an environment variable."""
from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """Lab state (which virtual devices and adb server `bench lab up` started)."""
    base = os.environ.get("BENCH_STATE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "bench"


def cache_dir() -> Path:
    """Content-addressed artifacts (converted models)."""
    base = os.environ.get("BENCH_CACHE_DIR")
    return Path(base) if base else Path.home() / ".cache" / "bench" / "artifacts"


def reports_dir() -> Path:
    return Path(os.environ.get("BENCH_REPORTS_DIR", "reports"))


def binaries_dir() -> Path:
    """Fetched benchmark_model binaries (`bench binaries fetch`), one folder per sha256."""
    base = os.environ.get("BENCH_BINARIES_DIR")
    return Path(base) if base else Path.home() / ".cache" / "bench" / "binaries"
