"""ResNet-50, 35 % structured pruning (round_to 8): parameters, size and host LiteRT latency,
baseline vs pruned vs pruned int8, measured side by side in one run.

    python benchmarks/resnet50_prune_speed.py [--rounds 5] [--runs 10] [--threads 2]

Latency: each round times every model once more (A B C A B C ...), so drift on the machine hits
all of them alike; each figure is the median over rounds of the per-round mean of `--runs`
invocations, on the LiteRT interpreter of this host (not a phone).
Targets (issue 3): parameters drop >= 50 %, pruned >= 1.8x faster than baseline, int8 of the
pruned model >= 8x smaller than the baseline fp32 file.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.optimize.pipeline import Pipeline  # noqa: E402
from harness.paths import cache_dir  # noqa: E402
from harness.optimize.variants import parse_variant  # noqa: E402
from models.datasets import load_dataset  # noqa: E402
from models.registry import resolve_model  # noqa: E402
from benchmarks.host_timing import invoke_timer  # noqa: E402

VARIANTS = ("baseline", "prune=0.35", "prune=0.35,quant=int8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    source = resolve_model("resnet50")
    data = load_dataset(source, max_test=16, max_train=32)
    pipeline = Pipeline(source, data, cache_dir(), log=lambda m: print(f"  {m}", file=sys.stderr))
    artifacts = [pipeline.build(parse_variant(v)) for v in VARIANTS]

    timers = [invoke_timer(a.path, data.x_test[:1], args.runs, args.threads) for a in artifacts]
    samples: list[list[float]] = [[] for _ in artifacts]
    for _ in range(args.rounds):
        for timer, store in zip(timers, samples):  # interleaved: A B C A B C ...
            store.append(timer())
    medians = [statistics.median(s) for s in samples]

    base, pruned, pruned_int8 = artifacts
    params_drop = 1 - pruned.metadata["params"] / base.metadata["params"]
    speedup = medians[0] / medians[1]
    size_ratio = base.size_bytes / pruned_int8.size_bytes
    print(f"{'variant':<22}{'params':>12}{'MACs':>16}{'tflite bytes':>14}{'median ms':>11}{'spread ms':>12}")
    for a, s, med in zip(artifacts, samples, medians):
        print(f"{a.variant:<22}{a.metadata['params']:>12,}{a.metadata['macs']:>16,}{a.size_bytes:>14,}"
              f"{med:>11.2f}{max(s) - min(s):>12.2f}")
    print(f"parameters drop: {params_drop:.1%} (target >= 50%)")
    print(f"speed-up pruned vs baseline (host LiteRT, {args.threads} threads): {speedup:.2f}x (target >= 1.8x)")
    print(f"size ratio baseline fp32 / pruned int8: {size_ratio:.2f}x (target >= 8x)")
    ok = params_drop >= 0.5 and speedup >= 1.8 and size_ratio >= 8
    print("targets met" if ok else "TARGETS NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
