"""Programs a test registers on a virtual device's shell context to exercise the exec plumbing
(streams, signals, pinning, faults). A device only ever runs registered programs of bench's own
code on the host; these stand in for the shipped benchmark_model where a test needs a program
that behaves in one particular way. Each is called with argv = [device path, args...]."""
from __future__ import annotations

import os
import signal
import sys
import time


def show(argv: list[str]) -> int:
    print(" ".join(argv[1:]))
    print(os.environ["BENCH_DEVICE_ROOT"])
    print(os.getcwd())
    print(os.environ.get("EXTRA"), os.environ.get("LD_PRELOAD"))
    print(sys.stdin.read().upper())
    sys.stderr.write("warn\n")
    return 3


def stream(argv: list[str]) -> int:
    print("ready", flush=True)
    while not os.path.exists(argv[1]):
        time.sleep(0.01)
    print("done")
    return 0


def affinity(_argv: list[str]) -> int:
    print(sorted(os.sched_getaffinity(0)))
    return 0


def segv(_argv: list[str]) -> int:
    os.kill(os.getpid(), signal.SIGSEGV)
    return 0


def abort(_argv: list[str]) -> int:
    os.abort()


def fine(_argv: list[str]) -> int:
    print("fine")
    return 0


def wait_forever(_argv: list[str]) -> int:
    print("started", flush=True)
    while True:
        time.sleep(0.05)


def wait_for_file(argv: list[str]) -> int:
    while not os.path.exists(argv[1]):
        time.sleep(0.01)
    return 0
