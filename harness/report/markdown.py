"""report.md: the run report as GitHub-flavoured Markdown (fit to paste in a PR or release)."""
from __future__ import annotations

import pandas as pd

from harness.escape import md_text
from harness.report.content import ReportContent


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured table without the optional `tabulate` dependency."""
    if frame.empty:
        return "_none_\n"

    def cell(v):
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return "-"
        return f"{v:.3f}" if isinstance(v, float) else md_text(v)
    head = "| " + " | ".join(md_text(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


def render_markdown(content: ReportContent) -> str:
    run = {key: md_text(value) for key, value in content.run.items()}
    lines = [
        f"# bench run {md_text(content.run_id)}",
        "",
        f"- started: {run.get('started_at')}, finished: {run.get('finished_at')}, "
        f"status: **{run.get('status')}**",
        f"- tool: bench {run.get('tool_version')} on {run.get('host')}",
        f"- adb: {run.get('adb')}",
        f"- bytes pushed: {run.get('bytes_pushed')}",
        "",
        "## Latency",
        "",
        "`avg ms`: median over trials of each launch's average; `p90 ms` and `CV %` over the same "
        "trial averages.",
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
        "## Failed, invalid or skipped launches",
        "",
        markdown_table(content.failures),
        "## Provenance",
        "",
        "### Devices (props, temperature and battery over the run)",
        "",
        markdown_table(content.devices),
        "### Model and benchmark_model hashes",
        "",
        markdown_table(content.hashes),
        *[note + "\n" for note in content.notes[1:]],
        "## Plots",
        "",
        *[f"![{title}]({path.name})" for title, path in content.plots.items()],
    ]
    return "\n".join(lines) + "\n"
