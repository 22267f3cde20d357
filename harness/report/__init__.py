"""Run report: `reports/<run-id>/` with index.html (self-contained), report.md, results.csv,
results.json and the plots as PNG; and the same tables for the terminal."""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

from harness.report.content import ReportContent, build_content
from harness.report.html import render_html
from harness.report.markdown import markdown_table, render_markdown
from harness.report.summary import ACCURACY_BUDGET_PT, DeviceSummary, device_summaries
from harness.report.tables import (accuracy_table, devices_table, display_frame,
                                   failures_table, format_table, format_value, hashes_table,
                                   history_frame, latency_table, measurements_frame, results_csv,
                                   size_table, trial_stats_us, variants_table)
from harness.errors import StorageError, UserError
from harness.results.store import Store

__all__ = ["write_report", "latency_table", "variants_table", "failures_table", "format_table",
           "size_table", "accuracy_table", "devices_table", "hashes_table", "history_frame",
           "measurements_frame", "trial_stats_us", "markdown_table", "ReportContent",
           "display_frame", "format_value", "DeviceSummary", "device_summaries",
           "ACCURACY_BUDGET_PT"]


def write_report(store: Store, run_id: str, reports_dir: Path) -> Path:
    """Write every view of one run into `reports_dir/<run_id>/` and return that folder.

    Each file is written in full beside the folder's files, then renamed over them: a disk
    that fills up or goes read-only midway leaves the earlier report whole (never a truncated
    index.html), and the error names the dir and how to write the report later."""
    final = Path(reports_dir) / run_id
    try:
        final.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".writing-", dir=final,
                                         ignore_cleanup_errors=True) as staging:
            _render(store, run_id, Path(staging))
            _publish(Path(staging), final)
    except OSError as exc:
        raise StorageError(
            f"reports dir {reports_dir}: could not write the report of run {run_id} "
            f"({exc.strerror or exc}); its measurements are in the store {store.path}: free "
            f"space or fix the dir, then `bench report {run_id} --store {store.path} "
            f"--reports-dir {reports_dir}`") from None
    return final


def ensure_reports_dir(reports_dir: Path) -> None:
    """Refuse, before a run, a reports dir that cannot be made or written to."""
    try:
        Path(reports_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=reports_dir):
            pass
    except OSError as exc:
        raise UserError(f"--reports-dir {reports_dir}: cannot write there "
                        f"({exc.strerror or exc}); give a writable directory") from None


def _publish(staging: Path, final: Path) -> None:
    """Move the finished files over the folder's: each rename is atomic and needs no space."""
    written = sorted(p for p in staging.iterdir() if p.is_file())
    for path in written:
        with open(path, "rb") as f:
            os.fsync(f.fileno())  # the content is on disk before its name replaces the old file
    for path in written:
        os.replace(path, final / path.name)


def _render(store: Store, run_id: str, out: Path) -> None:
    """Every view of one run, written into `out`."""
    measurements = store.measurements(run_id)
    (out / "results.csv").write_text(results_csv(measurements), encoding="utf-8")
    content = build_content(store, run_id, measurements, out)
    (out / "results.json").write_text(json.dumps(_json_document(content, measurements), indent=2,
                                                 default=str))
    (out / "report.md").write_text(render_markdown(content))
    (out / "index.html").write_text(render_html(content), encoding="utf-8")


def _json_document(content: ReportContent, measurements) -> dict:
    """Machine-readable: the run, every table as records, and every raw measurement."""
    def records(frame):
        return [{k: _clean(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
    return {
        "run": content.run,
        "summary": [{**asdict(s), "line": s.line} for s in content.summary],
        "latency": records(content.latency),
        "variants": records(content.variants),
        "failures": records(content.failures),
        "devices": records(content.devices),
        "conditions": records(content.conditions),
        "device_accuracy": records(content.device_accuracy),
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
