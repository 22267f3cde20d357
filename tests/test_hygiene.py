"""Measurement hygiene and telemetry against a real virtual device behind the real adb server.

The lab is this module's own (its own state folder), and every test leaves the device's faults
cleared. Parsers and the CPU mask logic are also checked on fixed inputs from real phones' shapes.
"""
import os
import threading
from pathlib import Path

import pytest

from device_agents.virtual.faults import clear_faults, set_faults
from harness.targets.hygiene import (HygieneSettings, check_storage, free_space, pinned_command,
                                     unfit_reasons, wait_until_ready)
from harness.targets.tuning import device_tuning, read_governors
from harness.targets.adb.session import DeviceSession
from harness.targets.telemetry import (Telemetry, cpu_topology, parse_charging, parse_zones,
                                       read_telemetry, topology_from_max_freqs)
from harness.errors import DeviceError
from harness.targets.adb.virtual_lab import lab_down, lab_up

FAST = dict(cooldown_poll_s=0.1, cooldown_deadline_s=0.6)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    base = tmp_path_factory.mktemp("hygiene-lab")
    state = lab_up(1, base)
    yield state
    lab_down(base)


@pytest.fixture
def device(lab):
    record = lab.devices[0]
    clear_faults(Path(record.state_dir))
    yield record
    clear_faults(Path(record.state_dir))


def device_core_count(record) -> int:
    """The lab gives each virtual device host cores of its own; it shows only those."""
    return len(record.host_cpus) if record.host_cpus else os.cpu_count()


@pytest.fixture
def session(lab, device):
    return DeviceSession(device.serial, lab.server)


# -- CPU topology ---------------------------------------------------------------------------------
def test_big_cores_are_the_fastest_cluster_and_the_mask_is_hex():
    big_little = {**{c: 1_800_000 for c in range(4)}, **{c: 2_800_000 for c in range(4, 8)}}
    topology = topology_from_max_freqs(big_little)
    assert topology.big_cores == [4, 5, 6, 7]
    assert topology.mask_hex == "f0"
    assert topology.default_threads == 4

    prime = {**{c: 1_800_000 for c in range(4)}, **{c: 2_400_000 for c in range(4, 7)}, 7: 3_000_000}
    assert topology_from_max_freqs(prime).big_cores == [7]
    assert topology_from_max_freqs(prime).mask_hex == "80"

    equal = {c: 2_000_000 for c in range(6)}
    assert topology_from_max_freqs(equal).big_cores == list(range(6))
    assert topology_from_max_freqs(equal).mask_hex == "3f"
    assert pinned_command("echo hi", topology) == "taskset f0 echo hi"


def test_topology_of_the_virtual_device_matches_its_cpufreq_files(session, device):
    topology = cpu_topology(session)
    cpu_root = Path(device.state_dir) / "fs/sys/devices/system/cpu"
    on_disk = {int(p.parent.parent.name[3:]): int(p.read_text())
               for p in cpu_root.glob("cpu[0-9]*/cpufreq/cpuinfo_max_freq")}
    assert topology.max_freq_khz == on_disk
    assert len(on_disk) == device_core_count(device)
    highest = max(on_disk.values())
    assert topology.big_cores == sorted(c for c, f in on_disk.items() if f == highest)
    if len(set(on_disk.values())) == 1:  # the host's cores are alike: every core is big
        assert topology.big_cores == list(range(device_core_count(device)))
    assert int(topology.mask_hex, 16) == sum(1 << c for c in topology.big_cores)


def test_pinned_command_runs_on_the_big_cores_only(session):
    single = topology_from_max_freqs({0: 2_000_000, 1: 1_000_000})
    result = session.shell(pinned_command("nproc", single))
    assert result.status == 0, result.output
    assert result.stdout.strip() == "1"


# -- telemetry ------------------------------------------------------------------------------------
def test_telemetry_of_a_normal_virtual_device(session, device):
    t = read_telemetry(session)
    assert t.at.endswith("+00:00")
    assert t.battery_pct == 85 and t.charging is True and t.battery_temp_c == 29.0
    assert t.thermal_status == 0
    assert t.zones_c == {"cpu-0-0-usr": 35.0, "battery": 29.0, "skin-therm": 31.0}
    assert t.max_temp_c == 35.0
    assert sorted(t.cpufreq_khz) == list(range(device_core_count(device)))
    assert all(khz > 0 for khz in t.cpufreq_khz.values())
    assert Telemetry.from_dict(t.to_dict()) == t


