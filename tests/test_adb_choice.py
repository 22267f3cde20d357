"""Which adb bench runs (issue 9, point 7): the adbutils wheel's, whatever adb is on PATH (a
mobile engineer's platform-tools, Debian's 29.0.6), unless BENCH_ADB says otherwise; and an
older adb still drives the virtual lab, authentication included."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import adbutils
import pytest

from harness.errors import UserError
from harness.targets.adb.adb_binary import adb_path, adb_version

REPO_ROOT = Path(__file__).resolve().parent.parent
WHEEL_ADB = Path(adbutils.__file__).resolve().parent / "binaries" / "adb"
DEBIAN_ADB = Path("/usr/lib/android-sdk/platform-tools/adb")  # Debian's `adb` package


def test_bench_runs_the_wheels_adb_whatever_is_on_path(monkeypatch):
    monkeypatch.delenv("BENCH_ADB", raising=False)
    assert adb_path() == str(WHEEL_ADB)
    on_path = shutil.which("adb")
    if on_path and Path(on_path).resolve() != WHEEL_ADB:
        # adbutils alone would have taken the one on PATH.
        assert adbutils.adb_path() == on_path
    assert adb_version(adb_path()).startswith("1.0.41 (36.")


def test_bench_adb_selects_another_and_a_bad_one_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_ADB", str(tmp_path / "no-adb"))
    with pytest.raises(UserError, match="BENCH_ADB=.*no-adb: not an executable file"):
        adb_path()
    env = dict(os.environ, BENCH_ADB=str(tmp_path / "no-adb"), BENCH_STATE_DIR=str(tmp_path / "s"))
    done = subprocess.run([sys.executable, "-m", "harness", "lab", "up", "--virtual", "1"],
                          capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "BENCH_ADB" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.skipif(not DEBIAN_ADB.is_file(), reason="Debian's adb package is not installed")
def test_debian_adb_29_drives_the_virtual_lab(monkeypatch, tmp_path):
    from harness.targets.adb.session import DeviceSession
    from harness.targets.adb.virtual_lab import lab_down, lab_up

    monkeypatch.setenv("BENCH_ADB", str(DEBIAN_ADB))
    assert adb_version(str(DEBIAN_ADB)).startswith("1.0.41 (29.")
    base = tmp_path / "state"
    lab = lab_up(1, base=base)
    try:
        device = lab.devices[0]
        listed = subprocess.run([str(DEBIAN_ADB), "-P", str(lab.adb_port), "devices"],
                                capture_output=True, text=True, timeout=60).stdout
        assert f"{device.serial}\tdevice" in listed
        result = DeviceSession(device.serial, lab.server).shell("echo ok")
        assert (result.status, result.stdout.strip()) == (0, "ok")
    finally:
        lab_down(base)
