"""Trials sized by noise (`bench run --trials auto [--time-budget S]`).

Per key (model, variant, device, delegate, threads) bench reads the launch-to-launch noise it saw
in the key's last runs: the pair log ratios of paired runs (baseline beside candidate, exactly
what the next verdict will rest on), else those of consecutive trials of the key in a plain run
(a little noisier, as a round of the other variants lies between them: it errs towards more
pairs). From that noise, `pairs_for_power` gives the pairs that catch a slowdown of the
threshold with power 0.9; the run takes the most any of its keys needs (the noisiest device sets
the count, as one plan serves all devices), cut to what the time budget allows, and says the
smallest change it can see at that count (minimum detectable effect).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from harness.regress.paired import (MIN_PAIRS, hodges_lehmann, minimum_detectable_ratio,
                                    pairs_for_power, robust_sigma)
from harness.results.statistic import DEFAULT_STATISTIC, launch_value_us

RUNS_LOOKED_AT = 10     # a key's last runs whose noise counts (older ones knew other conditions)
FIRST_RUN_PAIRS = 20    # no noise seen yet for a key: enough for CVs up to ~3 % (paired)
# The fewest pairs `--trials auto` plans, however quiet the key: with 14 pairs one pair that
# goes the wrong way by the most of all (a launch a background task slowed) still leaves the
# signed-rank p of a real slowdown at 0.007 (110 of the 2**14 sign patterns), under 0.01; at
# the bare MIN_PAIRS (8) it leaves 0.09, and the night says UNKNOWN (benchmarks/nightly_e2e.py
# met that once in 20 nights).
AUTO_MIN_PAIRS = 14


@dataclass(frozen=True, order=True)
class NoiseKey:
    model_name: str
    variant: str
    device: str
    delegate: str
    threads: str


def noise_key(m) -> NoiseKey:
    return NoiseKey(m.model_name or "?", m.variant, m.device_id or m.device_serial,
                    m.delegate_choice or "default",
                    str(m.num_threads) if m.num_threads is not None else "default")


@dataclass
class KeyNoise:
    key: NoiseKey
    log_ratios: list[float] = field(default_factory=list)
    launch_s: list[float] = field(default_factory=list)   # seconds each timing launch took
    runs: int = 0

    @property
    def sigma_log(self) -> float:
        return robust_sigma(np.asarray(self.log_ratios)) if len(self.log_ratios) >= 4 else math.nan

    @property
    def seconds_per_launch(self) -> float | None:
        return float(np.median(self.launch_s)) if self.launch_s else None


def _seconds(m) -> float | None:
    try:
        return (datetime.fromisoformat(m.finished_at) - datetime.fromisoformat(m.started_at)
                ).total_seconds()
    except (TypeError, ValueError):
        return None


def key_noise(store, statistic: str = DEFAULT_STATISTIC,
              runs_looked_at: int = RUNS_LOOKED_AT) -> dict[NoiseKey, KeyNoise]:
    """Each key's noise over its last `runs_looked_at` runs that timed it."""
    from harness.regress.pairs import is_own_timing, is_paired_base

    noise: dict[NoiseKey, KeyNoise] = {}
    for run in reversed(store.runs()):  # newest first
        by_key: dict[NoiseKey, dict[str, dict[int, float]]] = {}
        for m in store.measurements(run["run_id"]):
            value = launch_value_us(m, statistic)
            if m.status != "ok" or value is None or value <= 0:
                continue
            side = "cand" if is_own_timing(m) else "base" if is_paired_base(m) else None
            if side is None:
                continue
            key = noise_key(m)
            if key in noise and noise[key].runs >= runs_looked_at:
                continue
            by_key.setdefault(key, {"base": {}, "cand": {}})[side][m.trial] = value
            seconds = _seconds(m)
            if seconds is not None and seconds > 0:
                noise.setdefault(key, KeyNoise(key)).launch_s.append(seconds)
        for key, sides in by_key.items():
            seen = noise.setdefault(key, KeyNoise(key))
            seen.runs += 1
            base, cand = sides["base"], sides["cand"]
            if base:  # a paired run: the pairs themselves, about the run's own change (which
                # is what was measured, not noise: a night of a slower candidate is no noisier)
                d = [math.log(cand[t] / base[t]) for t in base if t in cand]
                # About the Hodges-Lehmann centre, the one the signed-rank test sees: about the
                # median, a skewed night's residuals would lean and fake a smaller effect.
                centre = float(hodges_lehmann(np.asarray(d))) if d else 0.0
                seen.log_ratios += [x - centre for x in d]
            else:     # consecutive trials
                trials = sorted(cand)
                seen.log_ratios += [math.log(cand[b] / cand[a]) for a, b in zip(trials, trials[1:])]
    return noise


@dataclass
class TrialsChoice:
    pairs: int
    lines: list[str]               # what was decided and why, for the run's log
    mde_ratio: float | None = None  # the smallest slowdown the chosen count catches (power 0.9)


def choose_trials(noise: dict[NoiseKey, KeyNoise], wanted: list[tuple[str, str, str, str | None]],
                  threshold: float, alpha: float, time_budget_s: float | None,
                  paired: bool) -> TrialsChoice:
    """The trials (pairs) of a run whose keys, minus the device, are `wanted`
    ((model_name, variant, delegate, threads) each; threads None: the default, one per big core,
    whatever count that was): the most any of its keys on any device needs, within
    `time_budget_s` per device (None: no limit)."""
    lines, needed, sigmas, seconds = [], [], [], 0.0
    for model_name, variant, delegate, threads in wanted:
        seen = [n for k, n in noise.items()
                if (k.model_name, k.variant, k.delegate) == (model_name, variant, delegate)
                and threads in (None, k.threads) and not math.isnan(n.sigma_log)]
        if not seen:
            lines.append(f"{model_name}:{variant}: no noise seen yet: {FIRST_RUN_PAIRS} trials")
            needed.append(FIRST_RUN_PAIRS)
            continue
        worst = max(seen, key=lambda n: n.sigma_log)
        pairs = max(AUTO_MIN_PAIRS, pairs_for_power(worst.sigma_log, threshold, alpha,
                                                    residuals=np.asarray(worst.log_ratios)))
        sigmas.append(worst.sigma_log)
        needed.append(pairs)
        seconds += max(n.seconds_per_launch or 0.0 for n in seen)
        lines.append(f"{model_name}:{variant}: launch noise {100 * worst.sigma_log:.1f} % "
                     f"(pair log ratios, {worst.key.device}, last {worst.runs} run(s)): "
                     f"{pairs} pairs catch a {100 * (threshold - 1):.0f} % slowdown with power 0.9")
    pairs = max(needed) if needed else FIRST_RUN_PAIRS
    per_trial_s = seconds * (2 if paired else 1)
    if time_budget_s and per_trial_s > 0 and pairs * per_trial_s > time_budget_s:
        allowed = max(MIN_PAIRS, int(time_budget_s // per_trial_s))  # below: no verdict at all
        lines.append(f"the time budget ({time_budget_s:g} s a device, ~{per_trial_s:.1f} s a "
                     f"trial) allows {allowed} of the {pairs} trials")
        pairs = allowed
    mde = (minimum_detectable_ratio(max(sigmas), pairs, alpha) if sigmas else None)
    if mde is not None:
        lines.append(f"{pairs} trials: the smallest slowdown they catch with power 0.9 is "
                     f"{100 * (mde - 1):.1f} %")
    return TrialsChoice(pairs, lines, mde)
