"""Issue 4 on a real virtual lab: trials interleaved, telemetry on every sample, and every fault
of the table switched on a real virtual device. Nothing is mocked."""
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from device_agents.virtual.faults import clear_faults, set_faults
from harness.config import BenchmarkSettings, HygieneSettings, RunConfig
from harness.config_schema import HYGIENE_RULES
from harness.targets.adb.session import list_device_states
from harness.targets.adb.virtual_lab import LabState, lab_down, lab_up
from harness.run import resume_benchmarks, run_benchmarks
from harness.results.store import Store
from tests.virtual_lab_fixtures import FAST_BENCHMARK as FAST

pytestmark = pytest.mark.slow

THREE_VARIANTS = ["baseline", "quant=fp16", "quant=dynamic_int8"]


@pytest.fixture(scope="module")
def lab():
    state = lab_up(2)
    yield state
    lab_down()


@pytest.fixture(autouse=True)
def healthy_devices(lab):
    yield
    for dev in lab.devices:  # whatever a test switched on, the next one starts clean
        clear_faults(Path(dev.state_dir))


def config_for(tmp_path, **kw) -> RunConfig:
    """A RunConfig for the lab's tests; hygiene thresholds may be given as keywords, as in [run]."""
    kw.setdefault("benchmark", FAST)
    kw.setdefault("peak_memory", False)
    kw.setdefault("variants", ["baseline"])  # not the default model's three
    kw.setdefault("device_wait_s", 20)
    thresholds = {k: kw.pop(k) for k in list(kw) if k in HYGIENE_RULES}
    thresholds.setdefault("cooldown_poll_s", 0.2)
    return RunConfig(store_path=tmp_path / "bench.db", reports_dir=tmp_path / "reports",
                     hygiene=HygieneSettings(**thresholds), **kw)


def timing(measurements, serial=None):
    return [m for m in measurements if m.kind == "timing" and (serial is None or m.device_serial == serial)]


def final_records(measurements):
    """The last attempt of each job (earlier attempts are stored as "retried")."""
    return [m for m in measurements if m.status != "retried"]


def test_trials_are_interleaved_and_each_sample_has_telemetry(lab, tmp_path):
    result = run_benchmarks(config_for(tmp_path, variants=THREE_VARIANTS, trials=5))
    assert result.exit_code == 0, [m.error for m in result.measurements if m.status != "ok"]
    samples = timing(Store(tmp_path / "bench.db").measurements(result.run_id))
    assert len(samples) == 30
    variants = ["baseline", "fp16", "dyn8"]
    for dev in lab.devices:
        mine = sorted(timing(samples, dev.serial), key=lambda m: datetime.fromisoformat(m.started_at))
        assert [m.variant for m in mine] == variants * 5  # A B C A B C ... by the store's clock
        assert [m.trial for m in mine] == [t for t in range(5) for _ in variants]
        for m in mine:
            before, after = json.loads(m.telemetry_before_json), json.loads(m.telemetry_after_json)
            for snapshot in (before, after):
                assert snapshot["battery_pct"] is not None and snapshot["max_temp_c"] is not None
                assert snapshot["cpufreq_khz"]
            assert m.cpu_mask and m.command.startswith(f"taskset {m.cpu_mask} ")
            assert m.num_threads >= 1


def test_peak_memory_and_op_profiling_are_separate_launches(lab, tmp_path):
    result = run_benchmarks(config_for(tmp_path, devices=lab.devices[0].serial,
                                       peak_memory=True, op_profiling=True))
    assert result.exit_code == 0, [m.error for m in result.measurements if m.status != "ok"]
    kinds = {m.kind: m for m in result.measurements}
    assert set(kinds) == {"timing", "peak_memory", "op_profile"}
    assert kinds["peak_memory"].peak_memory_mb > 0
    assert kinds["timing"].peak_memory_mb is None  # the timed launch was not perturbed
    assert "--report_peak_memory_footprint=true" in kinds["peak_memory"].command
    store = Store(tmp_path / "bench.db")
    op_id = store._conn.execute("SELECT id FROM measurements WHERE kind='op_profile'").fetchone()[0]
    ops = store.op_profile(op_id)
    assert ops and all(op["avg_ms"] is not None for op in ops)
    assert {"CONV_2D", "FULLY_CONNECTED"} & {op["node_type"] for op in ops}


