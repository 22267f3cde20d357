"""Orchestration overhead of `bench run` on a virtual lab of 4 devices.

    python benchmarks/orchestration_overhead.py [--devices 4] [--trials 5] [--min-secs 2]
                                                [--cluster]

Measures, in one run: the wall time of `run_benchmarks` (device selection, push checks, hygiene
and telemetry reads, launches, parsing, storing, report) and, per device, the sum of its
benchmark_model launch times. Prints wall / slowest device's sum. Target (issues 4, 10): <= 1.10.
The model is built (and cached) before the timed run, so the ratio is about orchestration.

With --cluster it then does the same over a Ray cluster of two lab hosts on this machine (each
a raylet with its own adb server and half the devices, joined as `bench lab join` does; in a
network namespace with only loopback, as the tests run it; needs root) and prints both ratios
side by side. Target over the cluster (issue 11): <= 1.15.

It also prints where the time went: bench's steps are wrapped here (not in bench) with timers
that charge each call's own time to one category (a call inside another counts for the inner
one), per thread: the main thread, and each device's thread. A device thread's "other" is its
time in none of the categories; the main thread's "devices" is its wait for the device threads.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


TARGET_RATIO = 1.10
CLUSTER_TARGET_RATIO = 1.15
MAIN = "main"
BACKGROUND = "background"


class Spans:
    """Seconds per (thread, category), each call charged its own time only (its nested timed
    calls are charged to theirs). Two monotonic reads a call: no cost worth counting."""

    def __init__(self):
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self._local = threading.local()

    def wrap(self, owner, name: str, category: str | Callable[..., str | None]) -> None:
        """Time `owner.name`; `category` may be a function of the call's arguments that
        returns None for a call left to whatever category encloses it."""
        original = getattr(owner, name)
        spans = self

        def timed(*args, **kwargs):
            chosen = category(*args, **kwargs) if callable(category) else category
            if chosen is None:
                return original(*args, **kwargs)
            stack = spans._stack()
            stack.append(0.0)  # the time of nested timed calls
            started = time.monotonic()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed_s = time.monotonic() - started
                nested_s = stack.pop()
                spans.seconds[(_thread_column(), chosen)] += elapsed_s - nested_s
                if stack:
                    stack[-1] += elapsed_s

        setattr(owner, name, timed)

    def _stack(self) -> list[float]:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack


def _thread_column() -> str:
    """main, device-N (harness.executor.ThreadExecutor names them), or background (the run's
    heartbeat: its store writes overlap the rest)."""
    thread = threading.current_thread()
    if thread is threading.main_thread():
        return MAIN
    return thread.name if thread.name.startswith("device-") else BACKGROUND


def _launch_or_none(_session, command: str = "", *_args, **kwargs) -> str | None:
    """A benchmark_model launch is the shell command with a --graph; other commands belong
    to the step that sent them."""
    return "launches" if "--graph=" in kwargs.get("command", command) else None


def instrument(spans: Spans) -> None:
    """Bench's steps by category (each import names the module the caller looks it up in)."""
    import harness.executor as executor
    import harness.targets.hygiene as hygiene
    import harness.targets.telemetry as telemetry
    import harness.benchmark.runner as device_runner
    import harness.report as report
    import harness.run as run
    from harness.targets.adb.session import DeviceSession
    from harness.targets.adb.provider import AdbTarget
    from harness.results.store import Store

    spans.wrap(DeviceSession, "shell", _launch_or_none)
    for name in ("files_to_send", "send_files"):
        spans.wrap(AdbTarget, name, "push/sha")
    for name in ("wait_until_ready", "check_storage"):
        spans.wrap(hygiene, name, "hygiene")
    for name in ("__enter__", "__exit__"):  # fixed performance mode, on and back off
        spans.wrap(device_runner._performance_mode, name, "hygiene")
    for module in (telemetry, hygiene):  # hygiene reads through its own reference
        spans.wrap(module, "read_telemetry", "telemetry")
    spans.wrap(telemetry, "cpu_topology", "telemetry")
    for name in ("add_measurement", "record_device", "record_artifact", "start_run",
                 "finish_run", "measurements", "done_job_keys", "heartbeat", "__init__"):
        spans.wrap(Store, name, "store")
    spans.wrap(report, "write_report", "report")
    spans.wrap(run, "build_run_artifacts", "build")
    spans.wrap(run, "device_provider", "setup")
    spans.wrap(run, "adb_provenance", "setup")
    spans.wrap(executor.ThreadExecutor, "map", "devices")
    for name in ("_lock_device", "_read_device_id", "_prepare"):
        spans.wrap(device_runner.DeviceRunner, name, "setup")
    spans.wrap(device_runner.DeviceRunner, "run", "other")
    spans.wrap(run, "run_benchmarks", "other")


def print_breakdown(spans: Spans) -> None:
    devices = sorted({who for who, _c in spans.seconds if who not in (MAIN, BACKGROUND)})
    threads = [MAIN] + devices + [BACKGROUND]
    categories = ["launches", "push/sha", "hygiene", "telemetry", "store", "setup", "build",
                  "report", "devices", "other"]
    print("time per category (s), summed over the run, by thread:")
    print(f"{'':>10}" + "".join(f"{who:>11}" for who in threads))
    for category in categories:
        row = [spans.seconds.get((who, category), 0.0) for who in threads]
        if any(row):
            print(f"{category:>10}" + "".join(f"{value:11.3f}" for value in row))
    totals = [sum(v for (w, _c), v in spans.seconds.items() if w == who) for who in threads]
    print(f"{'total':>10}" + "".join(f"{value:11.3f}" for value in totals))


