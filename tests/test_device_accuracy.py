"""Accuracy on the device (`--accuracy-on-device`) on real virtual labs: the real adb server,
virtual devices, the classic tool reading each sample from a file and writing its outputs, the
host LiteRT run of the same .tflite to judge them by. The digits set is real labelled data."""
import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from harness.config import HygieneSettings, LabConfig, LabServer, RunConfig
from harness.regress.compare import REGRESSED, SAME, compare
from harness.results.store import Store
from harness.run import run_benchmarks
from harness.targets.adb.virtual_lab import LabState, lab_down, lab_fault, lab_up
from tests.virtual_lab_fixtures import FAST_BENCHMARK

pytestmark = pytest.mark.slow

VARIANTS = ["baseline", "int8"]


def _config(tmp: Path, lab_base: Path, name: str, **kw) -> RunConfig:
    lab = LabState.load(lab_base)
    kw.setdefault("variants", VARIANTS)
    kw.setdefault("model", "digits_cnn")
    return RunConfig(benchmark=FAST_BENCHMARK,
                     peak_memory=False, store_path=tmp / "bench.db",
                     reports_dir=tmp / f"reports-{name}",
                     hygiene=HygieneSettings(cooldown_poll_s=0.2),
                     lab=LabConfig(servers=[LabServer("virtual-lab", "127.0.0.1",
                                                      lab.adb_port)]), **kw)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    base = tmp_path_factory.mktemp("accuracy-lab")
    lab_up(2, base)
    try:
        yield base
    finally:
        lab_down(base)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("accuracy-cache")


@pytest.fixture(scope="module")
def fp32_run(lab, cache, tmp_path_factory):
    """Both devices, 50 digits samples, the tool's default delegate (XNNPACK on the CPU)."""
    tmp = tmp_path_factory.mktemp("fp32")
    config = _config(tmp, lab, "fp32", accuracy_on_device=50)
    result = run_benchmarks(config, cache_dir=cache)
    return config, result, [m for m in result.measurements if m.kind == "accuracy"]


def test_fp32_on_the_cpu_computes_what_the_host_does(fp32_run):
    _config, result, accuracy = fp32_run
    assert result.exit_code == 0, [(m.variant, m.status, m.error) for m in result.measurements]
    assert len(accuracy) == 4  # 2 variants x 2 devices, the default delegate
    for m in accuracy:
        assert m.status == "ok" and m.accuracy_samples == 50 and m.accuracy_samples_failed == 0
        details = json.loads(m.accuracy_json)
        assert details["launches"] == 50  # digits_cnn's reshape keeps batch 1: one per sample
        assert "--input_layer_value_files=serving_default_args_0:" in m.command
        assert m.host_agreement == 1.0
        assert m.device_top1 == m.host_top1 > 0.9  # the same decisions as the host
        if m.variant == "baseline":  # acceptance 1: fp32 outputs agree to <= 1e-5 relative
            assert m.host_max_rel_diff <= 1e-5 and m.host_cosine_min > 0.999999
            assert m.baseline_agreement >= 0.98  # the device against torch's own top-1
        else:  # acceptance 2: int8 on the device against the host's int8 run
            assert m.host_agreement >= 0.99
        assert m.accuracy_flag is None
        assert m.nodes_delegated == m.nodes_total  # what computed them: all on XNNPACK
    # The samples were pushed once per device: int8 keeps fp32 inputs, so both variants
    # read the same 50 files.
    pushed = {m.device_id: json.loads(m.accuracy_json)["device_sample_files_pushed"]
              for m in accuracy}
    assert set(pushed.values()) == {50}


def test_the_report_shows_the_device_accuracy(fp32_run):
    _config, result, _ = fp32_run
    report = result.report_dir
    html = (report / "index.html").read_text()
    markdown = (report / "report.md").read_text()
    document = json.loads((report / "results.json").read_text())
    assert "<h2>Accuracy on the device</h2>" in html
    assert "### Accuracy on the device" in markdown
    assert "agreement with host %" in markdown and "host max rel" in html
    rows = document["device_accuracy"]
    assert len(rows) == 4 and {r["variant"] for r in rows} == {"baseline", "int8"}
    assert all(r["agreement with host %"] == 100.0 and r["samples"] == 50 and r["failed"] == 0
               for r in rows)