def test_telemetry_shows_temperature_battery_and_charging_faults(session, device):
    set_faults(device.state_dir, temperature_c=48.5, battery_level=12, charging=False)
    t = read_telemetry(session)
    assert t.zones_c == {"cpu-0-0-usr": 48.5, "battery": 48.5, "skin-therm": 48.5}
    assert t.max_temp_c == 48.5 and t.battery_temp_c == 48.5
    assert t.thermal_status == 1
    assert t.battery_pct == 12 and t.charging is False


def test_zone_parsing_survives_real_phone_oddities():
    grep_output = "\n".join([
        "/sys/class/thermal/thermal_zone0/type:cpu",
        "/sys/class/thermal/thermal_zone0/temp:41500",
        "/sys/class/thermal/thermal_zone1/type:cpu",
        "/sys/class/thermal/thermal_zone1/temp:43000",
        "/sys/class/thermal/thermal_zone2/type:battery",
        "/sys/class/thermal/thermal_zone2/temp:30",        # whole degrees
        "/sys/class/thermal/thermal_zone3/type:disabled",
        "/sys/class/thermal/thermal_zone3/temp:-273000",   # a switched-off sensor
        "/sys/class/thermal/thermal_zone4/type:no-temp",   # temp unreadable (EINVAL)
    ])
    assert parse_zones(grep_output) == {"cpu": 41.5, "cpu@thermal_zone1": 43.0, "battery": 30.0}


def test_charging_is_any_power_source_or_the_battery_status():
    assert parse_charging("  AC powered: false\n  USB powered: true\n  status: 2\n") is True
    assert parse_charging("  AC powered: false\n  USB powered: false\n  status: 3\n") is False
    assert parse_charging("  status: 5\n") is True
    assert parse_charging("") is None


# -- readiness ------------------------------------------------------------------------------------
def test_a_normal_device_is_ready_at_once(session):
    readiness = wait_until_ready(session, HygieneSettings(**FAST),
                                 sleep=lambda s: pytest.fail("slept on a ready device"))
    assert readiness.ok and readiness.reason is None and readiness.waited_s == 0
    assert readiness.before is readiness.after


def test_a_hot_device_is_not_ready_after_the_deadline(session, device):
    set_faults(device.state_dir, temperature_c=50.0)
    settings = HygieneSettings(**FAST)
    readiness = wait_until_ready(session, settings)
    assert not readiness.ok
    assert readiness.reason.startswith("device hot: 50.0 °C > 45.0 °C")
    assert "thermal status 2 > 1" in readiness.reason
    assert readiness.reason.endswith("s cooldown")
    assert readiness.waited_s >= settings.cooldown_deadline_s
    assert readiness.after.max_temp_c == 50.0
    assert readiness.to_dict()["after"]["zones_c"]["skin-therm"] == 50.0


def test_the_deadline_counts_injected_sleeps(session, device):
    set_faults(device.state_dir, temperature_c=55.0)
    slept = []
    readiness = wait_until_ready(session, HygieneSettings(cooldown_poll_s=2, cooldown_deadline_s=9),
                                 sleep=slept.append)
    assert not readiness.ok
    assert slept == [2, 2, 2, 2, 1]
    assert "after 9 s cooldown" in readiness.reason


def test_a_device_that_cools_down_during_the_wait_becomes_ready(session, device):
    set_faults(device.state_dir, temperature_c=50.0)
    cooler = threading.Timer(0.5, lambda: set_faults(device.state_dir, temperature_c=None))
    cooler.start()
    try:
        readiness = wait_until_ready(session, HygieneSettings(cooldown_poll_s=0.1,
                                                              cooldown_deadline_s=30))
    finally:
        cooler.cancel()
    assert readiness.ok, readiness.reason
    assert readiness.waited_s > 0
    assert readiness.before.max_temp_c == 50.0
    assert readiness.after.max_temp_c == 35.0


def test_low_battery_is_unfit_unless_charging(session, device):
    set_faults(device.state_dir, battery_level=10, charging=False)
    readiness = wait_until_ready(session, HygieneSettings(**FAST))
    assert not readiness.ok
    assert readiness.reason.startswith("battery 10 % < 20 % and not charging")

    set_faults(device.state_dir, charging=None)  # plugged back in
    assert wait_until_ready(session, HygieneSettings(**FAST)).ok


def test_unknown_values_are_not_held_against_a_device():
    assert unfit_reasons(Telemetry(at="now"), HygieneSettings()) == []


