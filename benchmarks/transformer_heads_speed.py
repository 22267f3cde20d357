"""Attention-head pruning pays: a BERT-tiny-like classifier and a small ViT (random init),
25 % of heads pruned (and with the MLP narrowed by 30 %), parameters, MACs, parity and host
LiteRT latency of the fp32 .tflite, unpruned vs pruned, measured side by side in one run.

    python benchmarks/transformer_heads_speed.py [--rounds 7] [--runs 50] [--threads 1]

The variants are built by bench's own pipeline (models.transformer_examples; pruning by
torch-pruning's head grouping, conversion by litert-torch with its fp32 parity check). Latency:
every round times each model of a family once more (A B C A B C ...), so drift on the machine
hits all alike; a figure is the median over rounds of the per-round mean of `--runs` invokes on
this host's LiteRT interpreter (not a phone), fed a real sample of the model's own inputs.
Targets (issue 15): heads25 parameters and MACs below the baseline's, parity <= 1e-4 of the
output scale, and the pruned .tflite faster than the unpruned (ratio < 1).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.optimize.pipeline import Pipeline  # noqa: E402
from harness.optimize.variants import parse_variant  # noqa: E402
from harness.paths import cache_dir  # noqa: E402
from models.datasets import load_dataset  # noqa: E402
from models.registry import resolve_model  # noqa: E402
from benchmarks.host_timing import invoke_timer  # noqa: E402

FAMILIES = {
    "bert_tiny": "models.transformer_examples:bert_tiny",
    "vit_tiny": "models.transformer_examples:vit_tiny",
}
VARIANTS = ("baseline", "heads=0.25", "heads=0.25,mlp=0.3")
PARITY_TARGET = 1e-4


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    ok = True
    for family, model in FAMILIES.items():
        source = resolve_model(model)
        data = load_dataset(source, max_test=64, max_train=0)
        artifacts = Pipeline(source, data, cache_dir()).build_all([parse_variant(v) for v in VARIANTS])
        timers = [invoke_timer(a.path, data.x_test[:1], args.runs, args.threads) for a in artifacts]
        rounds = [[t() for t in timers] for _ in range(args.rounds)]
        latency = [statistics.median(r[i] for r in rounds) for i in range(len(artifacts))]
        print(f"\n{family} ({model}), host LiteRT, {args.threads} thread(s), median of {args.rounds} "
              f"interleaved rounds of {args.runs} invokes")
        print(f"{'variant':<16} {'params':>9} {'MACs':>12} {'heads/layer':>11} {'parity':>9} {'ms':>8} {'vs base':>8}")
        base = artifacts[0].metadata
        for artifact, ms in zip(artifacts, latency):
            meta = artifact.metadata
            params = meta.get("params", base.get("baseline_params", base.get("params")))
            macs = meta.get("macs", base.get("macs"))
            parity = meta["parity"]["relative_diff"]
            heads = "/".join(map(str, meta.get("heads_per_layer") or [])) or "-"
            print(f"{artifact.variant:<16} {params or '-':>9} {macs or '-':>12} {str(heads):>11} "
                  f"{parity:>9.2g} {ms:>8.3f} {ms / latency[0]:>7.3f}x")
            if artifact.variant != "baseline":
                ok &= params < base["params"] and macs < base["macs"] and ms < latency[0]
            ok &= parity <= PARITY_TARGET
    print("\ntargets met" if ok else "\ntargets NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
