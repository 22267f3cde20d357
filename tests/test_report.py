"""The run report: files, table numbers, HTML escaping, plots, and a headless Chromium render.

The store is filled with realistic rows (what the lab writes for 2 devices x 2 variants with
several trials, a failed and an invalid launch) rather than by a real run, which takes minutes.
One device has a long model name, as real phones do: the figures must still lay out cleanly.
"""
from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from harness.report import (ACCURACY_BUDGET_PT, device_summaries, display_frame, format_table,
                            format_value, latency_table, markdown_table, trial_stats_us,
                            variants_table, write_report)
from harness.report import plots
from harness.report.content import build_content, draw_plots
from harness.report.html import html_table
from harness.report.plots import overlapping_titles, pareto_frontier, title_extents, titles_outside
from harness.report.summary import summarise
from harness.results.schema import Measurement
from harness.results.statistic import LATENCY_MS
from harness.results.store import Store

EVIL_VARIANT = "<script>alert(1)</script>&int8"
LONG_MODEL = "Virtual Galaxy S24 Ultra Enterprise Edition SM-S928B/DS 5G (bench x86_64 host-CPU)"
DEVICES = {"emu-A1": "Virtual Pixel", "emu-B2": LONG_MODEL}
# Trial averages (µs) per (device, variant): distinct values so medians and p90s are checkable.
TRIALS_US = {
    ("emu-A1", "baseline"): [1000.0, 1100.0, 1050.0, 1300.0, 980.0],
    ("emu-A1", EVIL_VARIANT): [400.0, 420.0, 410.0, 430.0, 405.0],
    ("emu-B2", "baseline"): [2000.0, 2100.0, 2050.0, 2500.0, 1990.0],
    ("emu-B2", EVIL_VARIANT): [800.0, 820.0, 810.0, 900.0, 805.0],
}
SHA = {"baseline": "a" * 64, EVIL_VARIANT: "b" * 64}
SIZE = {"baseline": 4_000_000, EVIL_VARIANT: 1_000_000}
# The baseline's parity is an older artifact's: no cosine similarity recorded.
PARITY = {"baseline": {"max_abs_diff": 3e-7, "relative_diff": 2.4e-7},
          EVIL_VARIANT: {"max_abs_diff": 0.0004, "relative_diff": 1.7e-4,
                         "cosine_similarity": 0.99999768}}


def _measurement(run_id, serial, variant, **extra) -> Measurement:
    telemetry = {"at": "2026-01-01T00:00:00Z", "battery_pct": 80 + extra.pop("battery_step", 0),
                 "max_temp_c": 35.0 + extra.pop("temp_step", 0.0)}
    return Measurement(
        run_id=run_id, device_serial=serial, adb_server="127.0.0.1:5037", variant=variant,
        model_name="tinynet", artifact_sha256=SHA[variant], model_size_bytes=SIZE[variant],
        binary_sha256="c" * 64, device_model=DEVICES[serial], device_abi="x86_64", device_sdk=34,
        device_props_json=json.dumps({"ro.build.fingerprint": f"bench/{serial}/virt:14"}),
        telemetry_before_json=json.dumps(telemetry), telemetry_after_json=json.dumps(telemetry),
        **extra)


def _fill_run(store: Store, run_id: str, started_at: str, scale: float = 1.0) -> None:
    store.start_run(run_id, started_at, "0.1.0", "host-1", {})
    for variant in SHA:
        store.record_artifact(SHA[variant], f"tinynet-{variant}", "tinynet", variant, SIZE[variant], {
            "params": 1_000_000 if variant == "baseline" else 250_000, "macs": 5_000_000,
            "zip_bytes": SIZE[variant] // 2, "parent": None if variant == "baseline" else SHA["baseline"],
            "accuracy": {"top1": 0.80 if variant == "baseline" else 0.78, "top5": 0.95,
                         "agreement": 1.0 if variant == "baseline" else 0.97, "baseline_top1": 0.80},
            "parity": PARITY[variant]})
    for (serial, variant), trials in TRIALS_US.items():
        for trial, avg_us in enumerate(trials):
            store.add_measurement(_measurement(
                run_id, serial, variant, status="ok", kind="timing", trial=trial,
                inference_avg_us=avg_us * scale, inference_std_us=10.0, init_us=5000.0 + trial,
                first_inference_us=2 * avg_us, nodes_delegated=3, nodes_total=10,
                battery_step=-trial, temp_step=float(trial)))
        store.add_measurement(_measurement(
            run_id, serial, variant, status="ok", kind="peak_memory", trial=0,
            inference_avg_us=99_999.0, peak_memory_mb=12.5 if variant == "baseline" else 6.25))
    store.add_measurement(_measurement(run_id, "emu-B2", "baseline", status="failed", trial=9,
                                       failure_kind="device", error="device offline & gone"))
    store.add_measurement(_measurement(run_id, "emu-A1", EVIL_VARIANT, status="invalid", trial=8,
                                       failure_kind="hygiene", error="battery 12 % < 20 %"))
    store.finish_run(run_id, started_at.replace("00:00", "05:00"), "failed", 0)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    store = Store(tmp / "bench.db")
    # An earlier run (20 % faster) so the history trend has two points per key.
    _fill_run(store, "run-1", "2026-01-01T00:00:00Z", scale=0.8)
    _fill_run(store, "run-2", "2026-01-02T00:00:00Z")
    out = write_report(store, "run-2", tmp / "reports")
    yield out, store
    store.close()


