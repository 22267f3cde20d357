"""`bench doctor` on a real virtual device: what it finds, each red item with its fix, and a
device another bench holds is only looked at (no push, no performance-mode switch)."""
import json
from pathlib import Path

import pytest

from device_agents.virtual.faults import clear_faults, set_faults
from harness.config import LabConfig, LabServer, RunConfig
from harness.targets.adb.provider import AdbProvider
from harness.targets.adb.session import AdbServer
from harness.targets.adb.virtual_lab import lab_down, lab_up
from harness.targets.device_lock import OnDeviceLock
from harness.targets.doctor import Status, diagnose
from harness.targets.locks import LockOwner

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    base = tmp_path_factory.mktemp("doctor-lab")
    state = lab_up(1, base)
    yield state
    lab_down(base)


@pytest.fixture
def target(lab):
    record = lab.devices[0]
    clear_faults(Path(record.state_dir))
    server = AdbServer("127.0.0.1", lab.adb_port, name="virtual-lab")
    (found,) = AdbProvider([server]).select(record.serial)
    yield found
    clear_faults(Path(record.state_dir))


def _config(lab) -> RunConfig:
    return RunConfig(lab=LabConfig(servers=[LabServer("virtual-lab", "127.0.0.1", lab.adb_port)]))


def _perf_mode_writes(lab) -> str | None:
    from device_agents.virtual.android_tools import FIXED_PERFORMANCE_KEY, SETTINGS_FILE

    path = Path(lab.devices[0].state_dir) / SETTINGS_FILE
    return json.loads(path.read_text()).get(FIXED_PERFORMANCE_KEY) if path.exists() else None


def test_a_healthy_virtual_device_has_no_red_item(lab, target):
    report = diagnose(target, _config(lab))
    checks = {c.name: c for c in report.checks}
    assert report.red == [], [(c.name, c.found) for c in report.red]
    assert checks["benchmark_model"].found.startswith("tflite bench-virtual")
    assert checks["perf mode"].status is Status.OK and _perf_mode_writes(lab) == "false"
    assert checks["thermal (HAL)"].found.startswith("3 sensors, status 0, skin 31.0 °C")
    assert checks["lock"].found == "free" and report.device_id == "VIRT0001"


def test_red_items_come_with_their_fix(lab, target):
    set_faults(Path(lab.devices[0].state_dir), battery_level=8, charging=False,
               storage_quota_bytes=8 << 20)
    checks = {c.name: c for c in diagnose(target, _config(lab)).checks}
    assert checks["fit to measure"].status is Status.RED
    assert checks["fit to measure"].found == "battery 8 % < 20 % and not charging"
    assert checks["fit to measure"].fix == "plug it into USB power"
    assert checks["free space"].status is Status.RED and "free 84 MiB on /data" in checks["free space"].fix


def test_a_device_in_use_is_only_looked_at(lab, target):
    clear_faults(Path(lab.devices[0].state_dir))
    target.shell("rm -rf /data/local/tmp/bench")  # nothing of bench's there
    before = _perf_mode_writes(lab)
    with OnDeviceLock(target, LockOwner.this_process("someone-elses-run"), wait=False):
        checks = {c.name: c for c in diagnose(target, _config(lab)).checks}
    assert checks["lock"].status is Status.RED and "someone-elses-run" in checks["lock"].found
    assert checks["perf mode"].found == "not tried: the device is in use"
    assert checks["benchmark_model"].status is Status.NOTE
    assert target.shell("ls /data/local/tmp/bench").status != 0  # nothing pushed
    assert _perf_mode_writes(lab) == before
