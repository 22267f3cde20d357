"""bench run end to end on a real virtual lab: real device processes, the real adb server,
adbutils, a real conversion and real LiteRT benchmarks. Nothing here is mocked."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from device_agents.virtual.faults import clear_faults, set_faults
from harness.config import BenchmarkSettings, RunConfig
from harness.lab.virtual_lab import connect_device, lab_down, lab_status, lab_up
from harness.run import run_benchmarks
from harness.store import Store
from harness.lab.adb_binary import adb_path

pytestmark = pytest.mark.slow

FAST = BenchmarkSettings(num_runs=5, warmup_runs=1, min_secs=0.05, warmup_min_secs=0.02,
                         max_secs=20)


def bench_cli(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def lab():
    state = lab_up(2)
    yield state
    lab_down()


def config_for(tmp_path, **kw) -> RunConfig:
    kw.setdefault("peak_memory", False)  # one launch per device and variant keeps these tests short
    kw.setdefault("device_wait_s", 15)
    return RunConfig(store_path=tmp_path / "bench.db", reports_dir=tmp_path / "reports",
                     benchmark=kw.pop("benchmark", FAST), **kw)


def test_lab_devices_are_listed_by_the_real_adb_server(lab):
    out = subprocess.run([adb_path(), "-P", str(lab.adb_port), "devices", "-l"],
                         capture_output=True, text=True, timeout=30).stdout
    for dev in lab.devices:
        line = next(l for l in out.splitlines() if l.startswith(dev.serial))
        assert line.split()[1] == "device"
        assert "model:" in line
    status = lab_status()
    assert status["up"] and all(d["adb_state"] == "device" for d in status["devices"])


def test_bench_devices_json_describes_each_virtual_device(lab):
    result = bench_cli("devices", "--json")
    assert result.returncode == 0, result.stderr
    devices = json.loads(result.stdout)
    assert {d["serial"] for d in devices} == {d.serial for d in lab.devices}
    for d in devices:
        assert d["state"] == "device"
        assert d["abi"] == "x86_64"
        assert "virtual" in d["model"].lower()
        assert d["server"] == "virtual-lab"
        assert isinstance(d["sdk"], int)
        assert 0 <= d["battery_pct"] <= 100
        assert 10 < d["temperature_c"] < 60


def test_run_on_all_devices_then_rerun_pushes_nothing(lab, tmp_path):
    from harness.devices.session import DeviceSession

    config = config_for(tmp_path)
    # Devices keep their files across labs, as phones do: start from devices without bench's.
    for dev in lab.devices:
        assert DeviceSession(dev.serial, lab.server).shell(f"rm -rf {config.remote_dir}").status == 0
    first = run_benchmarks(config)
    assert first.exit_code == 0, [m.error for m in first.measurements]
    assert first.bytes_pushed > 0
    second = run_benchmarks(config_for(tmp_path))
    assert second.exit_code == 0
    assert second.bytes_pushed == 0

    store = Store(tmp_path / "bench.db")
    for run in (first, second):
        stored = store.measurements(run.run_id)
        assert {m.device_serial for m in stored} == {d.serial for d in lab.devices}
        for m in stored:
            assert m.status == "ok"
            assert m.inference_count >= 5
            assert 0 < m.inference_min_us <= m.inference_avg_us <= m.inference_max_us
            assert m.init_us > 0 and m.first_inference_us > 0
            assert m.binary_sha256 and m.artifact_sha256 and m.device_props_json
    assert store.run(second.run_id)["bytes_pushed"] == 0
    report = (second.report_dir / "report.md").read_text()
    assert "bytes pushed: 0" in report
    for dev in lab.devices:
        assert dev.serial in report
    rows = list(csv.DictReader(open(second.report_dir / "results.csv")))
    assert sorted(r["device_serial"] for r in rows) == sorted(d.serial for d in lab.devices)
    assert all(float(r["inference_avg_us"]) > 0 for r in rows)


def test_device_dropped_mid_benchmark_fails_alone(lab, tmp_path):
    dropped, healthy = lab.devices
    # A benchmark that runs ~2 s, and a link that drops 0.5 s into it.
    slow = BenchmarkSettings(num_runs=5, min_secs=2.0, warmup_min_secs=0.05, max_secs=20)
    set_faults(Path(dropped.state_dir), drop_during_benchmark_s=0.5, offline_for_s=1.0)
    try:
        result = run_benchmarks(config_for(tmp_path, benchmark=slow))
    finally:
        clear_faults(Path(dropped.state_dir))
    assert result.exit_code == 1
    by_serial = {m.device_serial: m for m in result.measurements}
    assert by_serial[healthy.serial].status == "ok"
    assert by_serial[dropped.serial].status == "failed"
    assert by_serial[dropped.serial].failure_kind == "device"
    assert by_serial[dropped.serial].error

    stored = {m.device_serial: m for m in Store(tmp_path / "bench.db").measurements(result.run_id)}
    assert stored[healthy.serial].status == "ok" and stored[healthy.serial].inference_avg_us > 0
    assert stored[dropped.serial].status == "failed"
    report = (result.report_dir / "report.md").read_text()
    assert "Failed, invalid or skipped" in report and dropped.serial in report
    assert by_serial[dropped.serial].error.split(":")[-1].strip() in report

    # The device comes back once the fault is cleared (as a phone after a cable glitch).
    connect_device(lab.server, dropped.serial, timeout_s=60)


def test_unknown_serial_is_a_failed_device_with_its_reason(lab, tmp_path):
    healthy = lab.devices[0].serial
    result = run_benchmarks(config_for(tmp_path, devices=f"{healthy},no-such-phone"))
    assert result.exit_code == 1
    by_serial = {m.device_serial: m for m in result.measurements}
    assert by_serial[healthy].status == "ok"
    assert "not found" in by_serial["no-such-phone"].error


def test_cli_run_prints_the_latency_table(lab, tmp_path):
    result = bench_cli("run", "--devices", "all", "--num-runs", "3", "--min-secs", "0.05",
                       "--store", str(tmp_path / "b.db"), "--reports-dir", str(tmp_path / "r"),
                       "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "avg ms" in result.stdout and "first ms" in result.stdout
    assert "bytes pushed:" in result.stdout
    for number, _dev in enumerate(lab.devices, 1):  # known by ro.serialno, not 127.0.0.1:PORT
        assert f"VIRT{number:04d}" in result.stdout
    # Provenance: the adb bench ran and the protocol version of the lab's server.
    report_md = next((tmp_path / "r").glob("*/report.md")).read_text()
    assert "- adb: 1.0.41 (36." in report_md
    assert f"servers: virtual-lab 127.0.0.1:{lab.adb_port} v41" in report_md
    # The same again, judged against the first: one trial each is too few to call, so UNKNOWN.
    again = bench_cli("run", "--devices", "all", "--num-runs", "3", "--min-secs", "0.05",
                      "--store", str(tmp_path / "b.db"), "--reports-dir", str(tmp_path / "r"),
                      "--quiet", "--baseline", "latest")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "compared with baseline" in again.stdout and "UNKNOWN" in again.stdout
    assert "REGRESSED" not in again.stdout.split("compared with baseline")[1]
    assert list((tmp_path / "r").glob("*/compare.md"))


def test_every_variant_is_measured_on_every_device(lab, tmp_path):
    config = config_for(tmp_path, variants=["baseline", "prune=0.5,quant=int8"])
    result = run_benchmarks(config)
    assert result.exit_code == 0, [m.error for m in result.measurements]
    pairs = {(m.device_serial, m.variant) for m in result.measurements}
    assert pairs == {(d.serial, v) for d in lab.devices for v in ("baseline", "pruned50-int8")}
    by_variant = {a.variant: a for a in result.artifacts}
    assert by_variant["pruned50-int8"].size_bytes * 4 < by_variant["baseline"].size_bytes
    for m in result.measurements:
        assert m.model_size_bytes == by_variant[m.variant].size_bytes
        assert m.inference_avg_us > 0
    report = (result.report_dir / "report.md").read_text()
    assert "## Variants" in report and "zip bytes" in report and "pruned50-int8" in report
