"""A nightly job end to end, with a real slowdown (issue 14, acceptances 2 and 3).

    python benchmarks/nightly_e2e.py [--nights 30] [--blocks 20] [--reference-trials 60]

Makes two .tflite files of the same name, `model.tflite`: one with `--blocks` identical conv
blocks, one with a block more (the same work again, about 1/blocks slower: ~5 % at 20). On a
fresh one-device virtual lab (real host-CPU timings, the device on a host core of its own):
1. the unchanged file is run once and tagged `release` (the nightly's baseline);
2. a long interleaved reference run of the slower file against it (`--reference-trials` pairs)
   measures the true ratio, by each per-launch statistic;
3. then the README's nightly recipe (read from README.md, so what runs here is exactly what the
   README says) runs `--nights` times, the slower and the unchanged file in turn as
   `model.tflite`; each night's verdict is read from its JUnit XML.
Printed: the true ratio, per night the file, verdict, pairs and seconds, and the counts: the
slower file REGRESSED in >= 90 % of its nights, the unchanged one in <= 1 % (targets).
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RECIPE_MARK = "<!-- nightly recipe: benchmarks/nightly_e2e.py runs the command below -->"
POWER_TARGET, FALSE_ALARM_TARGET = 0.9, 0.01


def readme_recipe(readme: Path = ROOT / "README.md") -> str:
    """The nightly command the README gives: the first `bench run` line after RECIPE_MARK."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    start = lines.index(RECIPE_MARK)
    return next(line.strip() for line in lines[start:] if line.strip().startswith("bench run "))


def build_models(blocks: int, out: Path) -> tuple[Path, Path]:
    """out/unchanged/model.tflite (`blocks` blocks) and out/slower/model.tflite (one more)."""
    import copy

    import numpy as np
    import torch
    from torch import nn

    from harness.optimize.convert import convert_to_tflite

    def net(n: int) -> nn.Module:
        torch.manual_seed(0)
        conv = nn.Conv2d(16, 16, 3, padding=1)
        layers = [nn.Conv2d(3, 16, 3, padding=1), nn.ReLU()]
        # Copies of one block (same weights, same work) n times: the slower file does one more.
        for _ in range(n):
            layers += [copy.deepcopy(conv), nn.ReLU()]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)]
        return nn.Sequential(*layers).eval()

    samples = np.random.default_rng(0).random((4, 3, 32, 32), dtype=np.float32)
    paths = []
    for name, n in (("unchanged", blocks), ("slower", blocks + 1)):
        path = out / name / "model.tflite"
        path.parent.mkdir(parents=True, exist_ok=True)
        convert_to_tflite(net(n), samples, path)
        paths.append(path)
    return paths[0], paths[1]


