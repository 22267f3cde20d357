"""Where a key's latency level changed over its runs: change points of the per-run medians,
found by `ruptures` (PELT with a least-squares cost on the log medians), not by code of our own.

The penalty is BIC-like, 3 sigma^2 log(n), with sigma the run-to-run scatter of the log medians
(robust: from their successive differences), so a key whose runs wander by a few % is not cut
at every step, and a level shift several times that scatter is. Levels closer than MIN_STEP
are merged back: a change below the smallest slowdown a nightly job acts on is no change.
"""
from __future__ import annotations

import math

import numpy as np

MIN_RUNS = 4       # fewer runs than this: no change point is claimed
MIN_STEP = 0.02    # |log ratio| between neighbouring levels below which they are one level


def change_points(medians: list[float]) -> list[int]:
    """Indices (into `medians`, oldest first) of the runs that start a new level."""
    values = np.log(np.asarray([m for m in medians], dtype=float))
    n = len(values)
    if n < MIN_RUNS or not np.all(np.isfinite(values)):
        return []
    import ruptures

    diffs = np.diff(values)
    sigma = 1.4826 * float(np.median(np.abs(diffs - np.median(diffs)))) / math.sqrt(2)
    sigma = max(sigma, 0.005)  # a perfectly steady series: still no cut for a 0.1 % wobble
    ends = ruptures.Pelt(model="l2", min_size=1, jump=1).fit(values.reshape(-1, 1)).predict(
        pen=3 * sigma ** 2 * math.log(n))
    starts = [0] + ends[:-1]
    kept = []
    for start, end in zip(starts[1:], ends[1:]):
        before = float(np.median(values[kept[-1] if kept else 0:start]))
        if abs(float(np.median(values[start:end])) - before) >= MIN_STEP:
            kept.append(start)
    return kept
