"""`bench compare --confirm`: re-measure each REGRESSED key judged across runs, paired.

Two runs made on different nights also differ in everything that drifted in between (the
device's temperature, background load, the host's neighbours). A `bench run --baseline` pairs
by default (harness.benchmark.pairing), so its verdicts need no confirmation; `--confirm` is the
same pairing after the fact, for keys that were compared across runs (`bench compare` of two
earlier runs, `--cross-run`, a baseline artifact that was not at hand): each REGRESSED one is
launched again on its own device, the baseline artifact and the candidate artifact interleaved
(B C B C ...), and takes the verdict of those pairs (harness.regress.pairs). The launches are
stored with the candidate run (kind "confirm", role "base" or "cand"), each committed before the
next starts, like every other sample.
"""
from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness.benchmark.pairing import staged as stage
from harness.optimize.artifacts import Artifact, sha256_file
from harness.regress import DEFAULT_CONFIRM_TRIALS
from harness.regress.compare import (REGRESSED, CompareResult, KeyVerdict, SeriesKey,
                                     series_key)
from harness.regress.paired import MIN_PAIRS
from harness.regress.pairs import PAIRED
from harness.errors import UserError
from harness.executor import Executor, local_executor
from harness.benchmark.stop import stop_on_sigint
from harness.results.schema import Measurement, utc_now



@dataclass
class _Pair:
    """One REGRESSED key and the two artifacts to launch for it."""

    verdict: KeyVerdict
    base_sha: str
    cand_sha: str


@dataclass
class _DevicePlan:
    serial: str                # the device's stable identity, as in the key
    server_name: str
    adb_serial: str | None = None  # what adb called it in the candidate run
    pairs: list[_Pair] = field(default_factory=list)


def artifact_on_host(store, sha256: str, cache_dir: Path | None = None) -> Artifact:
    """The artifact with this content on this host (harness.benchmark.pairing), or a UserError
    saying where it was looked for."""
    from harness.benchmark.pairing import artifact_on_host as find
    from harness.paths import cache_dir as default_cache_dir

    found = find(store, sha256, cache_dir)
    if found is None:
        rows = store.artifacts([sha256])
        name = (rows[0].get("name") if rows else None) or sha256[:12]
        raise UserError(f"--confirm: artifact {name} (sha256 {sha256[:12]}) is not on this host "
                        f"any more (looked in the store's path and {cache_dir or default_cache_dir()}); "
                        "rebuild it with `bench run`, or compare without --confirm")
    return found


def _adb_serial(measurements: list[Measurement], key: SeriesKey) -> str | None:
    for m in reversed(measurements):
        if m.kind == "timing" and series_key(m) == key:
            return m.device_serial
    return None


def _find_target(targets: list, plan: _DevicePlan):
    """The plan's device among the listed ones: the one whose identity is the plan's, asking
    first the device at the candidate run's adb serial (after a lab restart that address may
    belong to another device, so it is asked too), then every other online device."""
    likely = [t for t in targets if t.serial in (plan.adb_serial, plan.serial)]
    others = [t for t in targets if t not in likely]
    return next((t for t in likely + others if t.identity() == plan.serial), None)


def _artifact_sha(measurements: list[Measurement], key: SeriesKey) -> str | None:
    for m in measurements:
        if m.kind == "timing" and m.status == "ok" and m.artifact_sha256 and series_key(m) == key:
            return m.artifact_sha256
    return None


def _threads(key: SeriesKey) -> int | None:
    return int(key.num_threads) if key.num_threads.isdigit() else None


def _delegate(key: SeriesKey) -> str | None:
    return None if key.delegate_choice == "default" else key.delegate_choice


def confirm_regressions(store, result: CompareResult, trials: int = DEFAULT_CONFIRM_TRIALS,
                        log: Callable[[str], None] = lambda _m: None,
                        cache_dir: Path | None = None,
                        executor: Executor | None = None) -> CompareResult:
    """Re-run every REGRESSED latency key of `result` interleaved with its baseline artifact, on
    its own device, and replace the key's verdict by the verdict of those launches. Keys that
    could not be re-run keep REGRESSED and say why. Returns `result`, updated."""
    check_confirm_trials(trials)
    regressed = [v for v in result.latency if v.verdict == REGRESSED]
    for v in regressed:
        if v.mode == PAIRED:
            v.confirmation = ("already paired: the baseline's artifact ran beside the candidate's "
                              "in this run; the verdict stands")
    regressed = [v for v in regressed if v.mode != PAIRED]
    if not regressed:
        return result
    base_ms, cand_ms = store.measurements(result.base_run), store.measurements(result.cand_run)
    plans: dict[tuple[str, str], _DevicePlan] = {}
    for v in regressed:
        base_sha, cand_sha = _artifact_sha(base_ms, v.key), _artifact_sha(cand_ms, v.key)
        if base_sha is None or cand_sha is None:
            v.confirmation = "not confirmed (no artifact recorded for this key); the verdict stands"
            continue
        plan = plans.setdefault((v.key.adb_server, v.key.device_serial),
                                _DevicePlan(v.key.device_serial, v.key.adb_server,
                                            _adb_serial(cand_ms, v.key)))
        plan.pairs.append(_Pair(v, base_sha, cand_sha))
    if not plans:
        return result
    shas = sorted({sha for p in plans.values() for pair in p.pairs
                   for sha in (pair.base_sha, pair.cand_sha)})
    artifacts = {sha: artifact_on_host(store, sha, cache_dir) for sha in shas}
    config = _confirm_config(store, result.cand_run)
    since = utc_now()  # launches of earlier confirmations of this run are not this one's
    with tempfile.TemporaryDirectory(prefix="bench-confirm-") as staging:
        # Both sides often have the same file name (same model and variant): on the device each
        # artifact goes under a name of its own.
        staged = {sha: stage(a, Path(staging)) for sha, a in artifacts.items()}
        stop = threading.Event()  # set by the first Ctrl-C, as in `bench run`
        with stop_on_sigint(stop, log):
            outcomes = (executor or local_executor()).map(
                lambda plan: _confirm_on_device(plan, staged, config, store, result, trials,
                                                log, stop),
                list(plans.values()), "confirm")
    if stop.is_set():  # the launches that finished are stored; half a confirmation is none
        raise KeyboardInterrupt
    for plan, problem in zip(plans.values(), outcomes):
        for pair in plan.pairs:
            if problem:
                pair.verdict.confirmation = f"not confirmed ({problem}); the verdict stands"
    _apply_confirmations(store, result, [p for plan in plans.values() for p in plan.pairs], since)
    return result


