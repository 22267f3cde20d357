"""A key's verdict from paired launches: the baseline's artifact and the candidate's, launched in
turn on one device in one session (a run's `paired` launches beside its timing ones, or the
re-runs of `--confirm`), matched trial by trial. The statistics are harness.regress.paired's:
signed-rank test on the pairs' log ratios, Hodges-Lehmann ratio with a bootstrap CI, a decision
floor at sqrt(threshold), and the smallest change the pairs could have seen (MDE).

The validity gates are those of a cross-run comparison except the CV gate: a side's CV over a
night includes the drift that pairing cancels, so a drifting night is not INVALID here; a noisy
key comes out UNKNOWN, with its MDE and the pairs that would settle it.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

from harness.regress.compare import (INVALID, UNKNOWN, KeySamples, KeyVerdict, LatencyTest,
                                     SeriesKey, Thresholds, _gate_failures, group_samples,
                                     sample_stats, sample_value, series_key)
from harness.regress.paired import (MIN_PAIRS, minimum_detectable_ratio, paired_decision,
                                    paired_test, pairs_for_power)
from harness.results.schema import Measurement, MeasurementStatus

PAIRED, CROSS_RUN, CONFIRMED = "paired", "cross-run", "paired (--confirm)"


def is_paired_base(m: Measurement) -> bool:
    """A launch of the baseline's artifact beside a candidate run's own (pairing.py)."""
    from harness.benchmark.pairing import BASE_ROLE, PAIRED_KIND

    return m.kind == PAIRED_KIND and m.role == BASE_ROLE


def is_own_timing(m: Measurement) -> bool:
    """A timing launch of the run's own plan (not one re-run for a lost sibling's device)."""
    return m.kind == "timing" and not m.role


def pair_groups(measurements: list[Measurement], is_base: Callable[[Measurement], bool],
                is_cand: Callable[[Measurement], bool]
                ) -> dict[SeriesKey, tuple[list[Measurement], list[Measurement]]]:
    """Per key: (baseline-side launches, candidate-side launches), keys with both only."""
    groups: dict[SeriesKey, tuple[list, list]] = {}
    for m in measurements:
        side = 0 if is_base(m) else 1 if is_cand(m) else None
        if side is not None:
            groups.setdefault(series_key(m), ([], []))[side].append(m)
    return {k: v for k, v in groups.items() if v[0] and v[1]}


def _by_trial(launches: list[Measurement], statistic: str) -> dict[int, float]:
    """trial -> its figure, from the trial's last ok launch (a retried job counts once)."""
    values: dict[int, tuple[str, float]] = {}
    for m in launches:
        value = sample_value(m, statistic)
        if m.status != MeasurementStatus.OK or value is None:
            continue
        stamp = m.started_at or ""
        if m.trial not in values or stamp >= values[m.trial][0]:
            values[m.trial] = (stamp, value)
    return {trial: v for trial, (_, v) in values.items()}


def _side_samples(launches: list[Measurement], key: SeriesKey, t: Thresholds) -> KeySamples:
    # Grouped as compare groups timing launches, for the gates' counts (invalid, throttled ...).
    return group_samples([replace(m, kind="timing") for m in launches], t).get(key, KeySamples())


def paired_key_verdict(key: SeriesKey, base_launches: list[Measurement],
                       cand_launches: list[Measurement], t: Thresholds,
                       mode: str = PAIRED) -> KeyVerdict:
    threshold = t.ratio_for(key.label)
    base_by_trial = _by_trial(base_launches, t.statistic)
    cand_by_trial = _by_trial(cand_launches, t.statistic)
    trials = sorted(set(base_by_trial) & set(cand_by_trial))
    base_values = [base_by_trial[i] for i in trials]
    cand_values = [cand_by_trial[i] for i in trials]
    verdict = KeyVerdict(key, UNKNOWN, "", threshold, sample_stats(base_values),
                         sample_stats(cand_values), mode=mode, pairs=len(trials))
    base, cand = _side_samples(base_launches, key, t), _side_samples(cand_launches, key, t)
    no_cv = replace(t, max_cv=float("inf"))  # see the module's docstring
    gates = (_gate_failures("base", base, verdict.base, no_cv)
             + _gate_failures("cand", cand, verdict.cand, no_cv))
    if gates:
        verdict.verdict, verdict.reason = INVALID, "; ".join(gates)
        return verdict
    if len(trials) < MIN_PAIRS:
        verdict.reason = (f"{len(trials)} pair(s) of baseline and candidate launches: need >= "
                          f"{MIN_PAIRS} (run --trials {MIN_PAIRS} or more)")
        verdict.more_trials = MIN_PAIRS - len(trials)
        return verdict
    test = paired_test(base_values, cand_values, t.bootstrap_resamples, t.seed)
    verdict.test = LatencyTest(test.ratio, test.ci_low, test.ci_high, test.p_slower,
                               test.p_faster)
    verdict.sigma_log = test.sigma_log
    verdict.mde_ratio = minimum_detectable_ratio(test.sigma_log, test.pairs, t.alpha)
    name, why = paired_decision(test, threshold, t.alpha)
    verdict.verdict = type(verdict.verdict)(name)
    verdict.reason = why
    if verdict.verdict == UNKNOWN:
        needed = pairs_for_power(test.sigma_log, threshold, t.alpha)
        # Enough pairs for the typical noise, yet no verdict: a few pairs disagree with the
        # rest (a disturbed launch); as many again would outvote them.
        verdict.more_trials = max(needed - test.pairs, test.pairs)
        more = f"~{verdict.more_trials} more pairs would likely settle it"
        verdict.reason = f"{why}; {more}"
    return verdict


def run_pairs(cand: list[Measurement], base_shas: dict[tuple[str, str], str],
              ) -> dict[SeriesKey, tuple[list[Measurement], list[Measurement]]]:
    """A candidate run's pairs against one baseline run: its `paired` launches of the artifact
    that baseline run timed for the same model and variant (`base_shas`), beside its own timing
    launches."""
    def is_base(m: Measurement) -> bool:
        return (is_paired_base(m) and m.artifact_sha256 is not None
                and base_shas.get((m.model_name or "?", m.variant)) == m.artifact_sha256)

    return pair_groups(cand, is_base, is_own_timing)