def test_every_file_is_written(report_dir):
    out, _ = report_dir
    for name in ("index.html", "report.md", "results.csv", "results.json",
                 "latency.png", "pareto.png", "size.png", "trend.png"):
        assert (out / name).stat().st_size > 0, name
    data = json.loads((out / "results.json").read_text())
    assert data["run"]["run_id"] == "run-2"
    assert len(data["measurements"]) == 4 * 6 + 2
    assert len(data["latency"]) == 4


def test_latency_numbers_are_medians_p90_and_cv_over_trials(report_dir):
    _, store = report_dir
    table = latency_table(store.measurements("run-2")).set_index(["device", "variant"])
    for (serial, variant), trials in TRIALS_US.items():
        row = table.loc[(f"{serial} ({DEVICES[serial]})", variant)]
        values = np.array(trials)
        assert row["trials"] == 5
        assert row[LATENCY_MS] == pytest.approx(np.median(values) / 1000)
        assert row["p90 ms"] == pytest.approx(np.percentile(values, 90) / 1000)
        assert row["CV %"] == pytest.approx(values.std(ddof=1) / values.mean() * 100)
        # The peak-memory launch's own latency (99.999 ms) must not leak into timing figures.
        assert row[LATENCY_MS] < 3
        assert row["peak MB"] == (12.5 if variant == "baseline" else 6.25)
        assert row["delegated nodes"] == "3/10"
        assert row["init ms"] == pytest.approx(5.002)


def test_trial_stats_by_hand():
    stats = trial_stats_us([100.0, 200.0, 300.0, 400.0])
    assert stats["median_us"] == 250.0
    assert stats["p90_us"] == pytest.approx(370.0)  # 300 + 0.7 * 100, linear interpolation
    assert stats["cv_pct"] == pytest.approx(129.0994 / 250 * 100, rel=1e-4)
    assert trial_stats_us([5.0])["cv_pct"] is None


def test_pareto_frontier_keeps_only_undominated_points():
    # (latency ms, accuracy %): the 3rd is slower and less accurate than the 1st.
    assert pareto_frontier([(1.0, 80.0), (0.5, 78.0), (2.0, 70.0), (0.5, 77.0)]) == [1, 0]


def test_markdown_has_every_section_and_the_failures(report_dir):
    out, _ = report_dir
    md = (out / "report.md").read_text()
    for needle in ("## Latency", "## Variants", "zip bytes", "Failed, invalid or skipped",
                   "device offline & gone", "battery 12 % < 20 %", "emu-A1", "emu-B2",
                   "bench/emu-A1/virt:14", "c" * 64, "bytes pushed: 0", "![Latency over runs"):
        assert needle in md, needle
    # Δ top-1 of the derived variant: 78 - 80 = -2 points.
    assert "| -2.0 |" in md
    # The summary opens the report, before any table.
    assert md.index("## Summary") < md.index("| device |")
    assert "- emu-A1: " in md and "(over the 1.0 pt budget)" in md


