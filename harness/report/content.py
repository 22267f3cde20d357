"""Everything one run's report shows, computed once; the HTML and Markdown views only lay it out."""
from __future__ import annotations

import json

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.targets.adb.adb_binary import describe_adb
from harness.report import plots
from harness.report.summary import ACCURACY_BUDGET_PT, DeviceSummary, summarise
from harness.report.tables import (accuracy_table, conditions_table, device_accuracy_table,
                                   devices_table,
                                   failures_table, hashes_table, history_frame, latency_table, size_table, trial_samples_ms,
                                   variants_table)
from harness.results.schema import Measurement

VIRTUAL_NOTE = ("Virtual devices run benchmark_model with the LiteRT interpreter on the host CPU: "
                "their latencies are real host-CPU measurements, not phone figures.")
SPARSITY_NOTE = ("Sparsity buys size, not speed: compare `zip bytes` (what a compressed download "
                 "costs) with `tflite bytes` and latency. Structured pruning shrinks parameters, "
                 "MACs and latency.")
DEVICE_ACCURACY_NOTE = (
    "The device's own outputs for the first N test samples (benchmark_model "
    "--input_layer_value_files in, --output_filepath out), beside the host's LiteRT CPU run of "
    "the same .tflite on the same samples: agreement is the share of samples with the same "
    "top-1; host max abs / rel the largest output difference (rel: over the host's largest "
    "output); host cosine the least similar sample. A delegate is flagged below the run's "
    "accuracy_min_agreement or a cosine under 0.99.")
SUMMARY_NOTE = (f"Per device, the fastest variant whose top-1 is at most {ACCURACY_BUDGET_PT:.1f} "
                "percentage points below the baseline's (else the one that loses least), against "
                "the baseline: median latency, .tflite size, top-1.")


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
    conditions: pd.DataFrame = field(default_factory=pd.DataFrame)  # how each device measured
    # What each device computed for real samples (`--accuracy-on-device`), per delegate.
    device_accuracy: pd.DataFrame = field(default_factory=pd.DataFrame)
    summary: list[DeviceSummary] = field(default_factory=list)  # one line per device, first
    notes: list[str] = field(default_factory=list)
    plots: dict[str, Path] = field(default_factory=dict)  # title -> PNG written next to the report


def build_content(store, run_id: str, measurements: list[Measurement], out: Path) -> ReportContent:
    run = store.run(run_id) or {"run_id": run_id}
    run["adb"] = describe_adb(json.loads(run.get("adb_json") or "null"))
    shas = sorted({m.artifact_sha256 for m in measurements if m.artifact_sha256})
    artifacts = store.artifacts(shas)
    # With the parity's max absolute difference, for results.json; the views leave it out.
    variants = variants_table(artifacts, max_abs_diff=True)
    model_names = {m.model_name for m in measurements if m.model_name}
    history = history_frame(store, next(iter(model_names)) if len(model_names) == 1 else None,
                            until_started_at=run.get("started_at"))
    content = ReportContent(
        run_id=run_id, run=run, latency=latency_table(measurements), variants=variants,
        size=size_table(variants) if not variants.empty else variants,
        accuracy=accuracy_table(variants) if not variants.empty else variants,
        failures=failures_table(measurements), devices=devices_table(measurements),
        hashes=hashes_table(measurements), history=history,
        conditions=conditions_table(measurements),
        device_accuracy=device_accuracy_table(measurements),
        summary=summarise(measurements, artifacts))
    content.notes.append(SPARSITY_NOTE)
    if any(m.device_abi == "x86_64" and m.device_model and "virtual" in m.device_model.lower()
           for m in measurements):
        content.notes.append(VIRTUAL_NOTE)
    figures = draw_plots(content, measurements)
    try:
        for caption, (name, fig) in figures.items():
            content.plots[caption] = plots.save(fig, out / name)
    finally:  # a disk that fills up midway leaves no figure open
        for _, fig in figures.values():
            plots.close(fig)
    return content


def draw_plots(content: ReportContent, measurements: list[Measurement]) -> dict:
    """caption -> (PNG file name, matplotlib Figure) of the report's plots (plots.report_figures
    of this content): build_content saves and closes them; a test can inspect them."""
    return plots.report_figures(trial_samples_ms(measurements), content.latency,
                                content.variants, content.history)
