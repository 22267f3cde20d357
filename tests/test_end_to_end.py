"""bench run end to end on a real virtual lab: real device processes, the real adb server,
adbutils, a real conversion and real LiteRT benchmarks. Nothing here is mocked."""
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from device_agents.virtual.faults import clear_faults, set_faults
from harness.config import BenchmarkSettings, RunConfig
from harness.results.statistic import LATENCY_MS
from harness.targets.adb.virtual_lab import connect_device, lab_down, lab_status, lab_up
from harness.run import run_benchmarks
from harness.results.store import Store
from harness.optimize.variants import default_variants, parse_variant
from harness.targets.adb.adb_binary import adb_path

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
    kw.setdefault("peak_memory", False)
    kw.setdefault("variants", ["baseline"])  # not the default model's three  # one launch per device and variant keeps these tests short
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
    from harness.targets.adb.session import DeviceSession

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


def test_first_run_shows_the_mission_quietly(lab, tmp_path):
    """README line 1 as a newcomer types it: no variant given, so the default model's default set
    (baseline, pruned + fine-tuned, and that in int8) on every device; a summary line per
    device; on the terminal nothing but bench's own lines (torch, absl, LiteRT and the
    quantizer go to the run's bench.log)."""
    result = bench_cli("run", "--devices", "all", "--num-runs", "3", "--min-secs", "0.05",
                       "--no-peak-memory", "--store", str(tmp_path / "b.db"),
                       "--reports-dir", str(tmp_path / "r"))
    assert result.returncode == 0, result.stdout + result.stderr
    variants = [parse_variant(v).name for v in default_variants("digits_cnn")]
    assert variants == ["baseline", "pruned50-ft10-lr0.001", "pruned50-ft10-lr0.001-int8"]
    for text in variants + [LATENCY_MS, "first ms", "bytes pushed:", "tflite bytes"]:
        assert text in result.stdout
    for number, _dev in enumerate(lab.devices, 1):  # known by ro.serialno, not 127.0.0.1:PORT
        assert f"VIRT{number:04d}" in result.stdout
    assert " None" not in result.stdout and " nan" not in result.stdout
    summary = result.stdout.split("\nsummary: ")[1].splitlines()[1:]
    assert len(summary) == len(lab.devices)
    for line in summary:  # both pruned variants cost well under the 1 pt budget on digits;
        # which of the two is faster on a host CPU (fp32 or int8 kernels) is the host's call
        assert re.fullmatch(r"  VIRT000\d: pruned50-ft10-lr0\.001(-int8)?: \d+\.\dx faster, "
                            r"\d+\.\dx smaller, [-+]\d\.\d pt top-1 \(baseline .*\)", line), line
    # Only bench's own lines on the terminal: its progress lines are indented.
    foreign = [line for line in result.stderr.splitlines() if line and not line.startswith("  ")]
    assert foreign == [], foreign
    for noise in ("absl", "oneDNN", "XNNPACK", "I0000", "_pytree", "%|"):
        assert noise not in result.stderr + result.stdout
    [log] = (tmp_path / "r").glob("*/bench.log")
    text = log.read_text()
    assert "bench: VIRT0001: baseline timing #0" in text and "bench: build digits_cnn-" in text
    # What LiteRT, torch and the converter printed (C++ and Python alike) is there instead;
    # which of them print depends on the host and on what the cache already had (the converter's
    # absl lines and oneDNN's notice come only with some builds), LiteRT's XNNPACK line always.
    assert "XNNPACK delegate" in text
    assert [line for line in text.splitlines() if line and " bench: " not in line]
    assert f"log: {log}" in result.stdout
    store = Store(tmp_path / "b.db")
    [run] = store.runs()
    measured = store.measurements(run["run_id"])
    assert {(m.device_serial, m.variant) for m in measured} == {
        (d.serial, v) for d in lab.devices for v in variants}
    sizes = {a["variant"]: a["size_bytes"] for a in store.artifacts(
        sorted({m.artifact_sha256 for m in measured}))}
    assert sizes[variants[2]] * 4 < sizes[variants[1]] * 2 < sizes["baseline"]
    assert all(m.model_size_bytes == sizes[m.variant] and m.inference_avg_us > 0
               for m in measured)
    store.close()

    # The same again, judged against the first, paired (the first run's artifacts launched
    # beside this run's): one pair per key is too few to call, so UNKNOWN.
    again = bench_cli("run", "--devices", "all", "--num-runs", "3", "--min-secs", "0.05",
                      "--no-peak-memory", "--store", str(tmp_path / "b.db"),
                      "--reports-dir", str(tmp_path / "r"), "--quiet", "--baseline", "latest")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stderr == ""  # --quiet: the tables and the summary only
    assert "compared with baseline" in again.stdout and "UNKNOWN" in again.stdout
    verdicts = again.stdout.split("compared with baseline")[1]
    assert "REGRESSED" not in verdicts and "1 pairs" in verdicts and "paired" in verdicts
    assert list((tmp_path / "r").glob("*/compare.md"))
    # Provenance: the adb bench ran and the protocol version of the lab's server.
    report_md = next((tmp_path / "r").glob("*/report.md")).read_text()
    assert "- adb: 1.0.41 (36." in report_md
    assert f"servers: virtual-lab 127.0.0.1:{lab.adb_port} v41" in report_md
