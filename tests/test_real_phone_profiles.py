"""The real-phone profiles bench ships (device_agents/virtual/profiles/*), each replayed by a
virtual device: `bench devices --json`, `bench doctor` and a run with its gates on must tell
the recorded phone's model, SDK, battery, temperatures, thermal status and big-core mask, and
no gate may trip on the idle recorded phone. The expected values are read here straight from
the profile's files (the phone's own outputs), not through bench's parsers."""
import fnmatch
import json
import re
from pathlib import Path

import pytest

from device_agents.virtual.profile import PROFILES_DIR, shipped_profiles
from harness.config import HygieneSettings, LabConfig, LabServer, RunConfig
from harness.run import run_benchmarks
from harness.results.store import Store
from harness.targets.adb.virtual_lab import LabState, lab_down, lab_up
from tests.virtual_lab_fixtures import FAST_BENCHMARK, SHIPPED_BENCHMARK_MODEL, bench_cli

pytestmark = pytest.mark.slow

PROFILES = shipped_profiles()


def test_at_least_three_profiles_each_with_its_sources():
    """Every file of a profile is named in its SOURCES, by path or by a path pattern
    (`fs/sys/devices/system/cpu/**`)."""
    assert len(PROFILES) >= 3
    for name in PROFILES:
        root = PROFILES_DIR / name
        sources = (root / "SOURCES").read_text()
        patterns = [word.rstrip(",;:)") for word in re.findall(r"(?:fs/|dumpsys/)?[\w./*-]+", sources)
                    if word.startswith(("fs/", "dumpsys/")) or word.endswith(".txt")]
        for path in root.rglob("*"):
            if path.is_file() and path.name != "SOURCES":
                relative = str(path.relative_to(root))
                assert any(fnmatch.fnmatch(relative, pattern.replace("**", "*"))
                           for pattern in patterns), (name, relative)


# -- what the recorded phone says, read plainly -------------------------------------------------
def recorded(name: str) -> dict:
    root = PROFILES_DIR / name
    props = dict(re.findall(r"^\[([^\]]+)\]: \[(.*)\]$", (root / "getprop.txt").read_text(), re.M))
    facts = {"model": props["ro.product.model"], "sdk": int(props["ro.build.version.sdk"]),
             "abi": props["ro.product.cpu.abi"]}
    battery = root / "dumpsys" / "battery.txt"
    if battery.exists():
        text = battery.read_text()
        facts["battery_pct"] = int(re.search(r"^\s*level: (\d+)", text, re.M).group(1))
        facts["battery_temp_c"] = int(re.search(r"^\s*temperature: (\d+)", text, re.M).group(1)) / 10
    thermal = root / "dumpsys" / "thermalservice.txt"
    if thermal.exists():
        text = thermal.read_text()
        facts["thermal_status"] = int(re.search(r"^Thermal Status: (\d+)", text, re.M).group(1))
        now = text.split("Current temperatures from HAL:")[1].split("\n")
        skin = [float(m.group(1)) for line in now[1:] if line[:1].isspace()
                for m in [re.search(r"mValue=([\d.]+), mType=3,", line)] if m]
        facts["skin_temp_c"] = max(skin) if skin else None
    freqs = {int(p.parts[-3][3:]): int(p.read_text().split()[0])
             for p in (root / "fs/sys/devices/system/cpu").glob("cpu*/cpufreq/cpuinfo_max_freq")}
    if freqs:  # else the virtual device's own cores answer (the profile says nothing)
        top = max(freqs.values())
        facts["mask"] = f"{sum(1 << cpu for cpu, f in freqs.items() if f == top):x}"
    return facts


@pytest.fixture(scope="module", params=PROFILES)
def phone(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"profile-{request.param}")
    state = lab_up(1, base, profile=request.param)
    try:
        yield request.param, state, base
    finally:
        lab_down(base)


def _config(tmp: Path, state: LabState, **kw) -> RunConfig:
    return RunConfig(lab=LabConfig(servers=[LabServer("virtual-lab", "127.0.0.1", state.adb_port)]),
                     store_path=tmp / "bench.db", reports_dir=tmp / "reports", **kw)


