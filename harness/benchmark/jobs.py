"""The job plan of a run: what each device launches, in which order.

Timing launches are interleaved across variants (A B C A B C ...) so drift (heat, background
load) hits every variant alike; peak-memory and op-profiling launches come after, each on its
own launch because `--report_peak_memory_footprint` and op profiling perturb timings; the
accuracy jobs (real samples in, outputs out) come last.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product

# Job kinds and delegate choices are the keys of the command line's flag tables
# (harness.benchmark.command); re-exported for the planners that import them from here.
from harness.benchmark.command import DELEGATES, KINDS  # noqa: F401


@dataclass(frozen=True)
class Job:
    kind: str
    artifact_index: int
    trial: int
    delegate: str | None       # None: the tool's default (XNNPACK applied by the runtime)
    threads: int | None        # None: one per big core
    role: str | None = None    # confirm jobs: "base" or "cand" (the same artifact may be both)

    def key(self, device: str, server: str, artifact_sha256: str) -> str:
        """Identifies a job across processes, so `--resume` can tell what is already done.

        `device`: the device's stable identity (`device_identity`), so a run can be resumed
        after its lab restarted under new adb serials. Runs stored before had the adb serial
        here; `--resume` accepts those keys too."""
        parts = [server, device, artifact_sha256, self.kind, self.trial,
                 self.delegate or "default", self.threads or "auto"]
        return "|".join(str(v) for v in parts + ([self.role] if self.role else []))


# Serial numbers that several devices report alike (generic builds): no identity at all.
SHARED_SERIALS = {"", "unknown", "0123456789abcdef"}


def device_identity(props: dict, adb_serial: str) -> str:
    """A device's stable identity: its `ro.serialno` (a virtual device's configured serial,
    VIRT0001 ...), else the adb serial. The adb serial of a network or virtual device
    (127.0.0.1:PORT) changes whenever it reconnects on another port."""
    serial = str(props.get("ro.serialno") or props.get("ro.boot.serialno") or "").strip()
    return adb_serial if serial.lower() in SHARED_SERIALS else serial


def plan_jobs(n_artifacts: int, trials: int = 1, delegates: list[str | None] | None = None,
              threads: list[int | None] | None = None, peak_memory: bool = True,
              op_profiling: bool = False, accuracy: bool = False) -> list[Job]:
    """Timing launches first (interleaved), then the extra kinds; `accuracy`: one accuracy
    job per variant and delegate (its first thread count: the numbers it judges do not depend
    on how many threads compute them)."""
    delegates = delegates or [None]
    threads = threads or [None]
    combos = list(product(delegates, threads))
    jobs = [Job("timing", a, trial, d, t)
            for trial in range(trials) for d, t in combos for a in range(n_artifacts)]
    for kind, wanted in (("peak_memory", peak_memory), ("op_profile", op_profiling)):
        if wanted:
            jobs += [Job(kind, a, 0, d, t) for d, t in combos for a in range(n_artifacts)]
    if accuracy:
        jobs += [Job("accuracy", a, 0, d, threads[0]) for d in delegates for a in range(n_artifacts)]
    return jobs
