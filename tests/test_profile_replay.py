"""Profiles replayed and recorded: `bench lab record-profile` of a virtual device that replays a
real phone gives back that phone's files; a phone that denies the shell its cpufreq files or
whose toybox has no taskset (faults put on a real profile, as on old or locked-down phones) is
measured anyway, and each sample says how."""
import json
import shutil
from pathlib import Path

import pytest

from device_agents.virtual.faults import set_faults
from device_agents.virtual.profile import PROFILES_DIR, parse_getprop
from harness.config import HygieneSettings, LabConfig, LabServer, RunConfig
from harness.results.store import Store
from harness.run import run_benchmarks
from harness.targets.adb.session import DeviceSession
from harness.targets.hygiene import unfit_reasons
from harness.targets.telemetry import read_telemetry
from harness.targets.adb.virtual_lab import lab_down, lab_up
from harness.targets.profile_recorder import record_profile
from tests.virtual_lab_fixtures import FAST_BENCHMARK, SHIPPED_BENCHMARK_MODEL

pytestmark = pytest.mark.slow

PHONE = PROFILES_DIR / "pixel_8"


def test_recording_a_replayed_phone_gives_its_files_back(tmp_path):
    base = tmp_path / "lab"
    state = lab_up(1, base, profile="pixel_8")
    try:
        session = DeviceSession(state.devices[0].serial, state.server)
        recorded = record_profile(session, tmp_path / "recorded", serial_label="VIRT0001")
    finally:
        lab_down(base)
    out = tmp_path / "recorded"
    assert recorded.model == "Pixel 8"
    original = parse_getprop((PHONE / "getprop.txt").read_text())
    again = parse_getprop((out / "getprop.txt").read_text())
    assert again["ro.serialno"] == "REDACTED"  # redacted by default
    # Every property the phone printed, as it printed it (the virtual device adds its own where
    # the profile has none: bench.virtual.*, and defaults such as ro.kernel.qemu).
    assert {k: again.get(k) for k in original if k != "ro.serialno"} == \
        {k: v for k, v in original.items() if k != "ro.serialno"}
    assert (out / "dumpsys/battery.txt").read_text() == (PHONE / "dumpsys/battery.txt").read_text()
    for cpu in range(9):
        name = f"fs/sys/devices/system/cpu/cpu{cpu}/cpufreq/cpuinfo_max_freq"
        assert (out / name).read_text().split() == (PHONE / name).read_text().split()
    sources = (out / "SOURCES").read_text()
    assert "getprop.txt: `adb shell getprop (serial numbers redacted)`" in sources
    assert "VIRT0001" not in sources and "VIRT0001" not in (out / "getprop.txt").read_text()
    with pytest.raises(Exception, match="not empty"):
        record_profile(session, out)


@pytest.fixture
def locked_down_phone(tmp_path) -> Path:
    """The Pixel 8 profile with two faults of real phones put on it: SELinux denies the shell
    the cpufreq tree, and its toybox lists no taskset (toybox before Android 6)."""
    profile = tmp_path / "pixel_8_locked"
    shutil.copytree(PHONE, profile)
    (profile / "denied.txt").write_text("/sys/devices/system/cpu/cpu0\n/sys/devices/system/cpu/cpu1\n"
                                        "/sys/devices/system/cpu/cpu2\n/sys/devices/system/cpu/cpu3\n"
                                        "/sys/devices/system/cpu/cpu4\n/sys/devices/system/cpu/cpu5\n"
                                        "/sys/devices/system/cpu/cpu6\n/sys/devices/system/cpu/cpu7\n"
                                        "/sys/devices/system/cpu/cpu8\n")
    applets = ["cat", "chmod", "date", "df", "grep", "head", "id", "ls", "mkdir", "mv", "nproc",
               "rm", "rmdir", "sha256sum", "sleep", "stat", "tail", "touch", "uname", "wc",
               "whoami", "cp"]
    (profile / "toybox.txt").write_text("".join(f"{a}\n" for a in applets))
    return profile


def test_no_taskset_and_no_cpufreq_are_recorded_and_the_run_goes_on(locked_down_phone, tmp_path,
                                                                       tiny_model):
    base = tmp_path / "lab"
    state = lab_up(1, base, profile=locked_down_phone)
    try:
        session = DeviceSession(state.devices[0].serial, state.server)
        denied = session.shell("cat /sys/devices/system/cpu/cpu8/cpufreq/cpuinfo_max_freq")
        assert (denied.status, denied.stderr.strip()) == (
            1, "cat: /sys/devices/system/cpu/cpu8/cpufreq/cpuinfo_max_freq: Permission denied")
        assert session.shell("taskset 1 true").status == 127
        config = RunConfig(model=str(tiny_model), variants=["baseline"], benchmark=FAST_BENCHMARK,
                           peak_memory=False, binaries={"arm64-v8a": str(SHIPPED_BENCHMARK_MODEL)},
                           store_path=tmp_path / "bench.db", reports_dir=tmp_path / "reports",
                           hygiene=HygieneSettings(cooldown_poll_s=0.2),
                           lab=LabConfig(servers=[LabServer("virtual-lab", "127.0.0.1",
                                                            state.adb_port)]))
        result = run_benchmarks(config)
    finally:
        lab_down(base)
    (m,) = Store(config.store_path).measurements(result.run_id)
    assert result.exit_code == 0 and m.status == "ok", m.error
    assert m.cpu_mask is None and not m.command.startswith("taskset")
    notes = json.loads(m.conditions_json)["notes"]
    assert notes["cpu_pinning"].startswith("no taskset (toybox before Android 6)")
    assert notes["topology"] == "cpufreq unreadable: all 9 cores (nproc) count as big"
    assert m.num_threads == 9 and m.governor == "unreadable"
    report = (result.report_dir / "report.md").read_text()
    assert "How each device's numbers were obtained" in report and "unpinned: no taskset" in report


def test_faults_still_apply_on_top_of_a_recorded_phone(tmp_path):
    """An Android 6 phone (no thermalservice): its own battery dump, with a fault on top."""
    base = tmp_path / "lab"
    state = lab_up(1, base, profile="padfone_s")
    try:
        record = state.devices[0]
        session = DeviceSession(record.serial, state.server)
        missing = session.shell("dumpsys thermalservice")
        assert "Can't find service: thermalservice" in missing.output
        idle = read_telemetry(session)
        assert (idle.battery_pct, idle.battery_temp_c, idle.thermal_status) == (97, 24.5, None)
        assert idle.gate_source == "dumpsys battery" and unfit_reasons(idle, HygieneSettings()) == []
        set_faults(Path(record.state_dir), temperature_c=48.0, battery_level=9, charging=False)
        hot = read_telemetry(session)
        assert (hot.battery_pct, hot.battery_temp_c, hot.charging) == (9, 48.0, False)
        reasons = unfit_reasons(hot, HygieneSettings())
        assert reasons[0].startswith("device hot: 48.0 °C > 45.0 °C (dumpsys battery)")
        assert reasons[1] == "battery 9 % < 20 % and not charging"
        assert "usb otg:false" in session.shell("dumpsys battery").stdout  # the rest as recorded
    finally:
        lab_down(base)
