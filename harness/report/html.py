"""index.html: one self-contained file (inline CSS, plots as base64 PNG, no scripts, no network).

Every name that came from a device, a config or a model (serials, variants, errors) is escaped
by `harness.escape.html_text`, table cells included (pandas' own escaping is switched off so the
rule is the one every writer shares).
"""
from __future__ import annotations

import base64

import pandas as pd

from harness.results.statistic import latency_note
from harness.escape import html_text
from harness.report.content import DEVICE_ACCURACY_NOTE, SUMMARY_NOTE, ReportContent
from harness.report.tables import display_frame

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1300px; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0 1.5em; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: right; }
th { background: #f0f3f7; } td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
.status-ok { color: #1a7f37; } .status-failed { color: #c62828; }
figure { margin: 1em 0 2em; } figcaption { font-weight: 600; margin-bottom: .3em; }
img { max-width: 100%; border: 1px solid #ddd; }
.note { color: #555; font-style: italic; }
ul.summary li { font-size: 1.05em; margin: .2em 0; }
"""


def html_table(frame: pd.DataFrame) -> str:
    """Cells rounded by their unit (tables.format_value), `-` where there is no value; every
    cell and header escaped here, the one rule for all of them."""
    if frame.empty:
        return "<p><em>none</em></p>"
    safe = display_frame(frame).map(html_text).rename(columns=html_text)
    return safe.to_html(index=False, escape=False, border=0)


def png_data_uri(png_bytes: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")


def render_html(content: ReportContent) -> str:
    e = html_text
    run = content.run
    status = str(run.get("status"))
    sections = [
        ("Latency", f"<p>{e(latency_note())}; p90 ms and CV % over the same per-launch "
                    "figures (CV % needs 2 trials: - with one).</p>"
                    + html_table(content.latency)),
        ("Size per variant", html_table(content.size)),
        ("Accuracy per variant", html_table(content.accuracy)),
        *([("Accuracy on the device", f'<p class="note">{e(DEVICE_ACCURACY_NOTE)}</p>'
            + html_table(content.device_accuracy))] if not content.device_accuracy.empty else []),
        ("Failed, invalid or skipped launches", html_table(content.failures)),
        ("Provenance: devices", html_table(content.devices)),
        ("Provenance: how each device's numbers were obtained", html_table(content.conditions)),
        ("Provenance: model and benchmark_model hashes", html_table(content.hashes)),
    ]
    figures = [
        f'<figure><figcaption>{e(title)}</figcaption>'
        f'<img alt="{e(title)}" src="{png_data_uri(path.read_bytes())}"></figure>'
        for title, path in content.plots.items()
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>bench run {e(content.run_id)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>bench run {e(content.run_id)}</h1>",
        '<section id="summary"><h2>Summary</h2><ul class="summary">',
        *[f"<li>{e(s.line)}</li>" for s in content.summary],
        "</ul>" + (f'<p class="note">{e(SUMMARY_NOTE)}</p>' if content.summary else
                   "<p><em>no device</em></p>") + "</section>",
        "<h2>Run</h2>",
        "<ul>",
        f"<li>started {e(str(run.get('started_at')))}, finished {e(str(run.get('finished_at')))},"
        f' status <strong class="status-{e(status)}">{e(status)}</strong></li>',
        f"<li>tool: bench {e(str(run.get('tool_version')))} on {e(str(run.get('host')))}</li>",
        f"<li>adb: {e(str(run.get('adb')))}</li>",
        f"<li>bytes pushed: {e(str(run.get('bytes_pushed')))}</li>",
        "</ul>",
        *[f"<h2>{e(title)}</h2>\n{body}" for title, body in sections],
        *[f'<p class="note">{e(note)}</p>' for note in content.notes],
        "<h2>Plots</h2>",
        *figures,
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
