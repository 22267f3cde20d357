"""Run report: `reports/<run-id>/` with index.html (self-contained), report.md, results.csv,
results.json and the plots as PNG; and the same tables for the terminal."""
from __future__ import annotations

import json
import math
from pathlib import Path

from harness.report.content import ReportContent, build_content
from harness.report.html import render_html
from harness.report.markdown import markdown_table, render_markdown
from harness.report.tables import (CSV_EXCLUDED, accuracy_table, devices_table, failures_table,
                                   format_table, hashes_table, history_frame, latency_table,
                                   measurements_frame, size_table, trial_stats_us, variants_table)
from harness.store import Store

__all__ = ["write_report", "latency_table", "variants_table", "failures_table", "format_table",
           "size_table", "accuracy_table", "devices_table", "hashes_table", "history_frame",
           "measurements_frame", "trial_stats_us", "markdown_table", "ReportContent"]


def write_report(store: Store, run_id: str, reports_dir: Path) -> Path:
    """Write every view of one run into `reports_dir/<run_id>/` and return that folder."""
    measurements = store.measurements(run_id)
    out = Path(reports_dir) / run_id
    out.mkdir(parents=True, exist_ok=True)
    # The CSV is for spreadsheets: one line per measurement, without the bulky raw fields
    # (output tail, full props), which stay in the store.
    measurements_frame(measurements).drop(columns=list(CSV_EXCLUDED), errors="ignore").to_csv(
        out / "results.csv", index=False)
    content = build_content(store, run_id, measurements, out)
    (out / "results.json").write_text(json.dumps(_json_document(content, measurements), indent=2,
                                                 default=str))
    (out / "report.md").write_text(render_markdown(content))
    (out / "index.html").write_text(render_html(content), encoding="utf-8")
    return out


def _json_document(content: ReportContent, measurements) -> dict:
    """Machine-readable: the run, every table as records, and every raw measurement."""
    def records(frame):
        return [{k: _clean(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
    return {
        "run": content.run,
        "latency": records(content.latency),
        "variants": records(content.variants),
        "failures": records(content.failures),
        "devices": records(content.devices),
        "hashes": records(content.hashes),
        "plots": [path.name for path in content.plots.values()],
        "measurements": [{k: _clean(v) for k, v in m.to_dict().items()} for m in measurements],
    }


def _clean(value):
    """NaN is not JSON: write null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _clean(value.item())
    return value
