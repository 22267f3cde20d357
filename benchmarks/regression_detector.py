"""How good is `bench compare`'s REGRESSED verdict on real noise? (issue 5, acceptance 2)

    python benchmarks/regression_detector.py [--model mobilenet_v3_small] [--trials 60] [--subset 15]
    python benchmarks/regression_detector.py --store reports/bench.db --run RUN_ID   # reuse samples

Records `--trials` launches of one artifact on one virtual device of a fresh lab (real host-CPU
timings; the device runs on host cores of its own, as `bench lab up` sets it up), then resamples
them: each comparison draws two disjoint random subsets of `--subset` launches (a run's trials).
- false alarm rate: A/A comparisons (both subsets unchanged) that come out REGRESSED;
- power at 5 % and 10 %: the candidate subset's samples scaled by 1.05 / 1.10, REGRESSED rate.
Every comparison goes through `harness.regress.compare.compare_samples`, the function `bench compare`
uses. Targets: false alarms <= 1 %, power >= 0.9 at 10 %. (At exactly the 5 % threshold the
median-ratio condition alone passes about half the time, so power at 5 % is expected near 0.5.)
Also printed, as context: the same figures for each per-launch statistic and other numbers of
trials, and "nightly" comparisons in recording order (a block of launches against the next
block), which keep the host's slow drift between runs that random subsets average out, before
and after a simulated `--confirm` on the launches that follow.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.regress.compare import STATISTICS, Thresholds, sample_value  # noqa: E402  (after sys.path)

FALSE_ALARM_TARGET = 0.01
# A made slowdown scales every per-launch figure a comparison may use (harness.regress.compare.STATISTICS).
SCALED_FIELDS = ("inference_avg_us", "inference_p50_us", "inference_min_us")
POWER_TARGET_10PCT = 0.9


def record_samples(trials: int, model: str, min_secs: float, work: Path) -> tuple[Path, str]:
    """Run one artifact `trials` times on a fresh one-device virtual lab; returns (store, run id)."""
    os.environ["BENCH_STATE_DIR"] = str(work / "state")  # a lab of its own
    from harness.config import BenchmarkSettings, RunConfig
    from harness.targets.adb.virtual_lab import lab_down, lab_up
    from harness.run import run_benchmarks

    lab_up(1)
    try:
        config = RunConfig(store_path=work / "bench.db", reports_dir=work / "reports",
                           model=model, variants=["baseline"], trials=trials, peak_memory=False,
                           benchmark=BenchmarkSettings(num_runs=20, min_secs=min_secs,
                                                       warmup_min_secs=0.02, max_secs=20))
        result = run_benchmarks(config, log=lambda m: print(m, flush=True))
    finally:
        lab_down()
    return config.store_path, result.run_id


def timing_samples(store_path: Path, run_id: str) -> list:
    from harness.results.store import Store

    store = Store(store_path)
    ok = [m for m in store.measurements(run_id)
          if m.kind == "timing" and m.status == "ok" and m.inference_avg_us is not None]
    store.close()
    return ok


def _compare(base_samples: list, cand_samples: list, slowdown: float, thresholds=None):
    from harness.regress.compare import compare_samples

    base = [replace(m, run_id="base") for m in base_samples]
    cand = [replace(m, run_id="cand", **{name: getattr(m, name) * slowdown
                                         for name in SCALED_FIELDS if getattr(m, name) is not None})
            for m in cand_samples]
    return [v.verdict for v in compare_samples("base", "cand", base, cand, thresholds).latency]


def verdict_rates(samples: list, subset: int, comparisons: int, slowdown: float,
                  rng: np.random.Generator, thresholds=None) -> Counter:
    """Verdicts of `comparisons` resampled base/candidate pairs, the candidate scaled by `slowdown`."""
    verdicts: Counter = Counter()
    for _ in range(comparisons):
        picks = rng.permutation(len(samples))
        verdicts.update(_compare([samples[i] for i in picks[:subset]],
                                 [samples[i] for i in picks[subset:2 * subset]],
                                 slowdown, thresholds))
    return verdicts


def nightly_rates(samples: list, subset: int, confirm_trials: int, slowdown: float,
                  thresholds=None) -> tuple[Counter, Counter]:
    """A nightly job in recording order: a base block of `subset` launches, the next block as the
    candidate (scaled by `slowdown`); a REGRESSED key is then confirmed on the launches that
    follow, alternately base and candidate (as `--confirm` interleaves them). Returns the
    verdicts before and after confirmation."""
    before, after = Counter(), Counter()
    for start in range(len(samples) - 2 * subset - 2 * confirm_trials + 1):
        first = _compare(samples[start:start + subset],
                         samples[start + subset:start + 2 * subset], slowdown, thresholds)
        before.update(first)
        if first != ["REGRESSED"]:
            after.update(first)
            continue
        follow = samples[start + 2 * subset:start + 2 * subset + 2 * confirm_trials]
        after.update(_compare(follow[0::2], follow[1::2], slowdown, thresholds))
    return before, after


def _counts(verdicts: Counter) -> str:
    return ", ".join(f"{v} {n}" for v, n in sorted(verdicts.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--model", default="mobilenet_v3_small",
                        help="Built-in model to record (a ~1 ms model; sub-0.1 ms ones are mostly noise).")
    parser.add_argument("--min-secs", type=float, default=0.5, help="benchmark_model --min_secs.")
    parser.add_argument("--subset", type=int, default=15,
                        help="Trials per resampled run (a nightly job's --trials).")
    parser.add_argument("--comparisons", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--confirm-trials", type=int, default=10,
                        help="Launches per side of a simulated --confirm.")
    parser.add_argument("--statistic", default=None, choices=sorted(STATISTICS),
                        help="Per-launch figure compared (default: bench compare's).")
    parser.add_argument("--store", type=Path, default=None, help="Reuse a recorded run instead.")
    parser.add_argument("--run", default=None, help="Run id in --store.")
    args = parser.parse_args()

    if args.store:
        store_path, run_id = args.store, args.run
    else:
        store_path, run_id = record_samples(args.trials, args.model, args.min_secs,
                                            Path(tempfile.mkdtemp(prefix="bench-detector-")))
    samples = sorted(timing_samples(store_path, run_id), key=lambda m: m.started_at or "")
    keys = {(m.device_serial, m.variant, m.delegate_choice, m.num_threads) for m in samples}
    if len(keys) != 1 or len(samples) < 2 * args.subset:
        print(f"need >= {2 * args.subset} ok timing samples of one key; got {len(samples)} "
              f"over {len(keys)} key(s)")
        return 2
    values = np.array([m.inference_avg_us for m in samples])
    first = samples[0]
    host_cpus = json.loads(first.device_props_json or "{}").get("bench.virtual.host_cpus", "?")
    print(f"recorded: run {run_id}, {len(values)} launches of {first.model_name}:{first.variant} "
          f"on {first.device_serial} (host cores {host_cpus}, {first.num_threads} thread(s)), "
          f"median {np.median(values):.1f} us, CV {100 * values.std(ddof=1) / values.mean():.2f} %, "
          f"max/min {values.max() / values.min():.3f}")

    thresholds = Thresholds(**({"statistic": args.statistic} if args.statistic else {}))
    print(f"samples: per-launch {thresholds.statistic}")
    for statistic in STATISTICS:
        x = np.array([sample_value(m, statistic) for m in samples])
        print(f"  per-launch {statistic:>6}: CV {100 * x.std(ddof=1) / x.mean():5.2f} %, "
              f"max/min {x.max() / x.min():.3f}")
    figures = {}
    for name, slowdown in (("A/A", 1.0), ("+5 %", 1.05), ("+10 %", 1.10)):
        verdicts = verdict_rates(samples, args.subset, args.comparisons, slowdown,
                                 np.random.default_rng(args.seed), thresholds)
        figures[name] = verdicts["REGRESSED"] / args.comparisons
        print(f"{name:>6}: {args.comparisons} comparisons of {args.subset} vs {args.subset} -> "
              + _counts(verdicts))

    print("context: REGRESSED rate by per-launch statistic and trials per run (same recording)")
    print("  statistic  trials  A/A false alarms  power +5 %  power +10 %")
    for statistic in STATISTICS:
        for subset in sorted({5, 10, 15, 20, args.subset}):
            if 2 * subset > len(samples):
                continue
            t = replace(thresholds, statistic=statistic)
            rates = [verdict_rates(samples, subset, args.comparisons, slowdown,
                                   np.random.default_rng(args.seed), t)["REGRESSED"]
                     / args.comparisons for slowdown in (1.0, 1.05, 1.10)]
            print(f"  {statistic:>9}  {subset:>6}  {100 * rates[0]:>14.1f} %  {rates[1]:>10.2f}"
                  f"  {rates[2]:>11.2f}")
    for name, slowdown in (("A/A", 1.0), ("+10 %", 1.10)):
        before, after = nightly_rates(samples, args.subset, args.confirm_trials, slowdown,
                                      thresholds)
        n = sum(before.values())
        if n:
            print(f"context: nightly {name} in recording order ({n} runs of {args.subset} after "
                  f"{args.subset}, --confirm on the next {2 * args.confirm_trials} launches): "
                  f"REGRESSED {before['REGRESSED']}/{n} before --confirm, "
                  f"{after['REGRESSED']}/{n} after")

    fa, p5, p10 = figures["A/A"], figures["+5 %"], figures["+10 %"]
    print(f"false alarm rate: {100 * fa:.1f} % (target <= {100 * FALSE_ALARM_TARGET:.0f} %)")
    print(f"power at 5 % slowdown: {p5:.2f}")
    print(f"power at 10 % slowdown: {p10:.2f} (target >= {POWER_TARGET_10PCT})")
    met = fa <= FALSE_ALARM_TARGET and p10 >= POWER_TARGET_10PCT
    print("targets met" if met else "targets NOT met")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
