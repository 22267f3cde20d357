"""Bad input: one line naming the input and the fix, exit 2, no traceback."""
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
    (("run", "--config", "/no/such.toml"), "/no/such.toml"),
    (("run", "--devices", ""), "--devices"),
    (("report", "nope", "--store", "/no/such.db"), "/no/such.db"),
    (("lab", "fault", "x", "temperature_c=hot"), "hot"),
    (("lab", "up", "--virtual", "0"), "--virtual"),
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
