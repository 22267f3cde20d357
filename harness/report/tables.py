"""The report's tables (pandas): latency, size, accuracy, failures, provenance, history.

Every table is computed from the store's rows only, so the HTML, Markdown and terminal views
of a run always show the same numbers.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd

from harness.escape import csv_cell
from harness.results import Measurement

CSV_EXCLUDED = ("output_tail", "device_props_json")
# Dimensions of a latency row beyond device x variant; shown only when a run varied them.
OPTIONAL_KEYS = ("delegate", "threads")


def measurements_frame(measurements: list[Measurement]) -> pd.DataFrame:
    return pd.DataFrame([m.to_dict() for m in measurements])


def results_csv(measurements: list[Measurement]) -> str:
    """results.csv, for spreadsheets: one line per measurement, without the bulky raw fields
    (output tail, full props), which stay in the store.

    Text cells that a spreadsheet would run as a formula are neutralised; every text cell is
    quoted and numbers are not, so an importer can tell text from numbers.
    """
    frame = measurements_frame(measurements).drop(columns=list(CSV_EXCLUDED), errors="ignore")
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = frame[column].map(csv_cell, na_action="ignore")
    return frame.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC)


def device_label(serial: str, model: str | None) -> str:
    return f"{serial} ({model})" if model else serial


def _keyed_frame(measurements: list[Measurement]) -> pd.DataFrame:
    """The ok launches of the run's own plan (not `compare --confirm`'s re-runs), with the
    columns latency rows are grouped by."""
    frame = measurements_frame([m for m in measurements if m.status == "ok" and m.kind != "confirm"])
    if frame.empty:
        return frame
    # The device's stable identity (ro.serialno), as in compare and history keys.
    devices = frame["device_id"].fillna(frame["device_serial"])
    frame["device"] = [device_label(s, m) for s, m in zip(devices, frame["device_model"])]
    frame["delegate"] = frame["delegate_choice"].fillna("default")
    frame["threads"] = frame["num_threads"]
    return frame


def trial_stats_us(averages_us) -> dict:
    """Spread over trials of the per-launch average latency: each trial is one sample.

    p90 uses linear interpolation (numpy's default); CV is the sample std (ddof=1) over the mean,
    the usual definition for a handful of trials, and undefined (None) for a single trial.
    """
    values = np.asarray([v for v in averages_us if v is not None and not pd.isna(v)], dtype=float)
    if values.size == 0:
        return {"median_us": None, "p90_us": None, "cv_pct": None, "min_us": None, "max_us": None}
    cv = float(values.std(ddof=1) / values.mean() * 100.0) if values.size > 1 and values.mean() else None
    return {"median_us": float(np.median(values)), "p90_us": float(np.percentile(values, 90)),
            "cv_pct": cv, "min_us": float(values.min()), "max_us": float(values.max())}


def latency_table(measurements: list[Measurement]) -> pd.DataFrame:
    """Device x variant (x delegate x threads when varied), over the ok timing launches.

    `avg ms` is the median of the trials' average latencies, `p90 ms` the 90th percentile of
    those averages and `CV %` their spread; peak memory comes from the separate peak-memory
    launch (else the timing launches' overall footprint).
    """
    frame = _keyed_frame(measurements)
    columns = ["device", "variant", "delegate", "threads", "trials", "avg ms", "p90 ms", "CV %",
               "init ms", "first ms", "peak MB", "delegated", "model MB"]
    if frame.empty:
        return pd.DataFrame(columns=[c for c in columns if c not in OPTIONAL_KEYS])
    rows = []
    for key, group in frame.groupby(["device", "variant", "delegate", "threads"], sort=False,
                                    dropna=False):
        timing = group[group["kind"] == "timing"]
        source = timing if not timing.empty else group
        memory = group[group["kind"] == "peak_memory"]["peak_memory_mb"].dropna()
        if memory.empty:
            memory = timing["memory_overall_mb"].dropna()
        stats = trial_stats_us(source["inference_avg_us"])
        rows.append({
            "device": key[0], "variant": key[1], "delegate": key[2], "threads": key[3],
            "trials": len(timing),
            "avg ms": _ms(stats["median_us"]), "p90 ms": _ms(stats["p90_us"]),
            "CV %": stats["cv_pct"],
            "init ms": _median_ms(source["init_us"]),
            "first ms": _median_ms(source["first_inference_us"]),
            "peak MB": float(memory.max()) if not memory.empty else None,
            "delegated": _delegated(source),
            "model MB": _model_mb(source),
        })
    return _drop_unvaried(pd.DataFrame(rows, columns=columns))


def _drop_unvaried(table: pd.DataFrame) -> pd.DataFrame:
    # Dimensions nobody varied say nothing; keep the table narrow.
    for column in OPTIONAL_KEYS:
        if column in table and table[column].nunique(dropna=False) <= 1:
            table = table.drop(columns=column)
    return table


def _delegated(group: pd.DataFrame) -> str | None:
    """Delegated nodes as "X/Y" from the last launch that reported them."""
    known = group.dropna(subset=["nodes_total"])
    if known.empty:
        return None
    last = known.iloc[-1]
    delegated = 0 if pd.isna(last["nodes_delegated"]) else int(last["nodes_delegated"])
    return f"{delegated}/{int(last['nodes_total'])}"


def _model_mb(group: pd.DataFrame):
    sizes = group["model_size_bytes"].dropna()
    return float(sizes.iloc[0]) / 1e6 if not sizes.empty else None


def _ms(value_us):
    return None if value_us is None else value_us / 1000.0


def _median_ms(values: pd.Series):
    values = values.dropna()
    return float(values.median()) / 1000.0 if not values.empty else None


def trial_samples_ms(measurements: list[Measurement]) -> dict[tuple[str, str], list[float]]:
    """(device, variant) -> every ok timing trial's average latency in ms: the plots' raw data."""
    samples: dict[tuple[str, str], list[float]] = {}
    for m in measurements:
        if m.status == "ok" and m.kind == "timing" and m.inference_avg_us is not None:
            key = (device_label(m.device_id or m.device_serial, m.device_model), m.variant)
            samples.setdefault(key, []).append(m.inference_avg_us / 1000.0)
    return samples


# -- variants: size and accuracy ------------------------------------------------------------------
def variants_table(artifacts) -> pd.DataFrame:
    """Per variant: parameters, MACs, .tflite and zip bytes, accuracy and its change vs baseline.

    Accepts Artifacts or the artifact dicts the store returns (name, variant, size_bytes, metadata).
    """
    rows = []
    for a in artifacts:
        a = a if isinstance(a, dict) else a.to_json_dict()
        meta = a.get("metadata") or {}
        acc = meta.get("accuracy") or {}
        base = acc.get("top1") if meta.get("parent") is None else acc.get("baseline_top1")
        rows.append({
            "variant": a["variant"],
            "params": meta.get("params"),
            "MACs": meta.get("macs"),
            "tflite bytes": a["size_bytes"],
            "zip bytes": meta.get("zip_bytes"),
            "top-1 %": _pct(acc.get("top1")),
            "top-5 %": _pct(acc.get("top5")),
            "Δ top-1": (None if acc.get("top1") is None or base is None
                        else 100.0 * (acc["top1"] - base)),
            "agreement %": _pct(acc.get("agreement")),
            "after prune %": _pct(_after_prune(meta)),
            "parity max diff": (meta.get("parity") or {}).get("max_abs_diff"),
        })
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    # Columns that no variant fills say nothing; drop them.
    return frame.dropna(axis=1, how="all")


SIZE_COLUMNS = ("variant", "params", "MACs", "tflite bytes", "zip bytes")
ACCURACY_COLUMNS = ("variant", "top-1 %", "top-5 %", "Δ top-1", "agreement %", "after prune %",
                    "parity max diff")


def size_table(variants: pd.DataFrame) -> pd.DataFrame:
    return variants[[c for c in SIZE_COLUMNS if c in variants]]


def accuracy_table(variants: pd.DataFrame) -> pd.DataFrame:
    columns = [c for c in ACCURACY_COLUMNS if c in variants]
    return variants[columns] if len(columns) > 1 else pd.DataFrame()


def _after_prune(meta: dict):
    """Accuracy right after the last pruning step, before fine-tuning recovered it."""
    steps = (meta.get("prune") or {}).get("steps") or []
    return steps[-1].get("accuracy_after_prune") if steps else None


def _pct(value):
    return None if value is None else 100.0 * value


# -- failures and provenance ----------------------------------------------------------------------
def failures_table(measurements: list[Measurement]) -> pd.DataFrame:
    """Launches that are not ok: failed, crashed, timed out, invalid (hygiene), skipped."""
    rows = [{"device": m.device_id or m.device_serial, "variant": m.variant,
             "kind": m.failure_kind, "status": m.status, "trial": m.trial, "attempt": m.attempt,
             "reason": m.error}
            for m in measurements if m.status != "ok"]
    return pd.DataFrame(rows, columns=["device", "variant", "kind", "status", "trial",
                                       "attempt", "reason"])


def devices_table(measurements: list[Measurement]) -> pd.DataFrame:
    """Per device: what it is (props) and what it went through (temperature, battery)."""
    rows = []
    by_device: dict[str, list[Measurement]] = {}
    for m in measurements:
        by_device.setdefault(m.device_id or m.device_serial, []).append(m)
    for device, ms in by_device.items():
        props = _first_props(ms)
        temps, batteries = _telemetry_ranges(ms)
        rows.append({
            "device": device, "adb serial": ", ".join(sorted({m.device_serial for m in ms})),
            "server": ms[0].adb_server,
            "model": next((m.device_model for m in ms if m.device_model), None),
            "ABI": next((m.device_abi for m in ms if m.device_abi), None),
            "SDK": next((m.device_sdk for m in ms if m.device_sdk is not None), None),
            "build fingerprint": props.get("ro.build.fingerprint"),
            "min °C": min(temps) if temps else None, "max °C": max(temps) if temps else None,
            "battery %": (f"{min(batteries)}–{max(batteries)}" if batteries else None),
        })
    return pd.DataFrame(rows, columns=["device", "adb serial", "server", "model", "ABI", "SDK",
                                       "build fingerprint", "min °C", "max °C", "battery %"])


def _first_props(ms: list[Measurement]) -> dict:
    for m in ms:
        if m.device_props_json:
            try:
                return json.loads(m.device_props_json) or {}
            except json.JSONDecodeError:
                continue
    return {}


def _telemetry_ranges(ms: list[Measurement]) -> tuple[list[float], list[int]]:
    """Temperatures (°C) and battery levels (%) seen in the snapshots around every launch."""
    temps, batteries = [], []
    for m in ms:
        if m.temperature_c is not None:
            temps.append(float(m.temperature_c))
        if m.battery_pct is not None:
            batteries.append(int(m.battery_pct))
        for raw in (m.telemetry_before_json, m.telemetry_after_json):
            if not raw:
                continue
            try:
                snap = json.loads(raw)
            except json.JSONDecodeError:
                continue
            for key in ("max_temp_c", "battery_temp_c"):
                if snap.get(key) is not None:
                    temps.append(float(snap[key]))
            if snap.get("battery_pct") is not None:
                batteries.append(int(snap["battery_pct"]))
    return temps, batteries


def hashes_table(measurements: list[Measurement]) -> pd.DataFrame:
    """Which exact model file and benchmark_model binary each variant's numbers come from."""
    rows = {}
    for m in measurements:
        row = rows.setdefault((m.model_name, m.variant), {
            "model": m.model_name, "variant": m.variant, "model sha256": None,
            "benchmark_model sha256": set()})
        row["model sha256"] = row["model sha256"] or m.artifact_sha256
        if m.binary_sha256:
            row["benchmark_model sha256"].add(m.binary_sha256)
    for row in rows.values():
        row["benchmark_model sha256"] = ", ".join(sorted(row["benchmark_model sha256"])) or None
    return pd.DataFrame(list(rows.values()), columns=["model", "variant", "model sha256",
                                                       "benchmark_model sha256"])


# -- history --------------------------------------------------------------------------------------
def history_frame(store, model_name: str | None, until_started_at: str | None = None) -> pd.DataFrame:
    """Median latency per (device, variant) in every stored run of the same model, oldest first.

    One row per run and key: run_id, started_at, device, variant, avg ms (median over trials).
    """
    rows = []
    for run in store.runs():
        if until_started_at is not None and run["started_at"] > until_started_at:
            continue
        samples: dict[tuple[str, str], list[float]] = {}
        for m in store.measurements(run["run_id"]):
            if model_name is not None and m.model_name != model_name:
                continue
            if m.status == "ok" and m.kind == "timing" and m.inference_avg_us is not None:
                # By the stable identity: a lab restarted under new adb serials is one line.
                device = m.device_id or m.device_serial
                samples.setdefault((device, m.variant), []).append(m.inference_avg_us)
        for (device, variant), values in samples.items():
            rows.append({"run_id": run["run_id"], "started_at": run["started_at"],
                         "device": device, "variant": variant,
                         "avg ms": float(np.median(values)) / 1000.0})
    return pd.DataFrame(rows, columns=["run_id", "started_at", "device", "variant", "avg ms"])


def format_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(no successful measurements)"
    return frame.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-")
