"""The run report: files, table numbers, HTML escaping, plots, and a headless Chromium render.

The store is filled with realistic rows (what the lab writes for 2 devices x 2 variants with
several trials, a failed and an invalid launch) rather than by a real run, which takes minutes.
"""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from harness.report import latency_table, trial_stats_us, write_report
from harness.report.plots import pareto_frontier
from harness.results import Measurement
from harness.store import Store

EVIL_VARIANT = "<script>alert(1)</script>&int8"
DEVICES = {"emu-A1": "Virtual Pixel", "emu-B2": "Virtual Galaxy"}
# Trial averages (µs) per (device, variant): distinct values so medians and p90s are checkable.
TRIALS_US = {
    ("emu-A1", "baseline"): [1000.0, 1100.0, 1050.0, 1300.0, 980.0],
    ("emu-A1", EVIL_VARIANT): [400.0, 420.0, 410.0, 430.0, 405.0],
    ("emu-B2", "baseline"): [2000.0, 2100.0, 2050.0, 2500.0, 1990.0],
    ("emu-B2", EVIL_VARIANT): [800.0, 820.0, 810.0, 900.0, 805.0],
}
SHA = {"baseline": "a" * 64, EVIL_VARIANT: "b" * 64}
SIZE = {"baseline": 4_000_000, EVIL_VARIANT: 1_000_000}


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
                         "agreement": 1.0 if variant == "baseline" else 0.97, "baseline_top1": 0.80}})
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
        assert row["avg ms"] == pytest.approx(np.median(values) / 1000)
        assert row["p90 ms"] == pytest.approx(np.percentile(values, 90) / 1000)
        assert row["CV %"] == pytest.approx(values.std(ddof=1) / values.mean() * 100)
        # The peak-memory launch's own latency (99.999 ms) must not leak into timing figures.
        assert row["avg ms"] < 3
        assert row["peak MB"] == (12.5 if variant == "baseline" else 6.25)
        assert row["delegated"] == "3/10"
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
                   "bench/emu-A1/virt:14", "c" * 64, "bytes pushed: 0", "![Median latency"):
        assert needle in md, needle
    # Δ top-1 of the derived variant: 78 - 80 = -2 points.
    assert "| -2.000 |" in md


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
    out, _ = report_dir
    url = (out / "index.html").resolve().as_uri()
    common = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True,
                         timeout=180, check=True).stdout
    # The parsed DOM holds every table and image, and the escaped name as text, not as a tag.
    assert dom.count("<table") == 6
    assert dom.count("<img") == 4
    assert "<script>alert" not in dom and "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
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
