"""Everything one run's report shows, computed once; the HTML and Markdown views only lay it out."""
from __future__ import annotations

import json

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.lab.adb_binary import describe_adb
from harness.report import plots
from harness.report.tables import (accuracy_table, devices_table, failures_table, hashes_table,
                                   history_frame, latency_table, size_table, trial_samples_ms,
                                   variants_table)
from harness.results import Measurement

VIRTUAL_NOTE = ("Virtual devices run benchmark_model with the LiteRT interpreter on the host CPU: "
                "their latencies are real host-CPU measurements, not phone figures.")
SPARSITY_NOTE = ("Sparsity buys size, not speed: compare `zip bytes` (what a compressed download "
                 "costs) with `tflite bytes` and latency. Structured pruning shrinks parameters, "
                 "MACs and latency.")


@dataclass
class ReportContent:
    run_id: str
    run: dict
    latency: pd.DataFrame
    variants: pd.DataFrame
    size: pd.DataFrame
    accuracy: pd.DataFrame
    failures: pd.DataFrame
    devices: pd.DataFrame
    hashes: pd.DataFrame
    history: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    plots: dict[str, Path] = field(default_factory=dict)  # title -> PNG written next to the report


def build_content(store, run_id: str, measurements: list[Measurement], out: Path) -> ReportContent:
    run = store.run(run_id) or {"run_id": run_id}
    run["adb"] = describe_adb(json.loads(run.get("adb_json") or "null"))
    shas = sorted({m.artifact_sha256 for m in measurements if m.artifact_sha256})
    variants = variants_table(store.artifacts(shas))
    model_names = {m.model_name for m in measurements if m.model_name}
    history = history_frame(store, next(iter(model_names)) if len(model_names) == 1 else None,
                            until_started_at=run.get("started_at"))
    content = ReportContent(
        run_id=run_id, run=run, latency=latency_table(measurements), variants=variants,
        size=size_table(variants) if not variants.empty else variants,
        accuracy=accuracy_table(variants) if not variants.empty else variants,
        failures=failures_table(measurements), devices=devices_table(measurements),
        hashes=hashes_table(measurements), history=history)
    content.notes.append(SPARSITY_NOTE)
    if any(m.device_abi == "x86_64" and m.device_model and "virtual" in m.device_model.lower()
           for m in measurements):
        content.notes.append(VIRTUAL_NOTE)
    drawn = {
        "Latency per device (median, min–max over trials)":
            plots.latency_bars(trial_samples_ms(measurements), out / "latency.png"),
        "Accuracy vs latency (Pareto frontier)":
            plots.accuracy_latency_pareto(content.latency, variants, out / "pareto.png"),
        "Size per variant (raw vs zip)": plots.size_bars(variants, out / "size.png"),
        "Median latency over runs": plots.latency_trend(history, out / "trend.png"),
    }
    content.plots = {title: path for title, path in drawn.items() if path is not None}
    return content
