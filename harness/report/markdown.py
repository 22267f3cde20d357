"""report.md: the run report as GitHub-flavoured Markdown (fit to paste in a PR or release)."""
from __future__ import annotations

import pandas as pd

from harness.results.statistic import latency_note
from harness.escape import md_text
from harness.report.content import DEVICE_ACCURACY_NOTE, SUMMARY_NOTE, ReportContent
from harness.report.tables import display_frame


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured table without the optional `tabulate` dependency: cells rounded by
    their unit (tables.format_value), `-` where there is no value, numbers right-aligned."""
    if frame.empty:
        return "_none_\n"
    shown = display_frame(frame)
    head = "| " + " | ".join(md_text(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(frame[c]) else "---"
                          for c in frame.columns) + "|"
    body = ["| " + " | ".join(md_text(v) for v in row) + " |"
            for row in shown.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


def render_markdown(content: ReportContent) -> str:
    run = {key: md_text(value) for key, value in content.run.items()}
    lines = [
        f"# bench run {md_text(content.run_id)}",
        "",
        "## Summary",
        "",
        *([f"- {md_text(s.line)}" for s in content.summary] or ["_no device_"]),
        "",
        *([f"_{md_text(SUMMARY_NOTE)}_", ""] if content.summary else []),
        "## Run",
        "",
        f"- started: {run.get('started_at')}, finished: {run.get('finished_at')}, "
        f"status: **{run.get('status')}**",
        f"- tool: bench {run.get('tool_version')} on {run.get('host')}",
        f"- adb: {run.get('adb')}",
        f"- bytes pushed: {run.get('bytes_pushed')}",
        "",
        "## Latency",
        "",
        f"{latency_note()}; `p90 ms` and `CV %` over the same per-launch figures "
        "(`CV %` needs 2 trials: `-` with one).",
        "",
        markdown_table(content.latency),
        "## Variants",
        "",
        "### Size",
        "",
        markdown_table(content.size),
        "### Accuracy",
        "",
        markdown_table(content.accuracy),
        content.notes[0],
        "",
        *(["### Accuracy on the device", "", DEVICE_ACCURACY_NOTE, "",
           markdown_table(content.device_accuracy)] if not content.device_accuracy.empty else []),
        "## Failed, invalid or skipped launches",
        "",
        markdown_table(content.failures),
        "## Provenance",
        "",
        "### Devices (props, temperature and battery over the run)",
        "",
        markdown_table(content.devices),
        "### How each device's numbers were obtained",
        "",
        markdown_table(content.conditions),
        "### Model and benchmark_model hashes",
        "",
        markdown_table(content.hashes),
        *[note + "\n" for note in content.notes[1:]],
        "## Plots",
        "",
        *[f"![{title}]({path.name})" for title, path in content.plots.items()],
    ]
    return "\n".join(lines) + "\n"