def test_delegates_are_a_run_dimension_with_node_counts(lab, tmp_path):
    result = run_benchmarks(config_for(tmp_path, devices=lab.devices[0].serial,
                                       delegates=["cpu", "xnnpack", "gpu"], threads=[1, 2]))
    by = {(m.delegate_choice, m.num_threads): m for m in result.measurements}
    assert set(by) == {(d, t) for d in ("cpu", "xnnpack", "gpu") for t in (1, 2)}
    assert by[("xnnpack", 1)].status == "ok" and by[("xnnpack", 1)].nodes_delegated > 0
    assert by[("cpu", 2)].status == "ok" and not by[("cpu", 2)].nodes_delegated
    assert by[("gpu", 1)].status == "failed" and "GPU" in by[("gpu", 1)].error
    assert result.exit_code == 1


def test_disconnect_mid_push_is_retried_after_the_device_returns(lab, tmp_path):
    dev = lab.devices[0]
    # The first push drops after 4 KiB; the device is back 1 s later and the fault then fires
    # again only if still switched on: switch it off once it has fired.
    set_faults(Path(dev.state_dir), drop_after_push_bytes=4096, offline_for_s=1.0)
    cache = tmp_path / "fresh"  # a new remote dir forces a real push
    config = config_for(tmp_path, devices=dev.serial, remote_dir=f"/data/local/tmp/bench-{cache.name}")

    def clear_when_fired():
        # Once adb has seen the link drop, the phone "comes back" for good.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if dict(list_device_states(lab.server)).get(dev.serial) != "device":
                break
            time.sleep(0.05)
        clear_faults(Path(dev.state_dir))

    import threading
    clearer = threading.Thread(target=clear_when_fired)
    clearer.start()
    result = run_benchmarks(config)
    clearer.join()
    assert result.exit_code == 0, [m.error for m in result.measurements]
    assert timing(result.measurements)[-1].status == "ok"


def test_disconnect_mid_benchmark_retries_then_records_the_failure(lab, tmp_path):
    dropped, healthy = lab.devices
    slow = BenchmarkSettings(num_runs=3, min_secs=2.0, warmup_min_secs=0.02, max_secs=20)
    set_faults(Path(dropped.state_dir), drop_during_benchmark_s=0.3, offline_for_s=0.5)
    result = run_benchmarks(config_for(tmp_path, benchmark=slow, retries=2))
    records = Store(tmp_path / "bench.db").measurements(result.run_id)
    attempts = [m for m in records if m.device_serial == dropped.serial and m.kind == "timing"]
    assert [m.attempt for m in attempts] == [1, 2, 3]
    assert [m.status for m in attempts] == ["retried", "retried", "failed"]
    assert all(m.failure_kind == "device" for m in attempts)
    assert [m.status for m in timing(records, healthy.serial)] == ["ok"]
    assert result.exit_code == 1


def test_crash_is_not_retried_and_the_device_stays_usable(lab, tmp_path):
    dev = lab.devices[0]
    slow = BenchmarkSettings(num_runs=3, min_secs=2.0, warmup_min_secs=0.02, max_secs=20)
    set_faults(Path(dev.state_dir), benchmark_crash_after_s=0.3)
    result = run_benchmarks(config_for(tmp_path, devices=dev.serial, benchmark=slow))
    [m] = result.measurements
    assert (m.status, m.exit_status, m.attempt) == ("crashed", 139, 1)
    assert "Segmentation fault" in m.output_tail
    clear_faults(Path(dev.state_dir))
    assert run_benchmarks(config_for(tmp_path, devices=dev.serial)).exit_code == 0


def test_hang_is_killed_at_the_max_secs_timeout(lab, tmp_path):
    dev = lab.devices[0]
    set_faults(Path(dev.state_dir), benchmark_hang=True)
    quick = BenchmarkSettings(num_runs=3, min_secs=0.02, warmup_min_secs=0.01, max_secs=1,
                              startup_allowance_s=4)
    result = run_benchmarks(config_for(tmp_path, devices=dev.serial, benchmark=quick))
    [m] = result.measurements
    assert m.status == "timed_out" and "timed out after 6 s" in m.error
    # The device killed the stopped process when bench closed the stream.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _benchmark_processes(dev.state_dir):
        time.sleep(0.2)
    assert _benchmark_processes(dev.state_dir) == []


