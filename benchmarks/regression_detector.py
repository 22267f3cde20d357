"""How good is the REGRESSED verdict on real noise, paired and cross-run? (issue 14, acceptance 1)

    python benchmarks/regression_detector.py [--model mobilenet_v3_small] [--pairs 120] [--nights 300]
    python benchmarks/regression_detector.py --store bench.db --run RUN_ID   # reuse a recording

Records real host-CPU noise on a fresh one-device virtual lab: a baseline run of one artifact,
then a run paired with it as `bench run --baseline` pairs (the same artifact as candidate, so the
truth is "no change"): `--pairs` pairs of launches, baseline and candidate in a random order per
pair. Then resamples it into nights, each judged by `harness.regress.compare.compare_samples`,
the function `bench compare` uses:
- paired: a night is a random draw of n recorded pairs; the candidate side scaled by 1.05 for
  power, unscaled for false alarms (A/A);
- cross-run: a night compares n baseline-side launches with n other candidate-side launches
  (the same launch count as n pairs), scaled alike. (Random draws spread a night over the whole
  recording, which averages out the drift a real night-to-night comparison meets: this favours
  cross-run.)
n is what `--trials auto` would choose from the recording's own noise (at least 14; more where
`pairs_for_power`, resampling the recorded pairs, needs more for power 0.9 at +5 %), or
`--nights-pairs`. Printed side by side, for each per-launch statistic: false alarms (target
<= 1 %) and power at +5 % (target >= 0.9), then the same in recording order (nights of
consecutive pairs), as a nightly job meets the drift.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.regress.compare import STATISTICS, Thresholds  # noqa: E402  (after sys.path)

FALSE_ALARM_TARGET, POWER_TARGET, SLOWDOWN = 0.01, 0.9, 1.05
SCALED_FIELDS = ("inference_avg_us", "inference_p50_us", "inference_min_us")


def record(pairs: int, model: str, min_secs: float, work: Path) -> tuple[Path, str, str]:
    """A baseline run and a run paired with it, on a fresh one-device virtual lab."""
    os.environ["BENCH_STATE_DIR"] = str(work / "state")  # a lab of its own
    from harness.config import BenchmarkSettings, RunConfig
    from harness.run import run_benchmarks
    from harness.targets.adb.virtual_lab import lab_down, lab_up

    lab_up(1)
    try:
        def run(trials: int, paired_with: str | None = None) -> str:
            config = RunConfig(store_path=work / "bench.db", reports_dir=work / "reports",
                               model=model, variants=["baseline"], trials=trials,
                               peak_memory=False, paired_baseline=paired_with,
                               benchmark=BenchmarkSettings(num_runs=20, min_secs=min_secs,
                                                           warmup_min_secs=0.02, max_secs=20))
            return run_benchmarks(config, log=lambda m: print(m, flush=True)).run_id

        base = run(2)
        return work / "bench.db", base, run(pairs, paired_with=base)
    finally:
        lab_down()


def recorded_pairs(store_path: Path, run_id: str) -> tuple[list, list]:
    """The run's (paired baseline launch, timing launch) per trial, in recording order."""
    from harness.results.store import Store

    store = Store(store_path)
    ms = [m for m in store.measurements(run_id) if m.status == "ok"]
    store.close()
    base = {m.trial: m for m in ms if m.kind == "paired"}
    cand = {m.trial: m for m in ms if m.kind == "timing" and not m.role}
    trials = sorted(set(base) & set(cand), key=lambda t: base[t].started_at)
    return [base[t] for t in trials], [cand[t] for t in trials]


def _scaled(m, factor: float, run_id: str, trial: int):
    return replace(m, run_id=run_id, trial=trial,
                   **{f: getattr(m, f) * factor for f in SCALED_FIELDS if getattr(m, f) is not None})


def night_verdict(base: list, cand: list, slowdown: float, paired: bool, t: Thresholds) -> str:
    """One night's latency verdict through compare_samples: `paired` judges base[i] beside
    cand[i]; else base and cand as two runs' samples."""
    from harness.regress.compare import compare_samples

    cand_side = [_scaled(m, slowdown, "cand", i) for i, m in enumerate(cand)]
    if paired:
        # The baseline run timed the artifact the paired launches ran (same sha): a record of it.
        base_run = [replace(base[0], run_id="base", kind="timing", role=None)]
        cand_run = cand_side + [_scaled(m, 1.0, "cand", i) for i, m in enumerate(base)]
    else:
        base_run = [replace(_scaled(m, 1.0, "base", i), kind="timing", role=None)
                    for i, m in enumerate(base)]
        cand_run = cand_side
    [v] = compare_samples("base", "cand", base_run, cand_run, t, paired=paired).latency
    assert v.mode == ("paired" if paired else "cross-run"), v.mode
    return str(v.verdict)