def test_html_escapes_every_name_and_embeds_only_data_uris(report_dir):
    out, _ = report_dir
    page = (out / "index.html").read_text()
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;int8" in page
    assert "device offline &amp; gone" in page
    # Self-contained: no http(s) reference, every image an inline PNG that decodes.
    assert "http://" not in page and "https://" not in page
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(sources) == 4
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert image.format == "PNG" and image.width > 300 and image.height > 200


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary (Debian package `chromium`)")
def test_html_renders_in_headless_chromium(report_dir, tmp_path):
    out, store = report_dir
    url = (out / "index.html").resolve().as_uri()
    common = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True,
                         timeout=180, check=True).stdout
    # The parsed DOM holds every table and image, and the escaped name as text, not as a tag.
    assert dom.count("<table") == 6
    assert dom.count("<img") == 4
    assert "<script>alert" not in dom and "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    # The summary is rendered, one line per device, right under the title, before any table.
    summary = device_summaries(store, "run-2")
    assert len(summary) == 2
    for line in (s.line for s in summary):
        shown = html.escape(line, quote=False)  # how a DOM dump writes text
        assert shown in dom, line
        assert dom.index("<h1") < dom.index(shown) < dom.index("<table")
    assert LONG_MODEL in dom  # the tables keep the full device name
    # No table cell shows None or nan; a missing value is "-".
    cells = re.findall(r"<td>([^<]*)</td>", dom)
    assert cells and not {"None", "nan", "NaN", "&lt;NA&gt;"} & set(cells)
    # The report's own figures (the same drawing code, on the same content): no title overlaps
    # another or leaves the figure.
    measurements = store.measurements("run-2")
    content = build_content(store, "run-2", measurements, tmp_path)
    figures = draw_plots(content, measurements)
    try:
        assert len(figures) == 4
        for caption, (_, fig) in figures.items():
            _assert_titles_apart(fig, caption)
    finally:
        for _, fig in figures.values():
            plots.close(fig)
    shot = tmp_path / "shot.png"
    subprocess.run([*common, f"--screenshot={shot}", "--window-size=1400,3000", url],
                   capture_output=True, timeout=180, check=True)
    assert shot.stat().st_size > 50_000
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (3000, 1400)
    # A blank or error page has a handful of colours; rendered tables plus plots have thousands.
    distinct = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(distinct) > 500
    shutil.copy(shot, out / "screenshot.png")  # left for a human to look at


def test_a_run_with_no_successful_launch_still_gets_every_view(tmp_path):
    store = Store(tmp_path / "bench.db")
    store.start_run("run-x", "2026-01-03T00:00:00Z", "0.1.0", "host-1", {})
    store.add_measurement(Measurement(run_id="run-x", device_serial="emu-A1", adb_server="s",
                                      variant="baseline", status="failed", error="no device"))
    out = write_report(store, "run-x", tmp_path / "reports")
    store.close()
    assert "no device" in (out / "report.md").read_text()
    assert "no device" in (out / "index.html").read_text()
    assert json.loads((out / "results.json").read_text())["latency"] == []
    assert not list(out.glob("*.png"))  # nothing to draw: no empty plots


# -- summary per device ---------------------------------------------------------------------------
def test_summary_of_the_report_run(report_dir):
    out, store = report_dir
    summary = {s.device_id: s for s in device_summaries(store, "run-2")}
    a1 = summary["emu-A1"]
    assert (a1.best_variant, a1.baseline_variant, a1.name) == (EVIL_VARIANT, "baseline",
                                                               "Virtual Pixel")
    assert a1.speedup_x == pytest.approx(1050 / 410)  # medians of the trials, µs
    assert a1.size_ratio_x == pytest.approx(4.0)
    assert a1.top1_delta_pt == pytest.approx(-2.0) and a1.over_budget
    assert a1.line == (f"emu-A1: {EVIL_VARIANT}: 2.6x faster, 4.0x smaller, -2.0 pt top-1 "
                       "(over the 1.0 pt budget) (baseline 1.05 ms, 4.000 MB, top-1 80.0 %)")
    # The same summary is in results.json, computed once with the rest of the report.
    data = json.loads((out / "results.json").read_text())
    assert [row["line"] for row in data["summary"]] == [s.line for s in summary.values()]


def _artifact(variant, size, top1=None, agreement=None, parent="p" * 64):
    return {"variant": variant, "size_bytes": size, "metadata": {
        "parent": None if variant == "baseline" else parent,
        "accuracy": {"top1": top1, "agreement": agreement,
                     "baseline_top1": None if top1 is None else 0.90}}}


def _timing(variant, avg_us, device="VIRT0001", status="ok"):
    return Measurement(run_id="r", device_serial="127.0.0.1:5555", device_id=device,
                       device_model="bench Virtual x86_64 host-CPU", adb_server="s",
                       variant=variant, status=status, kind="timing", inference_avg_us=avg_us)