def test_hot_device_cools_down_before_measuring(lab, tmp_path):
    dev = lab.devices[0]
    set_faults(Path(dev.state_dir), temperature_c=55.0)
    import threading
    threading.Timer(1.5, lambda: clear_faults(Path(dev.state_dir))).start()
    result = run_benchmarks(config_for(tmp_path, devices=dev.serial, cooldown_deadline_s=30))
    [m] = result.measurements
    assert m.status == "ok"
    assert json.loads(m.telemetry_before_json)["max_temp_c"] < 45


@pytest.mark.parametrize("faults, words", [
    ({"temperature_c": 55.0}, "hot"),
    ({"battery_level": 5, "charging": False}, "battery"),
])
def test_hot_or_flat_device_past_the_deadline_is_invalid_not_run(lab, tmp_path, faults, words):
    dev = lab.devices[0]
    set_faults(Path(dev.state_dir), **faults)
    result = run_benchmarks(config_for(tmp_path, devices=dev.serial, cooldown_deadline_s=1))
    [m] = result.measurements
    assert m.status == "invalid" and m.failure_kind == "hygiene" and words in m.error
    assert m.command is None  # never launched
    assert result.exit_code == 1


def test_full_storage_is_a_clear_error_before_pushing(lab, tmp_path):
    dev = lab.devices[0]
    set_faults(Path(dev.state_dir), storage_quota_bytes=1000)
    result = run_benchmarks(config_for(tmp_path, devices=dev.serial,
                                       remote_dir="/data/local/tmp/bench-full"))
    [m] = result.measurements
    assert m.status == "failed" and m.failure_kind == "device"
    assert "free" in m.error and "bytes" in m.error
    fs = Path(dev.state_dir) / "fs" / "data/local/tmp/bench-full"
    assert not fs.exists() or not any(fs.iterdir())


def test_device_failing_k_jobs_in_a_row_is_quarantined(lab, tmp_path):
    dev = lab.devices[0]
    slow = BenchmarkSettings(num_runs=3, min_secs=1.0, warmup_min_secs=0.02, max_secs=20)
    set_faults(Path(dev.state_dir), benchmark_crash_after_s=0.2)
    result = run_benchmarks(config_for(tmp_path, devices=dev.serial, benchmark=slow,
                                       variants=THREE_VARIANTS, trials=2, quarantine_after=2))
    statuses = [m.status for m in timing(result.measurements)]
    assert statuses == ["crashed", "crashed", "skipped", "skipped", "skipped", "skipped"]
    assert "quarantined" in timing(result.measurements)[-1].error
    report = (result.report_dir / "report.md").read_text()
    assert "quarantined" in report


def test_adb_server_killed_during_a_run_is_restarted(lab, tmp_path):
    import threading
    state = LabState.load()
    slow = BenchmarkSettings(num_runs=3, min_secs=0.5, warmup_min_secs=0.02, max_secs=20)

    def kill_server():
        os.kill(LabState.load().adb_pid, signal.SIGKILL)

    threading.Timer(1.0, kill_server).start()
    result = run_benchmarks(config_for(tmp_path, benchmark=slow, variants=THREE_VARIANTS, trials=2))
    finals = [m for m in final_records(result.measurements) if m.kind == "timing"]
    assert len(finals) == 12 and all(m.status == "ok" for m in finals), [m.error for m in finals]
    assert LabState.load().adb_pid != state.adb_pid  # a new server serves the lab now


