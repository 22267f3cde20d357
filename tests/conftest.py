"""Shared test set-up: every test session gets its own state, cache and report folders, so tests
never touch (or depend on) a user's lab or artifacts."""
import os
import tempfile
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="bench-tests-"))
os.environ["BENCH_STATE_DIR"] = str(_SESSION_DIR / "state")
os.environ["BENCH_CACHE_DIR"] = str(_SESSION_DIR / "cache")
os.environ["BENCH_BINARIES_DIR"] = str(_SESSION_DIR / "binaries")


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A real two-conv .tflite of a few KB (litert-torch), for tests that need any model."""
    import litert_torch
    import torch

    class TinyNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
            self.fc = torch.nn.Linear(8, 10)

        def forward(self, x):
            x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
            return torch.softmax(self.fc(x.mean(dim=(2, 3))), dim=-1)

    path = tmp_path_factory.mktemp("model") / "tiny.tflite"
    litert_torch.convert(TinyNet().eval(), (torch.randn(1, 3, 16, 16),)).export(str(path))
    return path
