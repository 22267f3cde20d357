"""Orchestration overhead of `bench run` on a virtual lab of 4 devices.

    python benchmarks/orchestration_overhead.py [--devices 4] [--trials 5] [--min-secs 2]

Measures, in one run: the wall time of `run_benchmarks` (device selection, push checks, hygiene
and telemetry reads, launches, parsing, storing, report) and, per device, the sum of its
benchmark_model launch times. Prints wall / slowest device's sum. Target (issue 4): <= 1.10.
The model is built (and cached) before the timed run, so the ratio is about orchestration.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--min-secs", type=float, default=2.0)
    parser.add_argument("--shared-cpus", action="store_true",
                        help="Every device on all host cores (bench lab up --shared-cpus).")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    os.environ["BENCH_STATE_DIR"] = str(work / "state")  # a lab of its own
    from harness.config import BenchmarkSettings, RunConfig
    from harness.lab.virtual_lab import lab_down, lab_up
    from harness.run import run_benchmarks

    lab_up(args.devices, own_cpus=not args.shared_cpus)
    try:
        settings = BenchmarkSettings(num_runs=5, min_secs=args.min_secs, warmup_min_secs=0.2,
                                     max_secs=60)

        def config(trials: int) -> RunConfig:
            return RunConfig(store_path=work / "bench.db", reports_dir=work / "reports",
                             trials=trials, peak_memory=False, benchmark=settings)

        run_benchmarks(config(1))  # warm: model built and cached, files pushed
        started = time.monotonic()
        result = run_benchmarks(config(args.trials))
        wall = time.monotonic() - started
    finally:
        lab_down()
    if result.exit_code != 0:
        print("run failed:", [m.error for m in result.measurements if m.status != "ok"])
        return 2
    per_device = defaultdict(float)
    for m in result.measurements:
        per_device[m.device_serial] += m.launch_seconds or 0.0
    slowest = max(per_device.values())
    for serial, seconds in sorted(per_device.items()):
        print(f"{serial}: benchmark_model launches {seconds:.2f} s")
    ratio = wall / slowest
    print(f"bench run wall time {wall:.2f} s; slowest device's launches {slowest:.2f} s")
    print(f"orchestration ratio: {ratio:.3f} (target <= 1.10)")
    return 0 if ratio <= 1.10 else 1


if __name__ == "__main__":
    sys.exit(main())