def test_best_is_the_fastest_within_the_accuracy_budget():
    assert ACCURACY_BUDGET_PT == 1.0
    artifacts = [_artifact("baseline", 121_000, top1=0.90),
                 _artifact("fast-but-bad", 10_000, top1=0.85),   # -5 pt: over budget
                 _artifact("ok", 17_000, top1=0.897),             # -0.3 pt
                 _artifact("exactly-1pt", 30_000, top1=0.89),     # -1.0 pt: within (rounding)
                 _artifact("slow", 60_000, top1=0.90)]
    measurements = [_timing("baseline", us) for us in (33.0, 34.0, 32.0)]
    measurements += [_timing("fast-but-bad", 2.0), _timing("ok", 5.0), _timing("ok", 5.2),
                     _timing("exactly-1pt", 4.0), _timing("slow", 20.0)]
    [summary] = summarise(measurements, artifacts)
    assert summary.best_variant == "exactly-1pt" and not summary.over_budget
    # Drop exactly-1pt: the next fastest within budget wins, with its figures.
    [summary] = summarise([m for m in measurements if m.variant != "exactly-1pt"], artifacts)
    assert summary.best_variant == "ok"
    assert summary.line == ("VIRT0001: ok: 6.5x faster, 7.1x smaller, -0.3 pt top-1 "
                            "(baseline 0.0330 ms, 0.121 MB, top-1 90.0 %)")


def test_best_over_budget_is_the_smallest_drop_and_says_so():
    artifacts = [_artifact("baseline", 100, top1=0.90), _artifact("a", 50, top1=0.80),
                 _artifact("b", 25, top1=0.85)]
    [summary] = summarise([_timing("baseline", 40.0), _timing("a", 10.0), _timing("b", 20.0)],
                          artifacts)
    assert summary.best_variant == "b" and summary.over_budget
    assert summary.line == ("VIRT0001: b: 2.0x faster, 4.0x smaller, -5.0 pt top-1 (over the "
                            "1.0 pt budget) (baseline 0.0400 ms, 0.000 MB, top-1 90.0 %)")


def test_summary_without_labels_uses_agreement_and_says_slower():
    artifacts = [_artifact("baseline", 1000, agreement=None), _artifact("q", 2000, agreement=0.995)]
    [summary] = summarise([_timing("baseline", 10.0), _timing("q", 20.0)], artifacts)
    assert summary.top1_delta_pt is None and summary.agreement_pct == pytest.approx(99.5)
    assert summary.line == ("VIRT0001: q: 2.0x slower, 2.0x larger, 99.5 % agreement "
                            "(baseline 0.0100 ms, 0.001 MB)")


def test_summary_lines_without_a_comparison():
    only = summarise([_timing("baseline", 33.0)], [_artifact("baseline", 121_000, top1=0.989)])
    assert only[0].line == ("VIRT0001: baseline 0.0330 ms, 0.121 MB, top-1 98.9 % "
                            "(no other variant to compare)")
    no_base = summarise([_timing("a", 5.0), _timing("b", 4.0)],
                        [_artifact("a", 10), _artifact("b", 10)])
    assert no_base[0].line == ("VIRT0001: no baseline in this run, so nothing to compare with "
                               "(fastest: b 0.00400 ms)")
    failed = summarise([_timing("baseline", None, status="failed"), _timing("a", 5.0)],
                       [_artifact("baseline", 10), _artifact("a", 10)])
    assert failed[0].line.startswith("VIRT0001: the baseline has no successful latency")
    nothing = summarise([_timing("baseline", None, device="VIRT0002", status="failed")], [])
    assert nothing[0].line == "VIRT0002: no successful latency measurement (see the failures)"


# -- numbers as the views show them ---------------------------------------------------------------
@pytest.mark.parametrize("column, value, shown", [
    ("CV %", None, "-"), ("CV %", float("nan"), "-"), ("CV %", 11.8321, "11.8"),
    (LATENCY_MS, 0.0331234, "0.0331"), (LATENCY_MS, 1.04999, "1.05"), (LATENCY_MS, 1234.5, "1234"),
    ("peak MB", 12.5, "12.500"), ("tflite bytes", 4_000_000.0, "4000000"),
    ("zip bytes", np.float64(1234.0), "1234"), ("params", np.int64(250_000), "250000"),
    ("max temp °C", 39.04, "39.0"), ("top-1 %", 98.94, "98.9"), ("Δ top-1 pt", -0.31, "-0.3"),
    ("Δ top-1 pt", 0.0, "+0.0"), ("parity rel diff", 1.7e-4, "1.70e-04"),
    ("parity rel diff", 0.0, "0"), ("parity cosine", 0.99999768, "0.9999977"),
    ("parity cosine", 0.99999, "0.999990"), ("parity cosine", 0.95, "0.950"),
    ("parity cosine", 1.0, "1"), ("battery %", "76–80", "76–80"),
    ("delegated nodes", "3/10", "3/10"),
])
def test_each_unit_is_rounded_to_what_it_means(column, value, shown):
    assert format_value(column, value) == shown