def test_compare_gives_verdicts_on_device_accuracy_and_delegation(fp32_run, tmp_path):
    config, result, _ = fp32_run
    store = Store(config.store_path)
    try:
        same = compare(store, result.run_id, result.run_id)
        on_device = {(v.metric, v.verdict) for v in same.on_device}
        assert on_device == {("device accuracy", SAME), ("delegated nodes", SAME)}
        # A candidate whose device computes worse and whose delegate takes fewer nodes: the
        # baseline run's own records, stored again under a new run with those two changed.
        worse = "cand-worse"
        store.start_run(worse, "2026-12-03T00:00:00.000+00:00", "test", "host", {})
        for m in store.measurements(result.run_id):
            changed = replace(m, run_id=worse)
            if m.kind == "accuracy" and m.variant == "int8":
                changed.device_top1 = m.device_top1 - 0.02  # one sample in 50
            if m.kind == "timing" and m.variant == "int8":
                changed.nodes_delegated = m.nodes_total - 2
            store.add_measurement(changed)
        store.finish_run(worse, "2026-12-03T00:01:00.000+00:00", "ok", 0)
        verdicts = compare(store, result.run_id, worse)
        regressed = {(v.metric, v.variant.split("@")[0]) for v in verdicts.on_device
                     if v.verdict == REGRESSED}
        assert regressed == {("device accuracy", "digits_cnn:int8"),
                             ("delegated nodes", "digits_cnn:int8")}
        assert verdicts.exit_code == 1
    finally:
        store.close()


def test_fp16_forced_on_xnnpack_differs_a_little_and_says_so(lab, cache, tmp_path):
    config = _config(tmp_path, lab, "fp16", accuracy_on_device=10, delegates=["xnnpack-fp16"],
                     devices=LabState.load(lab).devices[0].serial)
    result = run_benchmarks(config, cache_dir=cache)
    accuracy = [m for m in result.measurements if m.kind == "accuracy"]
    assert result.exit_code == 0, [(m.kind, m.status, m.error) for m in result.measurements]
    assert {m.variant for m in accuracy} == set(VARIANTS)
    for m in accuracy:
        assert "--xnnpack_force_fp16=true" in m.command
        # Real fp16 arithmetic: not zero, small, and the same decisions.
        assert 0 < m.host_max_rel_diff < 0.05, m.variant
        assert m.host_agreement >= 0.9 and m.host_cosine_min > 0.99
    markdown = (result.report_dir / "report.md").read_text()
    assert "xnnpack-fp16" in markdown.split("### Accuracy on the device")[1]


def test_a_model_that_takes_a_batch_runs_all_samples_in_one_launch(lab, cache, tmp_path,
                                                                   tiny_model):
    """A .tflite whose batch dimension resizes: one launch of batch N (--input_layer_shape),
    its N rows of outputs decoded from one file. No labels (the sample photos' crops) and no
    torch baseline: agreement with the host is what the device is judged by."""
    config = _config(tmp_path, lab, "batch", model=str(tiny_model), variants=["baseline"],
                     accuracy_on_device=8, devices=LabState.load(lab).devices[0].serial)
    result = run_benchmarks(config, cache_dir=cache)
    m = next(m for m in result.measurements if m.kind == "accuracy")
    assert m.status == "ok", m.error
    details = json.loads(m.accuracy_json)
    assert (details["launches"], details["samples_per_launch"]) == (1, 8)
    assert "--input_layer_shape=8,3,16,16" in m.command
    assert m.accuracy_samples == 8 and m.host_agreement == 1.0
    assert m.host_max_rel_diff <= 1e-5
    assert m.device_top1 is None and m.baseline_agreement is None


def test_a_bad_output_or_a_crash_fails_that_sample_only(lab, cache, tmp_path):
    devices = LabState.load(lab).devices
    short, crashing = devices[0].serial, devices[1].serial
    lab_fault(short, {"output_fault": "short", "output_fault_launch": 2}, clear=True, base=lab)
    lab_fault(crashing, {"output_fault": "crash", "output_fault_launch": 3}, clear=True, base=lab)
    try:
        config = _config(tmp_path, lab, "faults", accuracy_on_device=5, variants=["baseline"])
        result = run_benchmarks(config, cache_dir=cache)
        # The missing file: the fault switched again, so it hits the next run's first launch.
        lab_fault(short, {"output_fault": "missing", "output_fault_launch": 1}, clear=True,
                  base=lab)
        missing = run_benchmarks(replace(config, devices=short), cache_dir=cache)
    finally:
        for serial in (short, crashing):
            lab_fault(serial, {}, clear=True, base=lab)
    records = {m.device_serial: m for m in result.measurements if m.kind == "accuracy"}
    timing = [m for m in result.measurements if m.kind == "timing"]
    assert all(m.status == "ok" for m in timing)  # the run went on
    cut, crashed = records[short], records[crashing]
    assert cut.status == "failed" and cut.accuracy_samples == 4
    assert cut.error.endswith("sample 1: output file of 20 bytes, expected 40 (40 for 1 "
                              "output tensor(s))"), cut.error
    assert crashed.status == "failed" and crashed.accuracy_samples == 4
    assert "sample 2: benchmark_model ended by signal 11 (exit 139)" in crashed.error
    # Figures over the samples that answered; each failure named in the record.
    assert cut.host_agreement == crashed.host_agreement == 1.0
    assert [{k: v for k, v in f.items() if k != "exit"}
            for f in json.loads(cut.accuracy_json)["failures"]] == [
        {"samples": [1], "error": "output file of 20 bytes, expected 40 (40 for 1 output "
                                  "tensor(s))"}]
    assert result.exit_code == 1
    # A launch that can never work (here: every one crashes) stops the job after 3 alike.
    lab_fault(crashing, {"output_fault": "crash", "output_fault_launch": 0}, clear=True, base=lab)
    try:
        every = run_benchmarks(replace(config, devices=crashing), cache_dir=cache)
    finally:
        lab_fault(crashing, {}, clear=True, base=lab)
    stopped = next(m for m in every.measurements if m.kind == "accuracy")
    assert stopped.accuracy_samples == 0 and stopped.accuracy_samples_failed == 5
    assert json.loads(stopped.accuracy_json)["failures"][-1] == {
        "samples": [3, 4], "error": "not launched: 3 launch(es) failed alike"}
    gone = next(m for m in missing.measurements if m.kind == "accuracy")
    assert gone.status == "failed" and gone.accuracy_samples == 4
    assert "sample 0: no output file (benchmark_model wrote none)" in gone.error
    failures = (result.report_dir / "report.md").read_text().split("## Failed")[1]
    assert "sample 1: output file of 20 bytes" in failures


