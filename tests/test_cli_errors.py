"""Bad input: one line naming the input and the fix, exit 2, no traceback."""
import os
import subprocess
import sys

import pytest


def bench(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize("args, words", [
    (("parse", "/no/such/log.txt"), "/no/such/log.txt"),
    (("run", "--binary", "arm64-v8a"), "ABI=PATH"),
    (("run", "--binary", "arm64-v8a=/no/such/bm"), "/no/such/bm"),
    (("run", "--binary", "arm65=/bin/true"), "--binary arm65=/bin/true: unknown ABI arm65"),
    (("run", "--config", "/no/such.toml"), "/no/such.toml"),
    (("run", "--devices", ""), "--devices"),
    (("report", "nope", "--store", "/no/such.db"), "/no/such.db"),
    (("lab", "fault", "x", "temperature_c=hot"), "hot"),
    (("lab", "up", "--virtual", "0"), "--virtual"),
    (("run", "--confirm"), "add --baseline"),
    (("run", "--junit", "j.xml"), "add --baseline"),
    (("run", "--baseline", "latest", "--confirm", "--confirm-trials", "2"), "--confirm-trials 2"),
    (("run", "--baseline", "tag:nightly", "--store", "/no/such.db"), "/no/such.db"),
    (("compare", "a", "b", "--confirm", "--confirm-trials", "1"), "--confirm-trials 1"),
    (("run", "--accuracy-on-device=-1"), "'-1'"),  # click: a negative value reads as an option
    (("run", "--accuracy-on-device", "many"), "--accuracy-on-device"),
    (("lab", "fault", "x", "output_fault=wet"), "output_fault"),
])
def test_bad_input_is_one_line_and_exit_2(args, words, tmp_path):
    result = bench(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert "Traceback" not in result.stderr
    assert any(words in l for l in lines), result.stderr
    assert len(lines) <= 3  # click usage errors print "Usage:" + hint + the error line


def test_parse_a_directory_is_a_user_error(tmp_path):
    result = bench("parse", str(tmp_path))
    assert result.returncode == 2 and "directory" in result.stderr


UNTRACEABLE_MODULE = '''
import torch


class HiddenFromAutograd(torch.nn.Module):
    """The conv runs under no_grad, so torch-pruning's dependency graph cannot see it."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        with torch.no_grad():
            y = self.conv(x)
        return self.fc(y.mean((2, 3)))


def build():
    return HiddenFromAutograd()


build.input_shape = (1, 3, 16, 16)
'''


@pytest.mark.parametrize("args, words", [
    (("optimize", "resnet9000"), "resnet9000"),
    (("optimize", "digits_cnn", "--variant", "prune=1.5"), "prune=1.5"),
    (("optimize", "digits_cnn", "--variant", "prune=0"), "prune=0"),
    (("run", "--model", "digits_cnn", "--variant", "quant=int3"), "quant=int3"),
    (("analyze", "digits_cnn", "--ratio", "2"), "--ratio"),
    (("optimize", "resnet18", "--data", "EMPTY"), "EMPTY"),
    (("optimize", "untraceable_net:build", "--variant", "prune=0.3"), "untraceable_net:build"),
])
def test_bad_model_input_is_one_line_and_exit_2(args, words, tmp_path):
    (tmp_path / "EMPTY" / "cats").mkdir(parents=True)
    (tmp_path / "untraceable_net.py").write_text(UNTRACEABLE_MODULE)
    args = tuple(str(tmp_path / "EMPTY") if a == "EMPTY" else a for a in args)
    result = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                            text=True, timeout=600, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(tmp_path),
                                 "BENCH_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert "Traceback" not in result.stderr
    assert len(errors) == 1 and words.replace("EMPTY", "") in errors[0], result.stderr[-2000:]
    assert "(log:" not in errors[0]  # bad input keeps no log, a model's error too (BAD_INPUT)
