"""How good is `bench compare`'s REGRESSED verdict on real noise? (issue 5, acceptance 2)

    python benchmarks/regression_detector.py [--model mobilenet_v3_small] [--trials 40] [--subset 10]
    python benchmarks/regression_detector.py --store reports/bench.db --run RUN_ID   # reuse samples

Records `--trials` launches of one artifact on one virtual device (real host-CPU timings), then
resamples them: each comparison draws two disjoint random subsets of `--subset` launches.
- false alarm rate: A/A comparisons (both subsets unchanged) that come out REGRESSED;
- power at 5 % and 10 %: the candidate subset's samples scaled by 1.05 / 1.10, REGRESSED rate.
Every comparison goes through `harness.compare.compare_samples`, the function `bench compare`
uses. Targets: false alarms <= 1 %, power >= 0.9 at 10 %. (At exactly the 5 % threshold the
median-ratio condition alone passes about half the time, so power at 5 % is expected near 0.5.)
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FALSE_ALARM_TARGET = 0.01
POWER_TARGET_10PCT = 0.9


def record_samples(trials: int, model: str, min_secs: float, work: Path) -> tuple[Path, str]:
    """Run one artifact `trials` times on a fresh one-device virtual lab; returns (store, run id)."""
    os.environ["BENCH_STATE_DIR"] = str(work / "state")  # a lab of its own
    from harness.config import BenchmarkSettings, RunConfig
    from harness.lab.virtual_lab import lab_down, lab_up
    from harness.run import run_benchmarks

    lab_up(1)
    try:
        config = RunConfig(store_path=work / "bench.db", reports_dir=work / "reports",
                           model=model, trials=trials, peak_memory=False,
                           benchmark=BenchmarkSettings(num_runs=20, min_secs=min_secs,
                                                       warmup_min_secs=0.02, max_secs=20))
        result = run_benchmarks(config, log=lambda m: print(m, flush=True))
    finally:
        lab_down()
    return config.store_path, result.run_id


def timing_samples(store_path: Path, run_id: str) -> list:
    from harness.store import Store

    store = Store(store_path)
    ok = [m for m in store.measurements(run_id)
          if m.kind == "timing" and m.status == "ok" and m.inference_avg_us is not None]
    store.close()
    return ok


def verdict_rates(samples: list, subset: int, comparisons: int, slowdown: float,
                  rng: np.random.Generator, thresholds=None) -> Counter:
    """Verdicts of `comparisons` resampled base/candidate pairs, the candidate scaled by `slowdown`."""
    from harness.compare import compare_samples

    verdicts: Counter = Counter()
    for _ in range(comparisons):
        picks = rng.permutation(len(samples))
        base = [replace(samples[i], run_id="base") for i in picks[:subset]]
        cand = [replace(samples[i], run_id="cand", inference_avg_us=samples[i].inference_avg_us * slowdown)
                for i in picks[subset:2 * subset]]
        result = compare_samples("base", "cand", base, cand, thresholds)
        verdicts.update(v.verdict for v in result.latency)
    return verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--model", default="mobilenet_v3_small",
                        help="Built-in model to record (a ~1 ms model; sub-0.1 ms ones are mostly noise).")
    parser.add_argument("--min-secs", type=float, default=0.05, help="benchmark_model --min_secs.")
    parser.add_argument("--subset", type=int, default=10)
    parser.add_argument("--comparisons", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", type=Path, default=None, help="Reuse a recorded run instead.")
    parser.add_argument("--run", default=None, help="Run id in --store.")
    args = parser.parse_args()

    if args.store:
        store_path, run_id = args.store, args.run
    else:
        store_path, run_id = record_samples(args.trials, args.model, args.min_secs, Path(tempfile.mkdtemp(prefix="bench-detector-")))
    samples = timing_samples(store_path, run_id)
    keys = {(m.device_serial, m.variant, m.delegate_choice, m.num_threads) for m in samples}
    if len(keys) != 1 or len(samples) < 2 * args.subset:
        print(f"need >= {2 * args.subset} ok timing samples of one key; got {len(samples)} "
              f"over {len(keys)} key(s)")
        return 2
    values = np.array([m.inference_avg_us for m in samples])
    print(f"recorded: run {run_id}, {len(values)} launches, median {np.median(values):.1f} us, "
          f"CV {100 * values.std(ddof=1) / values.mean():.2f} %, max/min {values.max() / values.min():.3f}")

    rng = np.random.default_rng(args.seed)
    figures, figures_invalid = {}, {}
    for name, slowdown in (("A/A", 1.0), ("+5 %", 1.05), ("+10 %", 1.10)):
        verdicts = verdict_rates(samples, args.subset, args.comparisons, slowdown, rng)
        figures[name] = verdicts["REGRESSED"] / args.comparisons
        figures_invalid[name] = verdicts["INVALID"] / args.comparisons
        print(f"{name:>6}: {args.comparisons} comparisons of {args.subset} vs {args.subset} -> "
              + ", ".join(f"{v} {n}" for v, n in sorted(verdicts.items())))
    fa, p5, p10 = figures["A/A"], figures["+5 %"], figures["+10 %"]
    if any(figures_invalid.values()):
        # Context only, not the verdict: what the statistical tests alone would say on this noise
        # if the validity gates (CV, max/min) did not refuse it.
        from harness.compare import Thresholds

        no_gates = Thresholds(max_cv=float("inf"), max_spread=float("inf"))
        rng_no_gates = np.random.default_rng(args.seed)
        print("with the CV and max/min gates off (context only):")
        for name, slowdown in (("A/A", 1.0), ("+5 %", 1.05), ("+10 %", 1.10)):
            verdicts = verdict_rates(samples, args.subset, args.comparisons, slowdown,
                                     rng_no_gates, no_gates)
            print(f"{name:>6}: " + ", ".join(f"{v} {n}" for v, n in sorted(verdicts.items())))
    print(f"false alarm rate: {100 * fa:.1f} % (target <= {100 * FALSE_ALARM_TARGET:.0f} %)")
    print(f"power at 5 % slowdown: {p5:.2f}")
    print(f"power at 10 % slowdown: {p10:.2f} (target >= {POWER_TARGET_10PCT})")
    met = fa <= FALSE_ALARM_TARGET and p10 >= POWER_TARGET_10PCT
    print("targets met" if met else "targets NOT met")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
