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


def _signed_rank_critical(pairs: int, alpha: float) -> int:
    """The smallest W+ whose one-sided exact p under no change is <= alpha (the null
    distribution of the signed-rank sum, by counting: each rank in or out with probability 1/2)."""
    top = pairs * (pairs + 1) // 2
    dist = np.zeros(top + 1)
    dist[0] = 1.0
    for rank in range(1, pairs + 1):
        dist[rank:] = (dist[rank:] + dist[:-rank].copy()) / 2
        dist[:rank] /= 2
    tail = np.cumsum(dist[::-1])[::-1]  # tail[w] = P(W+ >= w)
    hits = np.nonzero(tail <= alpha)[0]
    return int(hits[0]) if hits.size else top + 1


def paired_power(sigma_log: float, pairs: int, true_ratio: float, threshold: float,
                 alpha: float = 0.01, simulations: int = 2000, seed: int = 0,
                 residuals: np.ndarray | None = None) -> float:
    """The share of nights on which `pairs` pairs whose log ratios scatter about
    log(true_ratio) come out REGRESSED: the exact signed-rank test at `alpha` and the estimate
    (the mean log ratio standing in for the Hodges-Lehmann one) past the decision floor.
    The scatter is the key's own recorded `residuals` (log ratios about their run's centre),
    resampled, when given: real launches have heavier tails than a normal law (a launch a
    background task slowed), and those decide how often a night misses; else normal by
    `sigma_log`. Simulated (seeded), because at a few pairs the test's discreteness decides too:
    with 8 pairs p <= 0.01 needs every pair but the smallest to go the same way."""
    rng = np.random.default_rng(seed)
    if residuals is not None and len(residuals) >= 8:
        residuals = np.asarray(residuals, float)
        residuals = residuals - hodges_lehmann(residuals)  # the test's centre at the truth
        d = math.log(true_ratio) + rng.choice(residuals, (simulations, pairs))
    else:
        d = rng.normal(math.log(true_ratio), sigma_log, (simulations, pairs))
    ranks = np.abs(d).argsort(axis=1).argsort(axis=1) + 1
    w_plus = np.where(d > 0, ranks, 0).sum(axis=1)
    # The Hodges-Lehmann estimate's stand-in: the mean (smooth like it; a plain median of a few
    # dozen recorded residuals jumps across their gaps).
    past_floor = d.mean(axis=1) >= math.log(decision_floor(threshold))
    return float(np.mean((w_plus >= _signed_rank_critical(pairs, alpha)) & past_floor))


def pairs_for_power(sigma_log: float, threshold: float, alpha: float = 0.01,
                    power: float = 0.9, max_pairs: int = 200,
                    residuals: np.ndarray | None = None) -> int:
    """How many pairs catch a true slowdown of `threshold` with `power`, when the pairs' log
    ratios scatter by `sigma_log`: from the normal approximation (signed-rank test at `alpha`,
    estimate above the decision floor) up, in 10 % steps, until the simulated power
    (`paired_power`, on the key's recorded `residuals` when given) reaches `power`; within
    [MIN_PAIRS, max_pairs]."""
    if not sigma_log > 0 or not threshold > 1:
        return MIN_PAIRS
    effect = math.log(threshold)
    n_test = ((_z(1 - alpha) + _z(power)) * sigma_log / effect) ** 2 / WILCOXON_ARE
    n_floor = (_z(power) * sigma_log / math.sqrt(WILCOXON_ARE)
               / (effect - math.log(decision_floor(threshold)))) ** 2
    pairs = max(MIN_PAIRS, min(max_pairs, math.ceil(max(n_test, n_floor))))
    while pairs < max_pairs and paired_power(sigma_log, pairs, threshold, threshold, alpha,
                                             residuals=residuals) < power:
        pairs = min(max_pairs, max(pairs + 1, math.ceil(1.1 * pairs)))
    return pairs


def minimum_detectable_ratio(sigma_log: float, pairs: int, alpha: float = 0.01,
                             power: float = 0.9) -> float:
    """The smallest slowdown (as a ratio) that `pairs` pairs catch with `power` by the test
    alone: what a verdict of SAME or UNKNOWN could not have seen below."""
    if pairs < 1 or not sigma_log > 0:
        return float("inf")
    return math.exp((_z(1 - alpha) + _z(power)) * sigma_log / math.sqrt(WILCOXON_ARE * pairs))