def rates(base: list, cand: list, n: int, nights: int, t: Thresholds, paired: bool,
          seed: int, in_order: bool = False) -> tuple[float, float]:
    """(A/A false-alarm rate, power at SLOWDOWN) over `nights` resampled nights of n pairs."""
    rng = np.random.default_rng(seed)
    found = {1.0: 0, SLOWDOWN: 0}
    starts = range(0, len(base) - 2 * n + 1) if in_order else range(nights)
    for start in starts:
        if in_order:  # consecutive pairs; cross-run: the next n pairs are the candidate night
            b_idx = np.arange(start, start + n)
            c_idx = b_idx if paired else b_idx + n
        else:
            picks = rng.permutation(len(base))
            b_idx = picks[:n]
            c_idx = b_idx if paired else picks[n:2 * n]
        b = [base[i] for i in b_idx]
        for slowdown in found:
            c = [cand[i] for i in c_idx]
            found[slowdown] += night_verdict(b, c, slowdown, paired, t) == "REGRESSED"
    total = len(starts)
    return found[1.0] / total, found[SLOWDOWN] / total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v3_small",
                        help="Built-in model to record (a ~1 ms model; sub-0.1 ms ones are mostly noise).")
    parser.add_argument("--pairs", type=int, default=120, help="Pairs to record.")
    parser.add_argument("--min-secs", type=float, default=0.5, help="benchmark_model --min_secs.")
    parser.add_argument("--nights", type=int, default=300, help="Resampled nights per figure.")
    parser.add_argument("--nights-pairs", type=int, default=None,
                        help="Pairs per night (default: what --trials auto picks from the noise).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", type=Path, default=None, help="Reuse a recorded paired run.")
    parser.add_argument("--run", default=None, help="The paired run's id in --store.")
    args = parser.parse_args()

    from harness.regress.noise import AUTO_MIN_PAIRS
    from harness.regress.paired import log_ratios, pairs_for_power, robust_sigma
    from harness.results.statistic import DEFAULT_STATISTIC, launch_value_us

    if args.store:
        store_path, run_id = args.store, args.run
    else:
        store_path, _, run_id = record(args.pairs, args.model, args.min_secs,
                                       Path(tempfile.mkdtemp(prefix="bench-detector-")))
    base, cand = recorded_pairs(store_path, run_id)
    if len(base) < 16:
        print(f"need >= 16 recorded pairs in run {run_id}; got {len(base)}")
        return 2
    first = base[0]
    print(f"recorded: run {run_id}, {len(base)} pairs of {first.model_name}:{first.variant} "
          f"(the same artifact on both sides) on {first.device_id}, {first.num_threads} thread(s)")
    print(f"nights: {args.nights} resampled per figure; slowdown made by scaling the candidate "
          f"side by {SLOWDOWN}")
    print("  statistic  pair noise  launch CV  n/night  |  paired: A/A  +5 %  |  cross-run: A/A  +5 %")
    figures = {}
    for statistic in STATISTICS:
        t = Thresholds(statistic=statistic, bootstrap_resamples=200)
        b = [launch_value_us(m, statistic) for m in base]
        c = [launch_value_us(m, statistic) for m in cand]
        d = log_ratios(b, c)
        sigma = robust_sigma(d)
        launch_cv = float(np.std(np.log(np.asarray(b + c))))
        # As `--trials auto` plans from a key's recorded pairs (harness.regress.noise).
        n = args.nights_pairs or max(AUTO_MIN_PAIRS, pairs_for_power(
            sigma, SLOWDOWN, residuals=d))
        n = min(n, len(base) // 2)
        paired = rates(base, cand, n, args.nights, t, True, args.seed)
        cross = rates(base, cand, n, args.nights, t, False, args.seed)
        figures[statistic] = (n, paired, cross)
        print(f"  {statistic:>9}  {100 * sigma:8.1f} %  {100 * launch_cv:7.1f} %  {n:>7}  |"
              f"  {100 * paired[0]:9.1f} %  {paired[1]:4.2f}  |  {100 * cross[0]:12.1f} %  "
              f"{cross[1]:4.2f}", flush=True)
    print("in recording order (nights of consecutive pairs; cross-run: the next block of launches):")
    for statistic in STATISTICS:
        n = figures[statistic][0]
        t = Thresholds(statistic=statistic, bootstrap_resamples=200)
        paired = rates(base, cand, n, args.nights, t, True, args.seed, in_order=True)
        cross = rates(base, cand, n, args.nights, t, False, args.seed, in_order=True)
        print(f"  {statistic:>9}  n {n:>3}  |  paired: A/A {100 * paired[0]:5.1f} %, +5 % "
              f"{paired[1]:4.2f}  |  cross-run: A/A {100 * cross[0]:5.1f} %, +5 % {cross[1]:4.2f}")
    n, paired, cross = figures[DEFAULT_STATISTIC]
    print(f"default statistic ({DEFAULT_STATISTIC}), {n} pairs a night:")
    print(f"  paired:    false alarms {100 * paired[0]:.1f} % (target <= "
          f"{100 * FALSE_ALARM_TARGET:.0f} %), power at +5 % {paired[1]:.2f} (target >= {POWER_TARGET})")
    print(f"  cross-run: false alarms {100 * cross[0]:.1f} %, power at +5 % {cross[1]:.2f}")
    met = paired[0] <= FALSE_ALARM_TARGET and paired[1] >= POWER_TARGET
    print("targets met (paired)" if met else "targets NOT met (paired)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