def print_overhead(spans: Spans, wall_s: float, slowest_launches_s: float) -> None:
    """The run's time beyond the slowest device's launches, by where it was spent."""
    report_s = spans.seconds.get((MAIN, "report"), 0.0)
    devices_s = spans.seconds.get((MAIN, "devices"), 0.0)
    overhead_s = wall_s - slowest_launches_s
    beyond_s = devices_s - slowest_launches_s
    print(f"overhead {overhead_s:.2f} s: report {report_s:.2f} s, device threads beyond the "
          f"slowest device's launches {beyond_s:.2f} s, main thread's rest "
          f"{overhead_s - report_s - beyond_s:.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--min-secs", type=float, default=2.0)
    parser.add_argument("--shared-cpus", action="store_true",
                        help="Every device on all host cores (bench lab up --shared-cpus).")
    parser.add_argument("--cluster", action="store_true",
                        help="Also over a 2-host Ray cluster on this machine, side by side.")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    os.environ["BENCH_STATE_DIR"] = str(work / "state")  # a lab of its own
    if args.cluster:
        from tests.ray_cluster import can_make_network_namespace  # sets RAY_ENV before Ray

        why_not = can_make_network_namespace()
        if why_not:
            print(f"--cluster: {why_not}")
            return 2
    from harness.config import BenchmarkSettings, RunConfig
    from harness.targets.adb.virtual_lab import lab_down, lab_up
    import harness.run  # its run_benchmarks is looked up after instrument() wrapped it

    settings = BenchmarkSettings(num_runs=5, min_secs=args.min_secs, warmup_min_secs=0.2,
                                 max_secs=60)

    def config(trials: int, cluster: str | None = None) -> RunConfig:
        # One variant, named: the default set is the model's several variants.
        return RunConfig(store_path=work / "bench.db", reports_dir=work / "reports",
                         variants=["baseline"], trials=trials, peak_memory=False,
                         benchmark=settings, cluster=cluster)

    lab_up(args.devices, own_cpus=not args.shared_cpus)
    try:
        harness.run.run_benchmarks(config(1))  # warm: model built and cached, files pushed
        spans = Spans()
        instrument(spans)
        started = time.monotonic()
        result = harness.run.run_benchmarks(config(args.trials))
        wall = time.monotonic() - started
    finally:
        lab_down()
    slowest = _slowest_launches_s(result)
    if slowest is None:
        return 2
    print_breakdown(spans)
    print_overhead(spans, wall, slowest)
    ratio = wall / slowest
    print(f"bench run wall time {wall:.2f} s; slowest device's launches {slowest:.2f} s")
    print(f"orchestration ratio: {ratio:.3f} (target <= {TARGET_RATIO:.2f})")
    ok = ratio <= TARGET_RATIO
    if args.cluster:
        cluster_ratio = _cluster_ratio(args, work, config, lab_up, lab_down)
        if cluster_ratio is None:
            return 2
        print(f"\nside by side: one host {ratio:.3f}, cluster of 2 hosts {cluster_ratio:.3f} "
              f"(targets <= {TARGET_RATIO:.2f} and <= {CLUSTER_TARGET_RATIO:.2f})")
        ok = ok and cluster_ratio <= CLUSTER_TARGET_RATIO
    return 0 if ok else 1


def _slowest_launches_s(result) -> float | None:
    if result.exit_code != 0:
        print("run failed:", [m.error for m in result.measurements if m.status != "ok"])
        return None
    per_device = defaultdict(float)
    for m in result.measurements:
        per_device[m.device_id or m.device_serial] += m.launch_seconds or 0.0
    for device, seconds in sorted(per_device.items()):
        print(f"{device}: benchmark_model launches {seconds:.2f} s")
    return max(per_device.values())


def _cluster_ratio(args, work: Path, config, lab_up, lab_down) -> float | None:
    """The same timed run over two lab hosts of a Ray cluster on this machine."""
    import harness.run
    from device_agents.host_agent.join import join_lab
    from tests.ray_cluster import NODE_ARGS, loopback_only_network, ray_head
    from tests.virtual_lab_fixtures import free_port

    hosts = {"hosta": "LABA", "hostb": "LABB"}
    per_host = max(1, args.devices // len(hosts))
    with loopback_only_network(), ray_head(free_port()) as cluster:
        try:
            for host, prefix in hosts.items():
                lab_up(per_host, work / host, own_cpus=not args.shared_cpus,
                       serial_prefix=prefix)
                join_lab(cluster.address, host, [_lab_server(work / host)], NODE_ARGS,
                         staging_dir=work / host / "shipped")
            harness.run.run_benchmarks(config(1, cluster.address))  # warm: files shipped
            started = time.monotonic()
            result = harness.run.run_benchmarks(config(args.trials, cluster.address))
            wall = time.monotonic() - started
        finally:
            for host in hosts:
                lab_down(work / host)
    print(f"\ncluster of {len(hosts)} hosts, {per_host} device(s) each:")
    slowest = _slowest_launches_s(result)
    if slowest is None:
        return None
    ratio = wall / slowest
    print(f"bench run wall time {wall:.2f} s; slowest device's launches {slowest:.2f} s")
    print(f"orchestration ratio over the cluster: {ratio:.3f} (target <= "
          f"{CLUSTER_TARGET_RATIO:.2f})")
    return ratio


def _lab_server(base: Path):
    from harness.targets.adb.virtual_lab import LabState

    return LabState.load(base).server


if __name__ == "__main__":
    sys.exit(main())