def _bench_json(monkeypatch, capsys, base: Path, *args) -> tuple[int, object]:
    monkeypatch.setenv("BENCH_STATE_DIR", str(base))
    code, out, _err = bench_cli(monkeypatch, capsys, *args)
    return code, json.loads(out)


def test_devices_json_tells_the_recorded_phone(phone, monkeypatch, capsys):
    name, _state, base = phone
    want = recorded(name)
    _code, (device,) = _bench_json(monkeypatch, capsys, base, "devices", "--json")
    assert (device["model"], device["sdk"], device["abi"]) == (want["model"], want["sdk"],
                                                               want["abi"])
    for key in ("battery_pct", "battery_temp_c", "thermal_status", "skin_temp_c"):
        if key in want:
            assert device[key] == want[key], key


def test_doctor_tells_the_phone_and_the_binary_it_needs(phone, monkeypatch, capsys):
    name, _state, base = phone
    want = recorded(name)
    code, (report,) = _bench_json(monkeypatch, capsys, base, "doctor", "--json")
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["ABI"]["found"] == want["abi"] and want["abi"] in ("arm64-v8a", "armeabi-v7a")
    assert checks["SDK"]["found"].startswith(f"{want['sdk']} (Android ")
    if "mask" in want:
        assert f"(mask {want['mask']}; cpuinfo_max_freq)" in checks["big cores"]["found"]
    # No binary for the phone's ABI yet: red, with the command that fetches one.
    assert code == 1 and checks["benchmark_model"]["status"] == "red"
    assert checks["benchmark_model"]["fix"] == f"bench binaries fetch --abi {want['abi']}"
    assert "fit to measure" not in checks  # an idle recorded phone is fit
    if want["sdk"] < 30:
        assert checks["perf mode"]["status"] == "note" and "Unknown command" in checks["perf mode"]["found"]
    if want["sdk"] < 29:
        assert checks["thermal (HAL)"]["status"] == "note"


def test_a_run_with_gates_on_measures_the_idle_phone(phone, tmp_path, tiny_model):
    name, state, _base = phone
    want = recorded(name)
    # The virtual device runs only what bench ships for it, whatever the ABI it reports.
    config = _config(tmp_path, state, model=str(tiny_model), variants=["baseline"],
                     benchmark=FAST_BENCHMARK,
                     peak_memory=False, binaries={want["abi"]: str(SHIPPED_BENCHMARK_MODEL)},
                     hygiene=HygieneSettings(cooldown_poll_s=0.2, cooldown_deadline_s=2))
    result = run_benchmarks(config)
    stored = Store(config.store_path).measurements(result.run_id)
    assert result.exit_code == 0, [(m.status, m.error) for m in stored]
    (m,) = stored
    assert m.status == "ok" and m.device_model == want["model"] and m.device_sdk == want["sdk"]
    assert m.command.startswith(f"taskset {m.cpu_mask} ")
    if "mask" in want:  # a mask over the phone's cores, mapped onto the device's host cores
        assert m.cpu_mask == want["mask"]
    assert m.battery_pct == want.get("battery_pct", m.battery_pct)
    before = json.loads(m.telemetry_before_json)
    if "thermal_status" in want:
        assert before["thermal_status"] == want["thermal_status"]
    conditions = json.loads(m.conditions_json)
    assert conditions["rooted"] == "no"
    if want["sdk"] < 30:
        assert m.perf_mode == "unavailable" and "Unknown command" in conditions["notes"]["perf_mode"]


def test_a_run_without_a_binary_for_the_abi_names_the_fetch_command(phone, tmp_path, tiny_model):
    name, state, _base = phone
    config = _config(tmp_path, state, model=str(tiny_model), variants=["baseline"],
                     benchmark=FAST_BENCHMARK, peak_memory=False)
    result = run_benchmarks(config)
    (m,) = Store(config.store_path).measurements(result.run_id)
    assert result.exit_code == 1 and m.status == "failed"
    assert f"bench binaries fetch --abi {recorded(name)['abi']}" in m.error
