"""Shared test set-up: every test session gets its own state, cache and report folders, so tests
never touch (or depend on) a user's lab or artifacts."""
import os
import tempfile
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="bench-tests-"))
os.environ["BENCH_STATE_DIR"] = str(_SESSION_DIR / "state")
os.environ["BENCH_CACHE_DIR"] = str(_SESSION_DIR / "cache")


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR
