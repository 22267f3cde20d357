"""`bench history`: each key's runs over time (run, date, tags, samples, median, CV).

Its median and CV are over each launch's figure of the one per-launch statistic
(harness.results.statistic), the figure the run reports show and `bench compare` judges."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.regress.compare import Thresholds, group_samples, sample_stats
from harness.results.statistic import LATENCY_MS


@dataclass
class HistoryRow:
    key: str             # SeriesKey.label
    run_id: str
    started_at: str
    tags: list[str]
    n: int
    median_ms: float | None
    cv_pct: float | None
    band_low_ms: float | None = None    # the run's noise band: 10th ...
    band_high_ms: float | None = None   # ... and 90th percentile of its launches' figures
    level_change: bool = False          # this run starts a new level (harness.results.changes)


def history_rows(store, model: str | None = None, device: str | None = None) -> list[HistoryRow]:
    """One row per (key, run), grouped by key and oldest first within a key."""
    tags = store.tags_by_run()
    rows = []
    for run in store.runs():
        measurements = store.measurements(run["run_id"])
        if device is not None:  # its stable identity, or the adb serial it had in that run
            measurements = [m for m in measurements if device in (m.device_id, m.device_serial)]
        groups = group_samples(measurements, Thresholds())
        for key, samples in groups.items():
            if model is not None and key.model_name != model:
                continue
            st = sample_stats(samples.values_us)
            band = (np.percentile(samples.values_us, [10, 90]) / 1000 if samples.values_us
                    else (None, None))
            rows.append(HistoryRow(
                key=key.label, run_id=run["run_id"], started_at=run["started_at"],
                tags=tags.get(run["run_id"], []), n=st.n,
                median_ms=None if st.median_us is None else st.median_us / 1000,
                cv_pct=None if st.cv is None else 100 * st.cv,
                band_low_ms=None if band[0] is None else float(band[0]),
                band_high_ms=None if band[1] is None else float(band[1])))
    rows.sort(key=lambda r: (r.key, r.started_at, r.run_id))
    mark_level_changes(rows)
    return rows


def by_key(rows: list[HistoryRow]) -> dict[str, list[HistoryRow]]:
    grouped: dict[str, list[HistoryRow]] = {}
    for r in rows:
        grouped.setdefault(r.key, []).append(r)
    return grouped


def mark_level_changes(rows: list[HistoryRow]) -> None:
    """Each key's runs where its level changed (change points of the per-run medians)."""
    from harness.results.changes import change_points

    for key_rows in by_key(rows).values():
        measured = [r for r in key_rows if r.median_ms]
        for index in change_points([r.median_ms for r in measured]):
            measured[index].level_change = True


def write_history_plot(rows: list[HistoryRow], path) -> "Path | None":
    """`bench history --plot`: the PNG of harness.report.plots.history_trends, written whole or
    not at all; None when no key has two runs to draw."""
    from pathlib import Path

    from harness.atomic_write import write_atomic
    from harness.report.plots import figure_png, history_trends

    fig = history_trends(by_key(rows))
    if fig is None:
        return None
    return write_atomic(Path(path), figure_png(fig), "history plot")


def format_history(rows: list[HistoryRow]) -> str:
    if not rows:
        return "no runs with timing samples"
    lines, current = [], None
    for r in rows:
        if r.key != current:
            current = r.key
            lines.append(("" if not lines else "\n") + r.key)
            lines.append(f"  {'run':<28} {'date':<20} {'n':>4} {LATENCY_MS:>10} {'CV %':>6}  tags")
        median = "-" if r.median_ms is None else f"{r.median_ms:.3f}"
        cv = "-" if r.cv_pct is None else f"{r.cv_pct:.1f}"
        lines.append(f"  {r.run_id:<28} {r.started_at[:19]:<20} {r.n:>4} {median:>10} {cv:>6}"
                     f"  {', '.join(r.tags)}" + ("  <- level changed" if r.level_change else ""))
    return "\n".join(lines)