def test_a_binary_without_the_flags_reports_it_unavailable(cache, tmp_path):
    base = tmp_path / "litert-lab"
    lab_up(1, base, flavour="litert")
    try:
        config = _config(tmp_path, base, "litert", accuracy_on_device=3, variants=["baseline"])
        result = run_benchmarks(config, cache_dir=cache)
    finally:
        lab_down(base)
    accuracy = [m for m in result.measurements if m.kind == "accuracy"]
    assert [m.status for m in accuracy] == ["unavailable"]
    assert accuracy[0].error.startswith("accuracy on the device: this benchmark_model (litert "
                                        "bench-virtual 0.1.0) has no --input_layer")
    assert result.exit_code == 0  # the timing launches went on and are ok
    assert any(m.kind == "timing" and m.status == "ok" for m in result.measurements)
    with sqlite3.connect(config.store_path) as db:  # stored like any other record
        assert db.execute("SELECT count(*) FROM measurements WHERE kind='accuracy' AND "
                          "status='unavailable'").fetchone()[0] == 1


def test_outputs_are_decoded_with_their_dtype_shape_and_quantization():
    import numpy as np

    from harness.benchmark.device_accuracy import (AccuracyPlan, OutputFileError, OutputSpec,
                                                   SampleLaunch, decode_outputs)

    launch = SampleLaunch([7], Path("in.bin"), "0" * 64, "/data/local/tmp/bench/samples/x.bin")
    plan = AccuracyPlan("a" * 64, "int8io", "in", (1, 4),
                        [OutputSpec("int8", (1, 4), 0.5, -2), OutputSpec("float32", (1, 2))],
                        [launch], np.zeros((1, 4)), None, None)
    # Raw tensors back to back in output order: the first is the scores, dequantized.
    raw = np.array([-2, 0, 2, 4], np.int8).tobytes() + np.zeros(2, np.float32).tobytes()
    assert decode_outputs(raw, plan, launch).tolist() == [[0.0, 1.0, 2.0, 3.0]]
    for wrong, said in ((raw[:-1], "output file of 11 bytes, expected 12 (4 + 8 for 2 output "
                                    "tensor(s))"),
                        (raw + b"\0", "output file of more than 12 bytes, expected 12"),
                        (None, "no output file")):
        with pytest.raises(OutputFileError) as raised:
            decode_outputs(wrong, plan, launch)
        assert str(raised.value).startswith(said)


def test_a_delegate_that_computes_something_else_is_flagged():
    import numpy as np

    from harness.benchmark.device_accuracy import AccuracyPlan, judge

    rng = np.random.default_rng(0)
    host = rng.normal(size=(50, 10))
    labels = host.argmax(axis=1)
    plan = AccuracyPlan("a" * 64, "baseline", "in", (1, 10), [], [], host, labels, labels)
    same = judge(plan, {i: host[i] for i in range(50)}, [], min_agreement=0.98)
    assert same.flag is None and same.host_agreement == 1.0 and same.device_top1 == 1.0
    # What a mis-computing GPU graph gives: outputs that have little to do with the host's.
    garbled = judge(plan, {i: rng.normal(size=10) for i in range(50)}, [], min_agreement=0.98)
    assert garbled.flag.startswith("top-1 agrees with the host on ")
    assert "cosine" in garbled.flag and garbled.host_cosine_min < 0.99
    assert garbled.device_top1 == garbled.host_agreement < 0.5
