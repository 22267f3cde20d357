"""Push throughput of bench against the `adb push` command line, on one virtual device.

    python benchmarks/push_throughput.py [--size-mb 100] [--rounds 5] [--shared-cpus]

Pushes one file of random bytes to the same virtual device, alternately with bench's
`DeviceSession.push` and with `adb -s SERIAL push` (the adb bench runs, against the lab's adb
server), over interleaved rounds; which one goes first alternates by round, so neither always
meets a warm or a cold device. Each push is timed as a user sees it (the adb command's whole wall
time, bench's whole call). Prints every MB/s and the ratio of the medians bench / adb.
Target (issue 10): >= 0.9.

The lab and the file live in RAM (/dev/shm) when the host has it: the device writes every push
to its file system, and on a disk the figures would be the disk's writeback stalls (seconds,
whoever pushes), not the link's. `--work-dir` puts them elsewhere.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGET_RATIO = 0.9
MB = 1_000_000
REMOTE_PATH = "/data/local/tmp/push-throughput.bin"
WRITE_BLOCK_BYTES = 4 * 1024 * 1024
RAM_DIR = Path("/dev/shm")


def write_random_file(path: Path, size_bytes: int) -> None:
    with open(path, "wb") as out:
        left = size_bytes
        while left:
            block = os.urandom(min(WRITE_BLOCK_BYTES, left))
            out.write(block)
            left -= len(block)


def bench_push_s(session, local: Path) -> float:
    started = time.monotonic()
    session.push(local, REMOTE_PATH)
    return time.monotonic() - started


def adb_push_s(adb: str, port: int, serial: str, local: Path) -> float:
    started = time.monotonic()
    done = subprocess.run([adb, "-P", str(port), "-s", serial, "push", str(local), REMOTE_PATH],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    elapsed_s = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"adb push failed: {done.stdout}{done.stderr}")
    return elapsed_s


def measure(args, work: Path, size_bytes: int) -> dict[str, list[float]]:
    """MB/s of every push, by who pushed: {"bench": [...], "adb": [...]}."""
    from harness.targets.adb.session import DeviceSession
    from harness.targets.adb.adb_binary import adb_path
    from harness.targets.adb.virtual_lab import lab_down, lab_up

    local = work / "payload.bin"
    write_random_file(local, size_bytes)
    rates = {"bench": [], "adb": []}
    lab = lab_up(1, own_cpus=not args.shared_cpus)
    try:
        serial = lab.devices[0].serial
        session = DeviceSession(serial, lab.server)
        pushes = {"bench": lambda: bench_push_s(session, local),
                  "adb": lambda: adb_push_s(adb_path(), lab.adb_port, serial, local)}
        for round_index in range(args.rounds):
            order = ["bench", "adb"] if round_index % 2 == 0 else ["adb", "bench"]
            for name in order:
                rates[name].append(size_bytes / MB / pushes[name]())
            print(f"round {round_index + 1}: bench {rates['bench'][-1]:.1f} MB/s, "
                  f"adb {rates['adb'][-1]:.1f} MB/s", flush=True)
    finally:
        lab_down()
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=11,
                        help="Interleaved rounds (the median of a few swings by ±8 % on 2 cores).")
    parser.add_argument("--shared-cpus", action="store_true",
                        help="The device on all host cores (bench lab up --shared-cpus).")
    parser.add_argument("--work-dir", type=Path, default=RAM_DIR if RAM_DIR.is_dir() else None,
                        help="Where the lab and the file go (default: /dev/shm when present).")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-push-", dir=args.work_dir))
    os.environ["BENCH_STATE_DIR"] = str(work / "state")  # a lab of its own

    size_bytes = args.size_mb * MB
    try:
        rates = measure(args, work, size_bytes)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # in RAM: give it back
    bench_mbps, adb_mbps = statistics.median(rates["bench"]), statistics.median(rates["adb"])
    ratio = bench_mbps / adb_mbps
    print(f"median: bench {bench_mbps:.1f} MB/s, adb push {adb_mbps:.1f} MB/s "
          f"({args.size_mb} MB, {args.rounds} rounds)")
    print(f"push throughput ratio bench/adb: {ratio:.3f} (target >= {TARGET_RATIO})")
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