def test_one_trial_shows_a_dash_never_none_or_nan(tmp_path):
    measurements = [_timing("baseline", 33.0)]
    table = latency_table(measurements)
    assert table["CV %"].tolist() == [None]  # undefined for one trial
    text = format_table(table)
    assert "CV %" in text.splitlines()[0] and "None" not in text and "nan" not in text
    assert display_frame(table)["CV %"].tolist() == ["-"]
    md = markdown_table(table)
    assert "None" not in md and "nan" not in md and "| - |" in md
    page = html_table(table)
    assert "None" not in page and "nan" not in page and "<td>-</td>" in page
    variants = variants_table([{"variant": "baseline", "size_bytes": 10, "metadata": {
        "params": 5, "parity": {"max_abs_diff": 1e-9, "relative_diff": 1.7e-4}}},
        {"variant": "b", "size_bytes": 5, "metadata": {
            "parity": {"max_abs_diff": 1e-9, "relative_diff": 1e-3, "cosine_similarity": 0.9}}}])
    shown = format_table(variants)
    assert "parity max diff" not in shown and "None" not in shown and "nan" not in shown
    assert "1.70e-04" in shown and "0.90" in shown and "-" in shown.splitlines()[1]
    assert "parity max diff" in variants_table([{"variant": "b", "size_bytes": 5, "metadata": {
        "parity": {"max_abs_diff": 1e-9}}}], max_abs_diff=True)


def test_results_json_keeps_the_parity_max_abs_diff(report_dir):
    out, _ = report_dir
    data = json.loads((out / "results.json").read_text())
    by_variant = {row["variant"]: row for row in data["variants"]}
    assert by_variant[EVIL_VARIANT]["parity max diff"] == 0.0004
    assert by_variant[EVIL_VARIANT]["parity rel diff"] == 1.7e-4
    assert by_variant["baseline"]["parity cosine"] is None  # an older artifact: no cosine
    page = (out / "index.html").read_text()
    assert "parity max diff" not in page and "<th>parity rel diff</th>" in page
    assert "<td>1.70e-04</td>" in page and "<td>0.9999977</td>" in page


# -- figures: no title overlaps another or leaves the figure, whatever the names ------------------
LONG_DEVICES = ["VIRT0001 (bench Virtual x86_64 host-CPU)",
                "R58N12ABCDE (SAMSUNG Galaxy S24 Ultra Enterprise Edition SM-S928B/DS 5G Dual SIM)",
                "W" * 70]  # the widest glyph, unbroken
LONG_VARIANTS = ["baseline", "pruned50-ft10-int8", "sparse75-lt-ft20-dynamic_int8-io_int8",
                 "M" * 60]


def _long_name_figures(devices):
    samples = {(d, v): [1.0 + i, 1.2 + i, 0.9 + i] for d in devices
               for i, v in enumerate(LONG_VARIANTS)}
    latency = pd.DataFrame([{"device": d, "variant": v, LATENCY_MS: 1.0 + i} for d in devices
                            for i, v in enumerate(LONG_VARIANTS)])
    variants = pd.DataFrame([{"variant": v, "top-1 %": 80.0 - i, "tflite bytes": 4e6 / (i + 1),
                              "zip bytes": 2e6 / (i + 1)} for i, v in enumerate(LONG_VARIANTS)])
    history = pd.DataFrame([{"run_id": f"2026010{r}-000000-ab{r}d", "started_at": f"2026-01-0{r}",
                             "device": d, "variant": v, LATENCY_MS: 1.0 + i + r}
                            for r in (1, 2) for d in devices for i, v in enumerate(LONG_VARIANTS)])
    return plots.report_figures(samples, latency, variants, history)


def _assert_titles_apart(fig, caption) -> list[str]:
    """No two titles of `fig` overlap and none leaves the figure; returns the titles' texts."""
    extents = title_extents(fig)  # drawn once, with constrained layout done
    assert extents, caption
    assert overlapping_titles(fig, extents) == [], caption
    assert titles_outside(fig, extents) == [], caption
    return [text for text, _ in extents]


