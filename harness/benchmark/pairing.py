"""Paired A/B launches: the baseline run's artifacts launched in the same session as the
candidate's, interleaved on each device, so that drift between nights (and within a night)
hits both sides of every pair alike (harness.regress.pairs judges them).

`bench run --baseline REF` pairs by default: for each variant of this run, the artifact the
baseline run measured for the same model and variant is looked up on this host (where the store
says it was built, else the artifact cache by content) and launched as kind "paired", role
"base", next to each of the candidate's timing launches of the same trial, delegate and thread
count, in a seeded random order within each pair (B C or C B: neither side always goes first).
A variant whose baseline artifact is not at hand is compared across runs, and said so.

The binary is this run's for both sides: what a pair compares is the model files. (A new binary
changes the key itself, as a new OS build does, and such keys are compared across runs.)
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.benchmark.jobs import Job
from harness.optimize.artifacts import Artifact, sha256_file

PAIRED_KIND = "paired"   # the baseline side of a pair in a candidate run
BASE_ROLE = "base"


def artifact_on_host(store, sha256: str, cache_dir: Path | None = None) -> Artifact | None:
    """The artifact file with this content: where the store says it was built, else found in
    the artifact cache by its metadata; None when neither has it. A file that changed since is
    not it."""
    from harness.optimize.artifacts import METADATA_FILENAME, load_artifact
    from harness.paths import cache_dir as default_cache_dir

    rows = store.artifacts([sha256])
    row = rows[0] if rows else {}
    name = row.get("name") or sha256[:12]
    candidates = [Path(row["path"])] if row.get("path") else []
    cache = Path(cache_dir or default_cache_dir())
    if cache.is_dir():
        for meta in cache.glob(f"*/{METADATA_FILENAME}"):
            try:
                found = load_artifact(meta.parent)
            except (OSError, ValueError, KeyError):
                continue
            if found.sha256 == sha256:
                candidates.append(found.path)
    for path in candidates:
        if path.is_file() and sha256_file(path) == sha256:
            return Artifact(name=name, model_name=row.get("model_name") or "?",
                            variant=row.get("variant") or "?", path=path, sha256=sha256,
                            size_bytes=path.stat().st_size, metadata=row.get("metadata") or {})
    return None


def staged(artifact: Artifact, staging: Path) -> Artifact:
    """The artifact under a name of its own in `staging` (a link): both sides of a pair often
    have the same file name (same model and variant), and on the device each needs its own."""
    link = Path(staging) / f"{artifact.sha256[:12]}-{artifact.path.name}"
    if not link.exists():
        os.symlink(artifact.path.resolve(), link)
    return replace(artifact, path=link)


@dataclass
class PairedBaseline:
    """What a candidate run launches of its baseline run."""

    run_id: str
    artifacts: list[Artifact] = field(default_factory=list)   # baseline artifacts, staged
    partner: dict[int, int] = field(default_factory=dict)     # candidate index -> baseline index
    not_paired: dict[str, str] = field(default_factory=dict)  # variant -> why (cross-run)


def timed_artifact_shas(measurements) -> dict[tuple[str, str], str]:
    """(model_name, variant) -> the artifact sha256 a run's ok timing launches timed for it."""
    found: dict[tuple[str, str], str] = {}
    for m in measurements:
        if m.kind == "timing" and m.status == "ok" and m.artifact_sha256:
            found.setdefault((m.model_name or "?", m.variant), m.artifact_sha256)
    return found


def plan_paired_baseline(store, base_run: str, candidates: list[Artifact], staging: Path,
                         cache_dir: Path | None = None) -> PairedBaseline:
    """The baseline artifacts to pair with `candidates` (indices into the runner's artifact
    list, which is `candidates + plan.artifacts`)."""
    plan = PairedBaseline(base_run)
    shas = timed_artifact_shas(store.measurements(base_run))
    by_sha: dict[str, int] = {}
    for index, cand in enumerate(candidates):
        sha = shas.get((cand.model_name, cand.variant))
        if sha is None:
            plan.not_paired[cand.variant] = f"baseline run {base_run} did not time this variant"
            continue
        if sha not in by_sha:
            found = artifact_on_host(store, sha, cache_dir)
            if found is None:
                plan.not_paired[cand.variant] = (
                    f"its baseline artifact (sha256 {sha[:12]}) is not on this host any more")
                continue
            by_sha[sha] = len(candidates) + len(plan.artifacts)
            plan.artifacts.append(staged(found, staging))
        plan.partner[index] = by_sha[sha]
    return plan


def interleave_pairs(jobs: list[Job], partner: dict[int, int], seed: int) -> list[Job]:
    """Each timing job of a paired candidate gets its baseline launch beside it (same trial,
    delegate and threads), before or after it by a seeded coin: the order is the same when a run
    is resumed, and an order effect (the second launch of two running warmer) cancels."""
    coin = random.Random(f"paired-{seed}")
    out: list[Job] = []
    for job in jobs:
        if job.kind != "timing" or job.artifact_index not in partner or job.role:
            out.append(job)
            continue
        base = Job(PAIRED_KIND, partner[job.artifact_index], job.trial, job.delegate,
                   job.threads, BASE_ROLE)
        out += [base, job] if coin.random() < 0.5 else [job, base]
    return out
