"""The one per-launch latency statistic: which figure of each benchmark_model launch stands for
that launch in the report's latency table, the plots, the summary, `bench history` and the
verdicts of `bench compare` (which may be told another with --statistic).

Each launch prints its mean, its minimum and (the LiteRT tools) percentiles over its timed runs.
The default is the launch minimum, chosen by measured power: on this project's virtual lab its
pair-to-pair noise is about half the median's and a third of the mean's (benchmarks/
regression_detector.py prints the three side by side: 8 pairs catch a 5 % slowdown with power 0.9
by the minimum, 17 by the median, 27 by the mean), and benchmarks/nightly_e2e.py measures a real
5 % slowdown by each. Interference (another process, a background task on a phone) only ever
adds time, so the fastest runs of a launch are its least disturbed measure; a slowdown that hits
only some inferences (a tail) shows in `median` or `mean` only, which --statistic selects.
"""
from __future__ import annotations

# The per-launch figure a statistic names, as a Measurement field.
STATISTICS = {"mean": "inference_avg_us", "median": "inference_p50_us", "min": "inference_min_us"}
DEFAULT_STATISTIC = "min"
# How a header names it: "min ms" is the median over trials of each launch's minimum.
WHAT = {"mean": "average", "median": "median", "min": "minimum"}


def launch_value_us(m, statistic: str = DEFAULT_STATISTIC) -> float | None:
    """A launch's figure; a launch that printed no such figure (a benchmark_model without
    percentiles, a record stored without it) stands by its mean."""
    value = getattr(m, STATISTICS[statistic], None)
    if value is None or value != value:
        value = m.inference_avg_us
    return None if value is None else float(value)


def latency_column(statistic: str = DEFAULT_STATISTIC) -> str:
    """The latency table's column: the statistic is in its name."""
    return f"{statistic} ms"


def latency_note(statistic: str = DEFAULT_STATISTIC) -> str:
    """What the latency column is, in words, for the views' headers."""
    return (f"{latency_column(statistic)}: median over trials of each launch's {WHAT[statistic]} "
            f"latency (the one per-launch statistic of report, history and compare)")


LATENCY_MS = latency_column()