def bench(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


def latency_verdict(junit: Path) -> str:
    """The latency key's verdict in a night's JUnit XML (one device, one variant)."""
    for case in ET.parse(junit).getroot().iter("testcase"):
        if case.get("classname") == "bench.latency":
            return (case.findtext("system-out") or "?").split(":")[0]
    return "no latency verdict"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=30, help="Half slower, half unchanged.")
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--reference-trials", type=int, default=60)
    parser.add_argument("--work", type=Path, default=None, help="Work folder (default: a temp one).")
    args = parser.parse_args()

    recipe = readme_recipe()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-nightly-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, BENCH_STATE_DIR=str(work / "state"), BENCH_CACHE_DIR=str(work / "cache"),
               PYTHONPATH=str(ROOT))
    print(f"work: {work}\nrecipe (README.md): {recipe}", flush=True)
    unchanged, slower = build_models(args.blocks, work / "models")
    model = work / "model.tflite"

    def run(*argv: str) -> subprocess.CompletedProcess:
        done = bench(list(argv), work, env)
        if done.returncode not in (0, 1):
            print(done.stdout[-3000:], done.stderr[-3000:])
            raise SystemExit(f"bench {' '.join(argv)}: exit {done.returncode}")
        return done

    run("lab", "up", "--virtual", "1")
    try:
        shutil.copyfile(unchanged, model)
        first = run("run", "--devices", "all", "--model", "model.tflite", "--trials", "10")
        run_id = first.stdout.split("\nrun ")[1].split(":")[0]
        run("tag", run_id, "release")
        print(f"baseline: run {run_id} of the unchanged file, tagged release", flush=True)

        shutil.copyfile(slower, model)
        started = time.monotonic()
        reference = run("run", "--devices", "all", "--model", "model.tflite", "--baseline",
                        "tag:release", "--trials", str(args.reference_trials))
        ref_id = reference.stdout.split("\nrun ")[1].split(":")[0]
        print(f"reference: run {ref_id}, {args.reference_trials} interleaved pairs of the slower "
              f"and the unchanged file in {time.monotonic() - started:.0f} s", flush=True)
        print_true_ratio(work / "reports" / "bench.db", run_id, ref_id)

        counts = {"slower": [], "unchanged": []}
        for night in range(args.nights):
            name = "slower" if night % 2 == 0 else "unchanged"
            shutil.copyfile(slower if name == "slower" else unchanged, model)
            junit = work / "reports" / "junit.xml"
            junit.unlink(missing_ok=True)
            started = time.monotonic()
            done = run(*shlex.split(recipe)[1:])
            seconds = time.monotonic() - started
            verdict = latency_verdict(junit) if junit.exists() else "no JUnit XML"
            counts[name].append(verdict)
            pairs = next((line.split("--trials auto: ")[1] for line in done.stderr.splitlines()
                          if "trials: the smallest" in line), "")
            print(f"night {night + 1:>2}: {name:<9} -> {verdict:<9} exit {done.returncode}, "
                  f"{seconds:5.0f} s  {pairs}", flush=True)
    finally:
        run("lab", "down")

    slow, same = counts["slower"], counts["unchanged"]
    power = slow.count("REGRESSED") / max(1, len(slow))
    false_alarms = same.count("REGRESSED") / max(1, len(same))
    print(f"slower file: REGRESSED in {slow.count('REGRESSED')} of {len(slow)} nights "
          f"({100 * power:.0f} %, target >= {100 * POWER_TARGET:.0f} %); verdicts "
          + ", ".join(f"{v} {slow.count(v)}" for v in sorted(set(slow))))
    print(f"unchanged file: REGRESSED in {same.count('REGRESSED')} of {len(same)} nights "
          f"({100 * false_alarms:.0f} %, target <= {100 * FALSE_ALARM_TARGET:.0f} %); verdicts "
          + ", ".join(f"{v} {same.count(v)}" for v in sorted(set(same))))
    met = power >= POWER_TARGET and false_alarms <= FALSE_ALARM_TARGET
    print("targets met" if met else "targets NOT met")
    return 0 if met else 1


def print_true_ratio(store_path: Path, base_id: str, ref_id: str) -> None:
    """The reference run's paired ratio (Hodges-Lehmann, 95 % CI) by each statistic, and the
    pairs each statistic's noise needs for a 5 % slowdown."""
    from harness.regress.compare import Thresholds, compare
    from harness.regress.paired import pairs_for_power
    from harness.results.statistic import STATISTICS
    from harness.results.store import Store

    store = Store(store_path)
    try:
        for statistic in STATISTICS:
            [v] = compare(store, base_id, ref_id, Thresholds(statistic=statistic)).latency
            print(f"  true ratio by launch {statistic:>6}: {v.test.ratio:.4f} "
                  f"(95 % CI {v.test.ci_low:.4f}-{v.test.ci_high:.4f}, {v.pairs} pairs), "
                  f"pair noise {100 * v.sigma_log:.1f} %: {pairs_for_power(v.sigma_log, 1.05)} "
                  "pairs catch 5 % with power 0.9", flush=True)
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