MIN_CONFIRM_TRIALS = MIN_PAIRS


def check_confirm_trials(trials: int) -> None:
    # The confirmation is a paired signed-rank test: with 7 pairs or fewer its smallest
    # one-sided p is 2**-7 > 0.01, so no confirmation could ever say REGRESSED.
    if trials < MIN_CONFIRM_TRIALS:
        raise UserError(f"--confirm-trials {trials}: give at least {MIN_CONFIRM_TRIALS}; with "
                        f"fewer pairs no signed-rank test reaches p <= 0.01")


def _confirm_config(store, cand_run: str):
    import json

    from harness.config import config_from_dict

    run = store.run(cand_run)
    config = config_from_dict(json.loads(run["config_json"] or "{}"))
    config.store_path = store.path
    config.peak_memory = config.op_profiling = False
    return config


def _confirm_on_device(plan: _DevicePlan, staged: dict[str, Artifact], config, store,
                       result: CompareResult, trials: int, log,
                       stop: threading.Event | None = None) -> str | None:
    """Launch the plan's pairs on its device; returns why it could not, or None."""
    from harness.targets.adb.discovery import known_servers, list_targets
    from harness.benchmark.runner import DeviceRunner
    from harness.benchmark.jobs import Job
    from harness.targets.adb.provider import AdbTarget

    servers = [s for s in known_servers(config.lab) if s.name == plan.server_name]
    listed, unreachable = list_targets(servers, config.lab) if servers else ([], {})
    target = _find_target([AdbTarget(t) for t in listed], plan)
    if target is None or target.listed_state != "device":
        where = "; ".join(unreachable.values()) if unreachable else (
            f"state {target.listed_state}" if target else
            f"not listed on adb server {plan.server_name}")
        return f"device {plan.serial} not available: {where}"
    shas = sorted({sha for pair in plan.pairs for sha in (pair.base_sha, pair.cand_sha)})
    index = {sha: i for i, sha in enumerate(shas)}
    jobs = [Job("confirm", index[sha], trial, _delegate(pair.verdict.key),
                _threads(pair.verdict.key), role)
            for trial in range(trials) for pair in plan.pairs
            for role, sha in (("base", pair.base_sha), ("cand", pair.cand_sha))]
    log(f"{plan.serial}: confirming {len(plan.pairs)} REGRESSED key(s) with {trials} interleaved "
        "trial(s) of base and candidate")
    runner = DeviceRunner(config, result.cand_run, [staged[sha] for sha in shas], jobs, store,
                          sha256_file, log, stop=stop)
    started = time.monotonic()
    runner.run(target)
    log(f"{plan.serial}: confirmation took {time.monotonic() - started:.1f} s")
    return None


def _apply_confirmations(store, result: CompareResult, pairs: list[_Pair], since: str) -> None:
    """Each confirmed key takes the verdict of its paired launches (trial by trial)."""
    from harness.regress.pairs import CONFIRMED, pair_groups, paired_key_verdict

    launches = [m for m in store.measurements(result.cand_run)
                if m.kind == "confirm" and (m.started_at or "") >= since]
    for pair in pairs:
        v = pair.verdict
        if v.confirmation:  # the device could not run it
            continue
        sides = pair_groups(
            launches, lambda m: m.role == "base" and m.artifact_sha256 == pair.base_sha,
            lambda m: m.role == "cand" and m.artifact_sha256 == pair.cand_sha).get(v.key)
        if sides is None:
            v.confirmation = ("not confirmed (no confirm launches under this key: the binary, "
                              "OS build or CPU mask may have changed); the verdict stands")
            continue
        again = paired_key_verdict(v.key, *sides, result.thresholds, CONFIRMED)
        first = f"{v.verdict}: {v.reason}"
        if again.verdict == REGRESSED:
            v.confirmation = f"confirmed by {again.pairs} interleaved pairs: {again.reason}"
        else:
            v.confirmation = (f"not confirmed by {again.pairs} interleaved pairs; the first "
                              f"comparison said {first}")
        # Either way the key now rests on the pairs: their statistics are the ones shown.
        for name in ("verdict", "reason", "test", "base", "cand", "more_trials", "mode",
                     "pairs", "mde_ratio", "sigma_log"):
            setattr(v, name, getattr(again, name))
