"""The job plan of a run: what each device launches, in which order.

Timing launches are interleaved across variants (A B C A B C ...) so drift (heat, background
load) hits every variant alike; peak-memory and op-profiling launches come after, each on its
own launch because `--report_peak_memory_footprint` and op profiling perturb timings.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import product

KINDS = ("timing", "peak_memory", "op_profile", "confirm")
DELEGATES = ("cpu", "xnnpack", "gpu", "nnapi")
# benchmark_model flags per delegate choice ("cpu" is the plain interpreter, without XNNPACK).
DELEGATE_FLAGS = {
    "cpu": ["--use_xnnpack=false"],
    "xnnpack": ["--use_xnnpack=true"],
    "gpu": ["--use_gpu=true"],
    "nnapi": ["--use_nnapi=true"],
}
KIND_FLAGS = {
    "timing": [],
    "peak_memory": ["--report_peak_memory_footprint=true"],
    "op_profile": ["--enable_op_profiling=true"],
    "confirm": [],  # a timing launch of `bench compare --confirm`
}


@dataclass(frozen=True)
class Job:
    kind: str
    artifact_index: int
    trial: int
    delegate: str | None       # None: the tool's default (XNNPACK applied by the runtime)
    threads: int | None        # None: one per big core
    role: str | None = None    # confirm jobs: "base" or "cand" (the same artifact may be both)

    def key(self, serial: str, server: str, artifact_sha256: str) -> str:
        """Identifies a job across processes, so `--resume` can tell what is already done."""
        parts = [server, serial, artifact_sha256, self.kind, self.trial,
                 self.delegate or "default", self.threads or "auto"]
        return "|".join(str(v) for v in parts + ([self.role] if self.role else []))


def plan_jobs(n_artifacts: int, trials: int = 1, delegates: list[str | None] | None = None,
              threads: list[int | None] | None = None, peak_memory: bool = True,
              op_profiling: bool = False) -> list[Job]:
    delegates = delegates or [None]
    threads = threads or [None]
    combos = list(product(delegates, threads))
    jobs = [Job("timing", a, trial, d, t)
            for trial in range(trials) for d, t in combos for a in range(n_artifacts)]
    for kind, wanted in (("peak_memory", peak_memory), ("op_profile", op_profiling)):
        if wanted:
            jobs += [Job(kind, a, 0, d, t) for d, t in combos for a in range(n_artifacts)]
    return jobs
