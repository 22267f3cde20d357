"""Verdicts of `bench compare` on synthetic samples, the store's tags, JUnit XML, compare.md and
the CLI's exit codes. Samples are per-launch figures in µs with realistic (≈1-2 %) noise; a
launch's minimum, median and mean are the same value unless a test says otherwise."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from harness.regress.compare import (IMPROVED, INVALID, REGRESSED, SAME, UNKNOWN, VERDICTS, Thresholds,
                             Verdict, compare, compare_samples, latency_test, parse_threshold,
                             resolve_run_ref)
from harness.config import HygieneSettings
from harness.errors import UserError
from harness.regress.junit import junit_tree
from harness.results.schema import Measurement
from harness.results.store import Store

REPO = Path(__file__).resolve().parent.parent
PROPS = json.dumps({"ro.build.fingerprint": "bench/virtual/x86_64:14/UQ1A/1:user/release-keys"})
GOOD_TELEMETRY = {"battery_pct": 80, "charging": False, "thermal_status": 0, "max_temp_c": 31.0}


def noisy(median_us: float, n: int, cv: float = 0.01, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(median_us * (1 + cv * rng.standard_normal(n)))


def samples(run_id: str, values_us, variant="baseline", serial="vdev-1", delegate=None,
            telemetry=None, status="ok", artifact="a" * 64, start_trial=0,
            means_us=None) -> list[Measurement]:
    means_us = list(values_us) if means_us is None else list(means_us)
    return [Measurement(
        run_id=run_id, device_serial=serial, adb_server="127.0.0.1:5037", variant=variant,
        status=status, kind="timing", trial=start_trial + i, delegate_choice=delegate,
        num_threads=4, cpu_mask="f0", model_name="digits_cnn", artifact_sha256=artifact,
        binary_sha256="b" * 64, device_props_json=PROPS, inference_min_us=value,
        inference_p50_us=value, inference_avg_us=mean, inference_count=20,
        model_size_bytes=120_000, battery_pct=80,
        telemetry_before_json=json.dumps(telemetry or GOOD_TELEMETRY))
        for i, (value, mean) in enumerate(zip(values_us, means_us))]


def only_verdict(base, cand, thresholds=None):
    result = compare_samples("base", "cand", base, cand, thresholds)
    assert len(result.latency) == 1
    return result.latency[0]


# -- verdict paths -------------------------------------------------------------------------------
def test_genuinely_slower_candidate_is_regressed():
    v = only_verdict(samples("b", noisy(2000, 12, seed=1)), samples("c", noisy(2300, 12, seed=2)))
    assert v.verdict == REGRESSED
    assert v.test.ci_low > 1 and v.test.ratio > 1.1


def test_faster_candidate_is_improved_never_regressed():
    v = only_verdict(samples("b", noisy(2000, 12, seed=1)), samples("c", noisy(1600, 12, seed=2)))
    assert v.verdict == IMPROVED
    assert v.test.p_faster <= 0.01 and v.test.p_slower > 0.5


def test_one_sided_tests_point_the_right_way():
    base, slower = noisy(1000, 10, seed=3), noisy(1100, 10, seed=4)
    up = latency_test(base, slower, Thresholds())
    down = latency_test(slower, base, Thresholds())
    assert up.p_slower < 0.01 < up.p_faster
    assert down.p_faster < 0.01 < down.p_slower


def test_same_distribution_is_same():
    v = only_verdict(samples("b", noisy(2000, 15, cv=0.005, seed=5)),
                     samples("c", noisy(2000, 15, cv=0.005, seed=6)))
    assert v.verdict == SAME
    assert 1 / 1.05 <= v.test.ci_low <= v.test.ci_high <= 1.05


def test_slowdown_below_threshold_is_not_regressed():
    # 3 % slower, clearly significant, but under the 5 % threshold: not a regression.
    v = only_verdict(samples("b", noisy(2000, 20, cv=0.003, seed=7)),
                     samples("c", noisy(2060, 20, cv=0.003, seed=8)))
    assert v.test.p_slower <= 0.01
    assert v.verdict == SAME


def test_noisy_inconclusive_key_is_unknown_with_more_trials():
    # 6 % slower estimate with 5 % noise and 4 samples: the CI straddles both 1 and the threshold.
    v = only_verdict(samples("b", noisy(2000, 4, cv=0.05, seed=9)),
                     samples("c", noisy(2120, 4, cv=0.05, seed=10)))
    assert v.verdict == UNKNOWN
    assert v.more_trials is not None and v.more_trials >= 1
    assert "more trials" in v.reason


def test_fewer_than_three_samples_is_unknown_and_says_why():
    v = only_verdict(samples("b", [2000.0, 2010.0]), samples("c", noisy(3000, 10)))
    assert v.verdict == UNKNOWN
    assert "too few samples" in v.reason and v.test is None


def test_per_key_threshold_override_by_pattern():
    base = samples("b", noisy(2000, 15, cv=0.003, seed=11), delegate="gpu")
    cand = samples("c", noisy(2160, 15, cv=0.003, seed=12), delegate="gpu")  # 8 % slower
    assert only_verdict(base, cand).verdict == REGRESSED
    relaxed = Thresholds()
    parse_threshold("*delegate=gpu*=1.10", relaxed)
    v = only_verdict(base, cand, relaxed)
    assert v.threshold == 1.10 and v.verdict != REGRESSED


def test_statistic_chooses_the_per_launch_figure():
    # Every launch's fastest runs are unchanged, its mean 20 % up (a slowdown of some runs only,
    # e.g. interference): the default (min) sees no regression, --statistic mean does.
    fastest_b, fastest_c = noisy(2000, 12, cv=0.003, seed=17), noisy(2000, 12, cv=0.003, seed=18)
    base = samples("b", fastest_b, means_us=[v * 1.05 for v in fastest_b])
    cand = samples("c", fastest_c, means_us=[v * 1.26 for v in fastest_c])
    by_min = only_verdict(base, cand)
    assert Thresholds().statistic == "min" and by_min.verdict == SAME
    by_mean = only_verdict(base, cand, Thresholds(statistic="mean"))
    assert by_mean.verdict == REGRESSED and by_mean.test.ratio == pytest.approx(1.2, abs=0.02)


def test_parse_threshold_rejects_nonsense():
    with pytest.raises(UserError):
        parse_threshold("*gpu*=fast", Thresholds())
    with pytest.raises(UserError):
        parse_threshold("0.9", Thresholds())


# -- validity gates ------------------------------------------------------------------------------
@pytest.mark.parametrize("cand, why", [
    (samples("c", noisy(2000, 10, cv=0.2, seed=13)), "CV"),
    (samples("c", [2000.0] * 8 + [7000.0, 2010.0]), "max/min"),
    (samples("c", noisy(2000, 10), telemetry=dict(GOOD_TELEMETRY, thermal_status=3)), "throttled"),
    (samples("c", noisy(2000, 10), telemetry=dict(GOOD_TELEMETRY, battery_pct=12)), "battery"),
    (samples("c", noisy(2000, 10)) + samples("c", [None], status="invalid"), "invalid"),
])
def test_validity_gates_make_the_key_invalid(cand, why):
    v = only_verdict(samples("b", noisy(2000, 10, seed=14)), cand)
    assert v.verdict == INVALID
    assert why in v.reason


def test_low_battery_while_charging_is_not_a_gate():
    cand = samples("c", noisy(2000, 10, cv=0.004, seed=15),
                   telemetry=dict(GOOD_TELEMETRY, battery_pct=12, charging=True))
    v = only_verdict(samples("b", noisy(2000, 10, cv=0.004, seed=16)), cand)
    assert v.verdict != INVALID


def test_the_gates_hold_samples_to_the_runs_own_hygiene_thresholds():
    run, gates = HygieneSettings(), Thresholds()
    assert (gates.max_thermal_status, gates.min_battery_pct) == (run.max_thermal_status,
                                                                 run.min_battery_pct)


def test_verdicts_are_an_enum_that_reads_and_stores_as_its_name():
    assert VERDICTS == (Verdict.REGRESSED, Verdict.INVALID, Verdict.UNKNOWN, Verdict.IMPROVED,
                        Verdict.SAME)
    assert all(v == v.name and str(v) == f"{v}" == v.name for v in Verdict)
    assert json.dumps({REGRESSED: [SAME]}) == '{"REGRESSED": ["SAME"]}'


def test_keys_differ_by_device_and_delegate():
    base = samples("b", noisy(2000, 8)) + samples("b", noisy(2000, 8), serial="vdev-2")
    cand = samples("c", noisy(2000, 8)) + samples("c", noisy(2000, 8), delegate="xnnpack")
    result = compare_samples("b", "c", base, cand)
    assert [v.key.device_serial for v in result.latency] == ["vdev-1"]
    assert len(result.only_in_base) == 1 and len(result.only_in_cand) == 1


# -- store: runs, tags, size and accuracy ----------------------------------------------------------
def make_store(tmp_path, base_us, cand_us, cand_size=120_000, cand_top1=0.981) -> Store:
    store = Store(tmp_path / "bench.db")
    for run_id, started, values, sha, size, top1 in (
            ("20260101-000000-base", "2026-01-01T00:00:00.000+00:00", base_us, "a" * 64, 120_000, 0.982),
            ("20260102-000000-cand", "2026-01-02T00:00:00.000+00:00", cand_us, "c" * 64, cand_size, cand_top1)):
        store.start_run(run_id, started, "0.1", "host", {})
        store.record_artifact(sha, f"digits_cnn-baseline-{sha[:4]}", "digits_cnn", "baseline", size,
                              {"accuracy": {"top1": top1, "n": 1000}})
        for m in samples(run_id, values, artifact=sha):
            store.add_measurement(m)
        store.finish_run(run_id, started, "ok", 0)
    return store


def test_compare_runs_gives_size_and_accuracy_verdicts(tmp_path):
    store = make_store(tmp_path, noisy(2000, 10, seed=1), noisy(2000, 10, seed=2),
                       cand_size=125_000, cand_top1=0.970)
    result = compare(store, "20260101-000000-base", "20260102-000000-cand")
    assert [v.verdict for v in result.size] == [REGRESSED]          # +4.2 % bytes
    assert [v.verdict for v in result.accuracy] == [REGRESSED]      # -1.2 points
    assert result.exit_code == 1


def test_small_size_and_accuracy_changes_are_same(tmp_path):
    store = make_store(tmp_path, noisy(2000, 10, seed=1), noisy(2000, 10, seed=2),
                       cand_size=120_500, cand_top1=0.979)
    result = compare(store, "20260101-000000-base", "20260102-000000-cand")
    assert [v.verdict for v in result.size + result.accuracy] == [SAME, SAME]


def test_unknown_run_and_no_common_key_are_user_errors(tmp_path):
    store = make_store(tmp_path, noisy(2000, 5), noisy(2000, 5))
    with pytest.raises(UserError, match="not in"):
        compare(store, "nope", "20260102-000000-cand")
    store.start_run("20260103-000000-other", "2026-01-03T00:00:00.000+00:00", "0.1", "h", {})
    for m in samples("20260103-000000-other", noisy(2000, 5), serial="vdev-9"):
        store.add_measurement(m)
    with pytest.raises(UserError, match="no key in common"):
        compare(store, "20260101-000000-base", "20260103-000000-other")


def test_tags_and_latest(tmp_path):
    store = make_store(tmp_path, noisy(2000, 5), noisy(2000, 5))
    assert store.latest_run_id() == "20260102-000000-cand"
    assert store.latest_run_id(exclude="20260102-000000-cand") == "20260101-000000-base"
    store.tag_run("20260101-000000-base", "release-1.4")
    assert resolve_run_ref(store, "tag:release-1.4") == "20260101-000000-base"
    store.tag_run("20260102-000000-cand", "release-1.4")  # a tag names one run: it moves
    assert store.run_for_tag("release-1.4") == "20260102-000000-cand"
    with pytest.raises(UserError):
        resolve_run_ref(store, "tag:missing")


# -- outputs ------------------------------------------------------------------------------------
def test_junit_xml_has_one_case_per_key_with_failures_and_skips():
    base = (samples("b", noisy(2000, 10, seed=1)) + samples("b", noisy(2000, 10), serial="vdev-2")
            + samples("b", noisy(2000, 10), serial="vdev-3"))
    cand = (samples("c", noisy(2500, 10, seed=2)) + samples("c", [2000.0, 2001.0], serial="vdev-2")
            + samples("c", noisy(2000, 10, cv=0.3), serial="vdev-3"))
    result = compare_samples("b", "c", base, cand)
    xml_text = ET.tostring(junit_tree(result).getroot(), encoding="unicode")
    suite = ET.fromstring(xml_text).find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == 3 and suite.get("failures") == "1" and suite.get("skipped") == "2"
    by_device = {c.get("name").split("@")[1].split()[0]: c for c in cases}
    assert by_device["vdev-1"].find("failure") is not None
    assert "UNKNOWN" in by_device["vdev-2"].find("skipped").get("message")
    assert "INVALID" in by_device["vdev-3"].find("skipped").get("message")


def _cli():
    from harness.cli import cli  # compare, history and tag are registered on import

    return cli


def test_cli_compare_regressed_exits_1_and_writes_outputs(tmp_path):
    store = make_store(tmp_path, noisy(2000, 10, seed=1), noisy(2600, 10, seed=2))
    store.close()
    junit = tmp_path / "junit.xml"
    result = CliRunner().invoke(_cli(), [
        "compare", "20260101-000000-base", "latest", "--store", str(tmp_path / "bench.db"),
        "--reports-dir", str(tmp_path / "reports"), "--junit", str(junit)])
    assert result.exit_code == 1, result.output
    assert "REGRESSED" in result.output
    md = (tmp_path / "reports" / "20260102-000000-cand" / "compare.md").read_text()
    assert "regressions found" in md and "| " in md and "REGRESSED" in md
    assert "| digits_cnn:baseline@vdev-1" in md
    assert ET.parse(junit).getroot().find("testsuite").get("failures") == "1"


def test_cli_compare_identical_exits_0_with_json_and_tag(tmp_path):
    store = make_store(tmp_path, noisy(2000, 10, seed=1), noisy(2000, 10, seed=2))
    store.close()
    db = str(tmp_path / "bench.db")
    runner = CliRunner()
    tagged = runner.invoke(_cli(), ["tag", "20260101-000000-base", "release-1.4", "--store", db])
    assert tagged.exit_code == 0, tagged.output
    result = runner.invoke(_cli(), ["compare", "tag:release-1.4", "latest", "--store", db,
                                    "--output", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["base_run"] == "20260101-000000-base" and not data["regressed"]
    assert data["latency"][0]["verdict"] != REGRESSED
    assert (tmp_path / "out" / "compare.md").exists()
    hist = runner.invoke(_cli(), ["history", "--store", db, "--model", "digits_cnn"])
    assert hist.exit_code == 0
    assert "release-1.4" in hist.output and "20260102-000000-cand" in hist.output


@pytest.mark.parametrize("args, message", [
    (["compare", "no-such-run", "latest"], "base run no-such-run: not in"),
    (["compare", "20260101-000000-base", "20260103-000000-other"], "no key in common"),
])
def test_cli_usage_errors_are_one_line_exit_2(tmp_path, args, message):
    store = make_store(tmp_path, noisy(2000, 5), noisy(2000, 5))
    store.start_run("20260103-000000-other", "2026-01-03T00:00:00.000+00:00", "0.1", "h", {})
    for m in samples("20260103-000000-other", noisy(2000, 5), serial="vdev-9"):
        store.add_measurement(m)
    store.close()
    # bench's real main(), so the error-to-exit-code mapping is the one users get.
    proc = subprocess.run([sys.executable, "-m", "harness", *args, "--store", str(tmp_path / "bench.db"),
                           "--output", str(tmp_path / "out")],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# -- acceptance 1: real runs on the virtual lab --------------------------------------------------
WIDTH_NET = '''
import torch
from torch import nn

INPUT_SHAPE = (1, 3, 64, 64)
WIDTH = {width}


def build():
    return nn.Sequential(nn.Conv2d(3, WIDTH, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(WIDTH, WIDTH, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(WIDTH, WIDTH, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(WIDTH, 10))
'''


CONFIRM_TRIALS = 8


@pytest.fixture(scope="module")
def lab_runs(tmp_path_factory):
    """Real runs on a 2-device virtual lab (each device on a host core of its own): base, the
    same artifact again, the same model name and variant made 2x wider (a genuinely slower
    candidate), and the base artifact again while a CPU hog shares each device's core (a run
    disturbed by its environment, not by the artifact). The lab stays up for --confirm."""
    import os

    from harness.config import BenchmarkSettings, RunConfig
    from harness.targets.adb.virtual_lab import lab_down, lab_up
    from harness.run import run_benchmarks

    work = tmp_path_factory.mktemp("compare-lab")
    module = work / "i5b_widthnet.py"
    sys.path.insert(0, str(work))
    old_state = os.environ.get("BENCH_STATE_DIR")
    os.environ["BENCH_STATE_DIR"] = str(work / "state")
    lab = lab_up(2)
    try:
        def run(width: int, paired_with: str | None = None) -> str:
            module.write_text(WIDTH_NET.format(width=width))
            sys.modules.pop("i5b_widthnet", None)  # the edited file, not the imported one
            # 12 trials of 0.5 s a side: on this 2-core VM about one launch in a hundred comes
            # out 30 % or more slow (its host's doing); among few trials that one alone would
            # reach the 10 % CV gate and make the key INVALID.
            config = RunConfig(model="i5b_widthnet:build", trials=12, peak_memory=False,
                               store_path=work / "bench.db", reports_dir=work / "reports",
                               benchmark=BenchmarkSettings(num_runs=20, min_secs=0.5,
                                                           warmup_min_secs=0.02, max_secs=20),
                               paired_baseline=paired_with)
            return run_benchmarks(config, cache_dir=work / "cache").run_id

        # The second and third runs launch the base run's artifact beside their own, as
        # `bench run --baseline` does (paired); compare(..., paired=False) ignores those pairs.
        run_ids = [run(16)]
        run_ids += [run(16, paired_with=run_ids[0]), run(32, paired_with=run_ids[0])]
        hogs = [cpu_hog(device.host_cpus) for device in lab.devices]
        try:
            run_ids.append(run(16))
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
        store = Store(work / "bench.db")
        yield store, run_ids, work
        store.close()
    finally:
        lab_down()
        sys.path.remove(str(work))
        sys.modules.pop("i5b_widthnet", None)
        if old_state is None:
            os.environ.pop("BENCH_STATE_DIR", None)
        else:
            os.environ["BENCH_STATE_DIR"] = old_state


def cpu_hog(host_cpus) -> subprocess.Popen:
    """A busy loop on these host cores until killed."""
    cpus = set(host_cpus) if host_cpus else None
    return subprocess.Popen([sys.executable, "-c", "while True: pass"],
                            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)


def test_lab_devices_run_on_cores_of_their_own(lab_runs):
    store, (base, *_rest), _work = lab_runs
    cores = [json.loads(m.device_props_json)["bench.virtual.host_cpus"]
             for m in store.measurements(base) if m.trial == 0]
    assert len(cores) == 2 and cores[0] != cores[1]


def test_lab_identical_artifacts_never_regress(lab_runs):
    """What a nightly job sees for an unchanged artifact: `bench compare --confirm`.

    Two runs seconds apart can sit in different speed states of this shared host (its cores
    run ~10 % slower for seconds at a time, on every core at once), so a comparison of two runs
    alone may flag an unchanged key; the interleaved confirmation sees both sides in the same
    states and must clear it."""
    from harness.regress.confirm import confirm_regressions

    store, (base, same, _wide, _disturbed), _work = lab_runs
    first = compare(store, base, same, paired=False)
    assert len(first.latency) == 2  # one key per device
    assert {v.mode for v in first.latency} == {"cross-run"}
    result = confirm_regressions(store, first, trials=CONFIRM_TRIALS)
    assert not result.regressed, [(v.reason, v.confirmation) for v in result.latency]
    assert result.size[0].verdict == SAME


def test_lab_paired_run_of_the_unchanged_artifact_is_not_regressed(lab_runs):
    store, (base, same, _wide, _disturbed), _work = lab_runs
    result = compare(store, base, same)
    assert len(result.latency) == 2 and not result.regressed
    for v in result.latency:
        assert v.mode == "paired" and v.pairs == 12, v.reason
        assert v.mde_ratio is not None and v.mde_ratio > 1
    assert result.size[0].verdict == SAME  # the run's own artifact, not the baseline's beside it


def test_lab_paired_launches_sit_beside_their_trial_in_a_random_order(lab_runs):
    store, (base, _same, wide, _disturbed), _work = lab_runs
    base_sha = next(m.artifact_sha256 for m in store.measurements(base) if m.kind == "timing")
    launches = sorted((m for m in store.measurements(wide) if m.kind in ("timing", "paired")),
                      key=lambda m: m.started_at)
    orders = set()
    for device in {m.device_id for m in launches}:
        mine = [m for m in launches if m.device_id == device]
        assert len(mine) == 2 * 12
        for first, second in zip(mine[0::2], mine[1::2]):
            assert first.trial == second.trial and {first.kind, second.kind} == {"timing", "paired"}
            paired = first if first.kind == "paired" else second
            assert paired.role == "base" and paired.artifact_sha256 == base_sha
            orders.add(first.kind)
    assert orders == {"timing", "paired"}  # neither side always goes first
    # the run's report and latency table are the candidate's alone
    from harness.report import latency_table

    assert set(latency_table(store.measurements(wide))["trials"]) == {12}


# The noise gates opened for the lab's claims below (the gates have their own tests above): on a
# 2-core host both devices share cores with the test run itself, launch CVs reach 10-20 %, and
# what these claims are about is a real, 3x regression found and kept.
OPEN_GATES = Thresholds(max_cv=float("inf"), max_spread=float("inf"))


def test_lab_wider_candidate_is_regressed_on_every_device(lab_runs):
    store, (base, _same, wide, _disturbed), _work = lab_runs
    for paired in (True, False):
        result = compare(store, base, wide, OPEN_GATES, paired=paired)
        assert len(result.latency) == 2 and result.regressed
        for v in result.latency:
            assert v.verdict == REGRESSED, v.reason
            assert v.mode == ("paired" if paired else "cross-run")
            assert v.test.ratio > 2 and v.test.p_slower <= 0.01 and v.test.ci_low > 1


def test_lab_confirm_leaves_a_paired_verdict_as_it_is(lab_runs):
    from harness.regress.confirm import confirm_regressions

    store, (base, _same, wide, _disturbed), _work = lab_runs
    before = len(store.measurements(wide))
    result = confirm_regressions(store, compare(store, base, wide, OPEN_GATES), trials=CONFIRM_TRIALS)
    for v in result.latency:
        assert v.verdict == REGRESSED and v.confirmation.startswith("already paired")
    assert len(store.measurements(wide)) == before  # nothing launched


def test_lab_confirm_keeps_a_real_regression(lab_runs):
    from harness.regress.confirm import confirm_regressions

    store, (base, _same, wide, _disturbed), _work = lab_runs
    result = confirm_regressions(store, compare(store, base, wide, OPEN_GATES, paired=False),
                                 trials=CONFIRM_TRIALS)
    for v in result.latency:
        assert v.verdict == REGRESSED, (v.reason, v.confirmation)
        assert v.confirmation.startswith(f"confirmed by {CONFIRM_TRIALS} interleaved pairs")
        assert v.mode == "paired (--confirm)" and v.pairs == CONFIRM_TRIALS
    confirm_launches = [m for m in store.measurements(wide) if m.kind == "confirm"]
    assert len(confirm_launches) == 2 * 2 * CONFIRM_TRIALS  # devices x sides x trials
    assert {m.role for m in confirm_launches} == {"base", "cand"}
    # interleaved on each device: base, cand, base, cand, ... in the store's order
    for serial in {m.device_serial for m in confirm_launches}:
        roles = [m.role for m in confirm_launches if m.device_serial == serial]
        assert roles == ["base", "cand"] * CONFIRM_TRIALS


def test_lab_confirm_overturns_a_regression_made_by_the_environment(lab_runs):
    from harness.regress.confirm import confirm_regressions

    store, (base, _same, _wide, disturbed), _work = lab_runs
    # Judged by launch means (with the noise gates opened, as the hog makes means erratic), the
    # hogged run looks slower; the interleaved re-run, hog gone, shows the artifact is not.
    loose = Thresholds(statistic="mean", max_cv=float("inf"), max_spread=float("inf"))
    by_mean = compare(store, base, disturbed, loose)
    assert by_mean.regressed, [v.reason for v in by_mean.latency]
    first = {v.label for v in by_mean.latency if v.verdict == REGRESSED}
    result = confirm_regressions(store, by_mean, trials=CONFIRM_TRIALS)
    assert not result.regressed, [(v.reason, v.confirmation) for v in result.latency]
    for v in result.latency:
        if v.label in first:
            assert v.confirmation.startswith(
                f"not confirmed by {CONFIRM_TRIALS} interleaved pairs"), v.confirmation
            assert "first comparison said REGRESSED" in v.confirmation


def test_lab_confirm_without_the_artifact_file_is_a_user_error(lab_runs, tmp_path):
    from harness.regress.confirm import artifact_on_host

    store, (base, *_rest), work = lab_runs
    sha = store.measurements(base)[0].artifact_sha256
    assert artifact_on_host(store, sha, work / "cache").sha256 == sha
    copy = Store(tmp_path / "copy.db")  # a store that knows the artifact but not where it is
    copy.record_artifact(sha, "i5b-baseline", "i5b_widthnet-build", "baseline", 1, {})
    with pytest.raises(UserError, match="not on this host"):
        artifact_on_host(copy, sha, tmp_path / "empty-cache")
    copy.close()

