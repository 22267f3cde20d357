"""Paired A/B verdicts (issue 14, groundwork): the statistics of baseline and candidate launched
in turn on one device in one session, and how many such pairs a key needs.

Launching B C B C ... on one device pairs each candidate launch with a baseline launch taken
moments apart: whatever drifts between nights or within a session (heat, background load, a
neighbour on a shared host) hits both sides of a pair alike and cancels in the pair's log ratio
d = log(c / b). The verdict rests on those d:
- a one-sided Wilcoxon signed-rank test (scipy.stats.wilcoxon) for "the candidate is slower"
  (and "faster"), which needs no normality and shrugs off a few wild pairs;
- the Hodges-Lehmann estimate of the ratio (exp of the median of the pairwise averages of d: the
  estimate that goes with the signed-rank test, steadier than the plain median) and its seeded
  bootstrap 95 % CI, reported beside the verdict;
- the threshold T is the slowdown a nightly job must catch (with power 0.9 at the number of
  pairs `pairs_for_power` gives); a change is REGRESSED from sqrt(T) up (half the log change),
  since calling it only at ratio >= T would catch a true T in about half the nights.
Nothing here knows about stores or devices: plain numbers in, figures out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_PAIRS = 8  # the smallest p of a one-sided signed-rank test over n pairs is 2**-n: 7 reach 0.01
# Asymptotic relative efficiency of the signed-rank test (and of the Hodges-Lehmann estimate)
# against the t-test (the mean): 3/pi. The normal-approximation sizes below use it.
WILCOXON_ARE = 3 / math.pi


def log_ratios(base: list[float], cand: list[float]) -> np.ndarray:
    """d_i = log(c_i / b_i) of the pairs (base[i], cand[i]); a pair with a non-positive side is
    left out (no such latency)."""
    b = np.asarray(base, dtype=float)
    c = np.asarray(cand, dtype=float)
    if b.shape != c.shape:
        raise ValueError(f"{len(b)} baseline and {len(c)} candidate figures: pairs need both")
    keep = (b > 0) & (c > 0)
    return np.log(c[keep] / b[keep])


def robust_sigma(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation: the standard deviation of normal data, and not
    blown up by the odd launch a phone's background task slowed."""
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return float("nan")
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


@dataclass
class PairedTest:
    pairs: int
    ratio: float        # Hodges-Lehmann: the typical candidate / baseline ratio
    ci_low: float       # seeded bootstrap 95 % CI of that ratio
    ci_high: float
    p_slower: float     # one-sided signed-rank p-values
    p_faster: float
    sigma_log: float    # robust sigma of d (the pair-to-pair noise)


def hodges_lehmann(d: np.ndarray, axis: int = -1) -> np.ndarray:
    """The median of the Walsh averages (d_i + d_j) / 2, i <= j, along `axis` (vectorised for
    the bootstrap's resamples)."""
    d = np.moveaxis(np.asarray(d, dtype=float), axis, -1)
    n = d.shape[-1]
    i, j = np.triu_indices(n)
    return np.median((d[..., i] + d[..., j]) / 2, axis=-1)


def paired_test(base: list[float], cand: list[float], resamples: int = 2000,
                seed: int = 0) -> PairedTest:
    from scipy import stats  # loaded only where a verdict is computed

    d = log_ratios(base, cand)
    if d.size < 2:
        raise ValueError(f"{d.size} pair(s): a paired test needs at least 2")
    # zsplit: the per-launch minima are quantised to microseconds, so exact ties (d = 0) happen
    # and must count as no change, half each way, not be dropped.
    p_slower = float(stats.wilcoxon(d, alternative="greater", zero_method="zsplit").pvalue)
    p_faster = float(stats.wilcoxon(d, alternative="less", zero_method="zsplit").pvalue)
    ci = stats.bootstrap((d,), hodges_lehmann, n_resamples=resamples, confidence_level=0.95,
                         method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    return PairedTest(int(d.size), float(math.exp(hodges_lehmann(d))),
                      float(math.exp(ci.confidence_interval.low)),
                      float(math.exp(ci.confidence_interval.high)),
                      p_slower, p_faster, robust_sigma(d))


def decision_floor(threshold: float) -> float:
    """The ratio from which a significant change is called: sqrt(T), half the log change."""
    return math.sqrt(threshold)


def paired_decision(test: PairedTest, threshold: float, alpha: float = 0.01) -> tuple[str, str]:
    """(verdict, why): REGRESSED / IMPROVED when the signed-rank test is significant and the
    estimate is past the decision floor; SAME when the CI lies inside [1/T, T]; else UNKNOWN
    (and fewer than MIN_PAIRS pairs is UNKNOWN). The CI is not asked to agree as well: the
    test already says the change is real, and a third condition only costs power."""
    ci = f"ratio {test.ratio:.3f} (95 % CI {test.ci_low:.3f}-{test.ci_high:.3f}, {test.pairs} pairs)"
    if test.pairs < MIN_PAIRS:
        return "UNKNOWN", f"{test.pairs} pair(s): need >= {MIN_PAIRS}"
    floor = decision_floor(threshold)
    if test.p_slower <= alpha and test.ratio >= floor:
        return "REGRESSED", f"slower: {ci}, p={test.p_slower:.2g}, threshold {threshold:g}"
    if test.p_faster <= alpha and test.ratio <= 1 / floor:
        return "IMPROVED", f"faster: {ci}, p={test.p_faster:.2g}, threshold {threshold:g}"
    if test.ci_low >= 1 / threshold and test.ci_high <= threshold:
        return "SAME", f"within ±{100 * (threshold - 1):.0f} %: {ci}"
    return "UNKNOWN", f"not conclusive: {ci}"


def _z(probability: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(probability)


def pairs_for_power(sigma_log: float, threshold: float, alpha: float = 0.01,
                    power: float = 0.9, max_pairs: int = 200) -> int:
    """How many pairs catch a true slowdown of `threshold` with `power`, when the pairs' log
    ratios scatter by `sigma_log`: the signed-rank test at `alpha` and the estimate above the
    decision floor must both hold (normal approximations, 10 % margin), within
    [MIN_PAIRS, max_pairs]."""
    if not sigma_log > 0 or not threshold > 1:
        return MIN_PAIRS
    effect = math.log(threshold)
    n_test = ((_z(1 - alpha) + _z(power)) * sigma_log / effect) ** 2 / WILCOXON_ARE
    n_floor = (_z(power) * sigma_log / math.sqrt(WILCOXON_ARE)
               / (effect - math.log(decision_floor(threshold)))) ** 2
    return max(MIN_PAIRS, min(max_pairs, math.ceil(1.1 * max(n_test, n_floor))))


def minimum_detectable_ratio(sigma_log: float, pairs: int, alpha: float = 0.01,
                             power: float = 0.9) -> float:
    """The smallest slowdown (as a ratio) that `pairs` pairs catch with `power` by the test
    alone: what a verdict of SAME or UNKNOWN could not have seen below."""
    if pairs < 1 or not sigma_log > 0:
        return float("inf")
    return math.exp((_z(1 - alpha) + _z(power)) * sigma_log / math.sqrt(WILCOXON_ARE * pairs))