# -- storage --------------------------------------------------------------------------------------
def test_storage_check_refuses_before_any_push(session, device, tmp_path):
    remote_dir = "/data/local/tmp/hygiene-test"
    artifact = tmp_path / "model.tflite"
    artifact.write_bytes(os.urandom(64 * 1024))
    settings = HygieneSettings(storage_margin_bytes=1024 * 1024)
    set_faults(device.state_dir, storage_quota_bytes=512 * 1024)

    def push_if_room() -> None:
        check_storage(session, remote_dir, artifact.stat().st_size, settings)
        session.shell(f"mkdir -p {remote_dir}")
        session.push(artifact, f"{remote_dir}/model.tflite")

    with pytest.raises(DeviceError) as refused:
        push_if_room()
    message = str(refused.value)
    assert f"needs {64 * 1024} bytes + {1024 * 1024} margin" in message
    assert "free on /data" in message
    free = free_space(session, remote_dir).free_bytes
    assert free <= 512 * 1024 and f"has {free} free" in message
    assert session.shell(f"ls {remote_dir}").status != 0  # nothing was created or pushed

    set_faults(device.state_dir, storage_quota_bytes=8 * 1024 * 1024)
    push_if_room()
    assert session.shell(f"ls {remote_dir}/model.tflite").status == 0
    session.shell(f"rm -r {remote_dir}")


# -- tuning: performance mode, pinning, governors (harness.targets.tuning) --------------------------
def _perf_mode_setting(record) -> str | None:
    """What the virtual device holds for `cmd power set-fixed-performance-mode-enabled`
    (Android gives no way to read it back over adb)."""
    from device_agents.virtual.android_tools import FIXED_PERFORMANCE_KEY, SETTINGS_FILE
    import json

    path = Path(record.state_dir) / SETTINGS_FILE
    return json.loads(path.read_text()).get(FIXED_PERFORMANCE_KEY) if path.exists() else None


def test_tuning_turns_fixed_performance_mode_on_and_off_and_probes_taskset(session, device):
    topology = cpu_topology(session)
    with device_tuning(session, topology, sdk=34) as conditions:
        assert conditions.perf_mode == "on" and _perf_mode_setting(device) == "true"
        assert conditions.cpu_mask == topology.mask_hex
        assert conditions.rooted == "no" and conditions.notes["root"] == "no su on the device"
        assert conditions.governor == "schedutil"
        assert conditions.notes["governor"] == "left as found (not rooted)"
    assert _perf_mode_setting(device) == "false"

    with pytest.raises(RuntimeError):
        with device_tuning(session, topology, sdk=34):
            raise RuntimeError("benchmark failed")
    assert _perf_mode_setting(device) == "false"
    with device_tuning(session, topology, sdk=34, pin_big_cores=False) as conditions:
        assert conditions.cpu_mask is None and "pin_big_cores = false" in conditions.notes["cpu_pinning"]


def test_a_rooted_device_gets_performance_governors_and_its_own_back(tmp_path):
    base = tmp_path / "rooted-lab"
    state = lab_up(1, base, rooted=True)
    try:
        session = DeviceSession(state.devices[0].serial, state.server)
        assert session.shell("su -c 'id -u'").stdout == "0\n"
        assert session.shell("echo performance > /sys/devices/system/cpu/cpu0/cpufreq/"
                             "scaling_governor").status != 0  # the shell user may not
        before = read_governors(session)
        with device_tuning(session, cpu_topology(session), sdk=34) as conditions:
            assert conditions.rooted == "su (Magisk)"
            assert set(read_governors(session).values()) == {"performance"}
            assert conditions.governor == "performance (pinned; was schedutil)"
        assert read_governors(session) == before
    finally:
        lab_down(base)


def test_zone_names_the_gates_read_as_skin_battery_or_cpu():
    """bench's reading of vendors' zone names, when the HAL gives no typed temperatures: the
    battery-current-limit sensors (vbat mV, ibat mA) and a Pixel's `soc` (state of charge, %)
    are no temperatures at all."""
    zones = {"battery": 30.0, "vbat": 42.0, "ibat": 1.2, "soc": 85.0, "skin-therm": 33.0,
             "cpu-1-0-usr": 71.0, "cluster0": 69.0}
    grep = "".join(f"/sys/class/thermal/thermal_zone{i}/type:{name}\n"
                   f"/sys/class/thermal/thermal_zone{i}/temp:{int(c * 1000)}\n"
                   for i, (name, c) in enumerate(zones.items()))
    from harness.targets.telemetry import SECTION_MARK, parse_telemetry

    t = parse_telemetry(f"{SECTION_MARK}zones\n{grep}", at="now")
    assert (t.gate_temp_c, t.gate_source) == (33.0, "zones battery, skin-therm")
    assert t.cpu_temp_c == 71.0 and t.max_temp_c == 85.0  # recorded as read, gated by kind