def test_killed_bench_process_resumes_only_the_missing_jobs(lab, tmp_path):
    store_path = tmp_path / "bench.db"
    code = ("import sys; from pathlib import Path; sys.path.insert(0, %r);"
            "from harness.config import RunConfig, BenchmarkSettings; from harness.run import run_benchmarks;"
            "run_benchmarks(RunConfig(store_path=Path(%r), reports_dir=Path(%r), trials=6, peak_memory=False,"
            "variants=['baseline','quant=fp16'], benchmark=BenchmarkSettings(num_runs=3, min_secs=0.3,"
            " warmup_min_secs=0.01, max_secs=20)))") % (str(Path(__file__).parent.parent),
                                                          str(store_path), str(tmp_path / "r"))
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and done < 4:
        time.sleep(0.3)
        if store_path.exists():
            try:
                done = Store(store_path)._conn.execute("SELECT count(*) FROM measurements").fetchone()[0]
            except Exception:
                done = 0
    proc.kill()
    proc.wait()
    store = Store(store_path)
    [run] = store.runs()
    before = store.measurements(run["run_id"])
    assert 4 <= len(before) < 24
    result = resume_benchmarks(run["run_id"], store_path)
    after = Store(store_path).measurements(run["run_id"])
    keys = [m.job_key for m in after]
    assert len(after) == 24 and len(set(keys)) == 24  # every job once: none redone, none missing
    assert after[: len(before)] == before
    assert result.exit_code == 0


def test_names_with_shell_metacharacters_are_quoted_on_the_device(lab, tmp_path):
    from harness.optimize.pipeline import Pipeline
    from harness.optimize.variants import VariantSpec
    from models.datasets import load_dataset
    from models.registry import resolve_model

    source = resolve_model("digits_cnn")
    baseline = Pipeline(source, load_dataset(source), tmp_path / "cache").build(VariantSpec())
    odd = tmp_path / "my model;$(touch pwned)&.tflite"
    odd.write_bytes(baseline.path.read_bytes())
    result = run_benchmarks(config_for(tmp_path, devices=lab.devices[0].serial, model=str(odd)))
    assert result.exit_code == 0, [m.error for m in result.measurements]
    fs = Path(lab.devices[0].state_dir) / "fs"
    assert not list(fs.rglob("pwned"))


def _benchmark_processes(state_dir: str) -> list[int]:
    """pids of benchmark_model processes running inside this device's sandbox."""
    fs_root = str(Path(state_dir).resolve() / "fs")
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"benchmark_model" in cmdline and fs_root.encode() in environ:
            pids.append(int(proc.name))
    return pids


# -- issue 15: token inputs and Keras files on the lab -------------------------------------------
def test_a_bert_classifier_with_token_inputs_runs_on_the_lab_with_its_agreement(lab, tmp_path):
    from harness.report import variants_table

    result = run_benchmarks(config_for(
        tmp_path, devices=lab.devices[0].serial, model="models.transformer_examples:bert_tiny",
        variants=["baseline", "heads=0.25"]))
    assert result.exit_code == 0, [m.error for m in result.measurements if m.status != "ok"]
    samples = timing(result.measurements)
    assert {m.variant for m in samples} == {"baseline", "heads25"}
    for m in samples:  # ids drawn from the vocabulary, masks all ones: the full 64 tokens
        assert "--input_layer_shape=1,64:1,64" in m.command
        assert ",0,999:" in m.command and m.command.endswith(",1,1")
        assert m.inference_avg_us > 0
    table = variants_table(result.artifacts)
    heads25 = table[table["variant"] == "heads25"].iloc[0]
    assert 50 <= float(heads25["agreement %"]) <= 100  # agreement with the baseline on generated tokens


def test_a_keras_model_file_is_converted_by_keras_and_benchmarked(lab, tmp_path):
    os.environ.setdefault("KERAS_BACKEND", "torch")  # what bench itself sets before importing Keras
    import keras

    keras.utils.set_random_seed(0)
    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(16, 3, activation="relu"),
                      keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)]).save(tmp_path / "cnn.keras")
    result = run_benchmarks(config_for(tmp_path, devices=lab.devices[0].serial,
                                       model=str(tmp_path / "cnn.keras"), variants=["baseline", "quant=int8"]))
    assert result.exit_code == 0, [m.error for m in result.measurements if m.status != "ok"]
    assert {m.variant for m in timing(result.measurements)} == {"baseline", "int8"}
    stored = Store(tmp_path / "bench.db").artifacts([a.sha256 for a in result.artifacts])
    artifacts = {a["variant"]: a for a in stored}
    assert artifacts["baseline"]["metadata"]["quantization"]["method"].startswith("Keras model.export(format='litert')")
    assert artifacts["int8"]["metadata"]["accuracy"]["agreement"] >= 0.9