def test_titles_never_overlap_with_long_device_names():
    figures = _long_name_figures(LONG_DEVICES)
    figures["one device"] = ("", plots.latency_bars({(LONG_DEVICES[2], v): [1.0]
                                                     for v in LONG_VARIANTS}))
    try:
        assert len(figures) == 5 and all(fig is not None for _, fig in figures.values())
        titles = {caption: _assert_titles_apart(fig, caption)
                  for caption, (_, fig) in figures.items()}
        # Every panel has its own title: the suptitle, one per device, the legend's; the
        # device names are shortened, not dropped.
        latency = titles["Latency per device (median, min–max over trials)"]
        assert len(latency) == 1 + len(LONG_DEVICES) + 1
        assert latency[1].startswith("VIRT0001 (bench Virtual")
        assert latency[2].startswith("R58N12ABCDE") and latency[2].endswith("…")
    finally:
        for _, fig in figures.values():
            plots.close(fig)


def test_the_title_check_finds_an_overlap():
    """The check itself: two long panel titles in a tight figure without layout do overlap."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(4, 3))
    for ax in axes:
        ax.set_title("Latency on " + LONG_DEVICES[1])
    try:
        assert overlapping_titles(fig) and titles_outside(fig)
    finally:
        plt.close(fig)


def test_one_statistic_in_the_table_the_history_and_the_verdicts():
    """Report, history and compare read the same per-launch figure, and name it (issue 14)."""
    from dataclasses import replace

    from harness.regress.compare import Thresholds
    from harness.regress.render import latency_header
    from harness.regress.compare import CompareResult
    from harness.results.history import HistoryRow, format_history
    from harness.results.statistic import DEFAULT_STATISTIC, STATISTICS

    launches = [replace(_timing("baseline", 2000.0 + 10 * i),
                        **{STATISTICS[DEFAULT_STATISTIC]: 1000.0 + 10 * i}) for i in range(5)]
    row = latency_table(launches).iloc[0]
    assert DEFAULT_STATISTIC in LATENCY_MS
    assert row[LATENCY_MS] == pytest.approx(1.020)  # the median of the launches' figure
    assert Thresholds().statistic == DEFAULT_STATISTIC
    assert f"launch {DEFAULT_STATISTIC}" in " ".join(latency_header(CompareResult("a", "b", Thresholds())))
    history = format_history([HistoryRow("k", "r", "2026-12-03T00:00:00", [], 5, 1.02, 1.0)])
    assert LATENCY_MS in history


def test_history_marks_the_run_where_the_level_changed_and_draws_it(tmp_path):
    """`bench history --plot`: eight nights, the last four 10 % slower: the fifth night starts
    a new level (change points by ruptures), in the text, the JSON rows, the PNG and the HTML
    report's trend (issue 14)."""
    from harness.results.history import format_history, history_rows, write_history_plot

    store = Store(tmp_path / "b.db")
    rng = np.random.default_rng(0)
    for night in range(8):
        run_id = f"2026120{night + 1}-000000-0000"
        store.start_run(run_id, f"2026-12-0{night + 1}T00:00:00Z", "0", "host", {})
        level = 1000.0 * (1.10 if night >= 4 else 1.0)
        for trial in range(6):
            value = level * float(np.exp(rng.normal(0, 0.01)))
            store.add_measurement(Measurement(
                run_id=run_id, device_serial="127.0.0.1:1", device_id="VIRT0001", adb_server="s",
                model_name="m", variant="baseline", status="ok", kind="timing", trial=trial,
                inference_avg_us=value * 1.2, inference_min_us=value))
        store.finish_run(run_id, f"2026-12-0{night + 1}T00:05:00Z", "ok", 0)
    rows = history_rows(store)
    assert [r.level_change for r in rows] == [False] * 4 + [True] + [False] * 3
    assert all(r.band_low_ms <= r.median_ms <= r.band_high_ms for r in rows)
    assert "<- level changed" in format_history(rows).splitlines()[6]
    png = write_history_plot(rows, tmp_path / "history.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = write_report(store, rows[-1].run_id, tmp_path / "reports")
    assert (out / "trend.png").stat().st_size > 0
    from harness.report.tables import history_frame

    frame = history_frame(store, "m")
    assert list(frame["level change"]) == [False] * 4 + [True] + [False] * 3
    store.close()
