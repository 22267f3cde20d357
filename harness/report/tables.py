"""The report's tables (pandas): latency, size, accuracy, failures, provenance, history.

Every table is computed from the store's rows only, so the HTML, Markdown and terminal views
of a run always show the same numbers.
"""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pandas as pd

from harness.escape import csv_cell
from harness.results.schema import Measurement, final_records
from harness.results.statistic import DEFAULT_STATISTIC, LATENCY_MS, STATISTICS, launch_value_us

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
    """The ok launches of the run's own plan (not `compare --confirm`'s re-runs, nor the
    baseline's launches paired with it), with the columns latency rows are grouped by."""
    frame = measurements_frame([m for m in measurements if m.status == "ok"
                                and m.kind not in ("confirm", "paired")])
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

    LATENCY_MS (e.g. `min ms`) is the median over trials of each launch's figure of the one
    per-launch statistic (harness.results.statistic), `p90 ms` the 90th percentile of those
    figures and `CV %` their spread (None for a single trial); peak memory comes from the
    separate peak-memory launch (else the timing launches' overall footprint).
    """
    frame = _keyed_frame(measurements)
    columns = ["device", "variant", "delegate", "threads", "trials", LATENCY_MS, "p90 ms", "CV %",
               "init ms", "first ms", "peak MB", "delegated nodes", "model MB"]
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
        stats = trial_stats_us(_launch_values_us(source))
        rows.append({
            "device": key[0], "variant": key[1], "delegate": key[2], "threads": key[3],
            "trials": len(timing),
            LATENCY_MS: _ms(stats["median_us"]), "p90 ms": _ms(stats["p90_us"]),
            "CV %": stats["cv_pct"],
            "init ms": _median_ms(source["init_us"]),
            "first ms": _median_ms(source["first_inference_us"]),
            "peak MB": float(memory.max()) if not memory.empty else None,
            "delegated nodes": _delegated(source),
            "model MB": _model_mb(source),
        })
    return _drop_unvaried(pd.DataFrame(rows, columns=columns))


def _launch_values_us(frame: pd.DataFrame) -> pd.Series:
    """Each launch's figure of the one statistic; its mean where it printed none."""
    column = STATISTICS[DEFAULT_STATISTIC]
    values = frame[column] if column in frame else frame["inference_avg_us"]
    return values.where(values.notna(), frame["inference_avg_us"])


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
    """(device, variant) -> every ok timing trial's figure (the one statistic) in ms: the
    plots' raw data."""
    samples: dict[tuple[str, str], list[float]] = {}
    for m in measurements:
        value = launch_value_us(m)
        if m.status == "ok" and m.kind == "timing" and value is not None:
            key = (device_label(m.device_id or m.device_serial, m.device_model), m.variant)
            samples.setdefault(key, []).append(value / 1000.0)
    return samples


# -- variants: size and accuracy ------------------------------------------------------------------
def variants_table(artifacts, max_abs_diff: bool = False) -> pd.DataFrame:
    """Per variant: parameters, MACs, .tflite and zip bytes, accuracy and its change vs baseline
    (`Δ top-1 pt`, percentage points), and the parity of the .tflite with its reference: the
    worst difference relative to the output scale, and the worst sample's cosine similarity.

    `max_abs_diff`: also the parity's max absolute difference (`parity max diff`, in output
    units), which results.json keeps; the views show the relative figure, which does not round
    to 0 for small outputs.

    Accepts Artifacts or the artifact dicts the store returns (name, variant, size_bytes, metadata).
    """
    rows = []
    for a in artifacts:
        a = a if isinstance(a, dict) else a.to_json_dict()
        meta = a.get("metadata") or {}
        acc = meta.get("accuracy") or {}
        parity = meta.get("parity") or {}
        rows.append({
            "variant": a["variant"],
            "params": meta.get("params"),
            "MACs": meta.get("macs"),
            "heads": _heads_text(meta.get("heads_per_layer")),
            "tflite bytes": a["size_bytes"],
            "zip bytes": meta.get("zip_bytes"),
            "top-1 %": _pct(acc.get("top1")),
            "top-5 %": _pct(acc.get("top5")),
            "Δ top-1 pt": top1_delta_pt(meta),
            "agreement %": _pct(acc.get("agreement")),
            "after prune %": _pct(_after_prune(meta)),
            "ticket rewound to": (meta.get("lottery_ticket") or {}).get("rewind_point"),
            "parity rel diff": parity.get("relative_diff"),
            "parity cosine": parity.get("cosine_similarity"),
            **({"parity max diff": parity.get("max_abs_diff")} if max_abs_diff else {}),
        })
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    # Columns that no variant fills say nothing; drop them.
    return frame.dropna(axis=1, how="all")


def _heads_text(heads: list[int] | None) -> str | None:
    """Attention heads per layer, `4/4` (a transformer's variants; None for other models)."""
    return "/".join(str(h) for h in heads) if heads else None


SIZE_COLUMNS = ("variant", "params", "MACs", "heads", "tflite bytes", "zip bytes")
ACCURACY_COLUMNS = ("variant", "top-1 %", "top-5 %", "Δ top-1 pt", "agreement %",
                    "after prune %", "parity rel diff", "parity cosine")


def top1_delta_pt(meta: dict):
    """Top-1 change vs the baseline in percentage points (0 for the baseline itself); None
    without labels."""
    acc = meta.get("accuracy") or {}
    base = acc.get("top1") if meta.get("parent") is None else acc.get("baseline_top1")
    return None if acc.get("top1") is None or base is None else 100.0 * (acc["top1"] - base)


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


# -- accuracy on the device -----------------------------------------------------------------------
DEVICE_ACCURACY_COLUMNS = ["device", "variant", "delegate", "samples", "failed",
                           "device top-1 %",
                           "host top-1 %", "device-host pt", "agreement with host %",
                           "host max abs", "host max rel", "host cosine",
                           "agreement with baseline %", "delegated nodes", "seconds", "flag"]


def device_accuracy_table(measurements: list[Measurement]) -> pd.DataFrame:
    """Per variant, device and delegate: what the device computed for real samples, against
    the labels, the host's LiteRT run of the same file (`host cosine`: the least similar
    sample) and the torch baseline; `flag` says why a delegate is not to be trusted."""
    rows = []
    for m in final_records(measurements):
        if m.kind != "accuracy" or not m.accuracy_samples:
            continue
        delta = (None if m.device_top1 is None or m.host_top1 is None
                 else 100.0 * (m.device_top1 - m.host_top1))
        rows.append({
            "device": device_label(m.device_id or m.device_serial, m.device_model),
            "variant": m.variant, "delegate": m.delegate_choice or "default",
            "samples": m.accuracy_samples, "failed": m.accuracy_samples_failed or 0,
            "device top-1 %": _pct(m.device_top1), "host top-1 %": _pct(m.host_top1),
            "device-host pt": delta, "agreement with host %": _pct(m.host_agreement),
            "host max abs": m.host_max_abs_diff, "host max rel": m.host_max_rel_diff,
            "host cosine": m.host_cosine_min,
            "agreement with baseline %": _pct(m.baseline_agreement),
            "delegated nodes": (f"{m.nodes_delegated}/{m.nodes_total}"
                                if m.nodes_total else None),
            "seconds": m.launch_seconds, "flag": m.accuracy_flag or ""})
    return pd.DataFrame(rows, columns=DEVICE_ACCURACY_COLUMNS)


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
            "min temp °C": min(temps) if temps else None,
            "max temp °C": max(temps) if temps else None,
            "battery %": (f"{min(batteries)}–{max(batteries)}" if batteries else None),
        })
    return pd.DataFrame(rows, columns=["device", "adb serial", "server", "model", "ABI", "SDK",
                                       "build fingerprint", "min temp °C", "max temp °C",
                                       "battery %"])


CONDITION_COLUMNS = ["device", "benchmark_model", "rooted", "perf mode", "CPU pinning",
                     "governor", "big cores", "temperature gate"]


def conditions_table(measurements: list[Measurement]) -> pd.DataFrame:
    """Per device: how its numbers were obtained (harness.targets.tuning's DeviceConditions and
    the tool that ran): each cell what was found and, where it matters, why."""
    rows = []
    by_device: dict[str, list[Measurement]] = {}
    for m in measurements:
        by_device.setdefault(m.device_id or m.device_serial, []).append(m)
    for device, ms in by_device.items():
        with_conditions = next((m for m in ms if m.conditions_json), None)
        if with_conditions is None:
            continue
        try:
            conditions = json.loads(with_conditions.conditions_json)
        except json.JSONDecodeError:
            continue
        notes = conditions.get("notes", {})
        tool = next((m for m in ms if m.tool_flavour), None)
        mask = conditions.get("cpu_mask")
        sources = sorted({s for m in ms for s in _gate_sources(m)})
        rows.append({
            "device": device,
            "benchmark_model": (f"{tool.tool_flavour} {tool.tool_version or '(no version)'}"
                                if tool else "unknown"),
            "rooted": f"{conditions.get('rooted')} ({notes.get('root', '')})",
            "perf mode": f"{conditions.get('perf_mode')}: {notes.get('perf_mode', '')}",
            "CPU pinning": f"taskset {mask}" if mask else f"unpinned: {notes.get('cpu_pinning', '')}",
            "governor": f"{conditions.get('governor')} ({notes.get('governor', '')})",
            "big cores": notes.get("topology"),
            "temperature gate": ", ".join(sources) if sources else "no skin or battery reading",
        })
    return pd.DataFrame(rows, columns=CONDITION_COLUMNS)


def _gate_sources(m: Measurement) -> list[str]:
    out = []
    for raw in (m.telemetry_before_json, m.telemetry_after_json):
        try:
            source = (json.loads(raw) or {}).get("gate_source") if raw else None
        except json.JSONDecodeError:
            source = None
        if source:
            out.append(source)
    return out


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
            # The gated temperature (skin and battery); older snapshots have only the hottest.
            key = "gate_temp_c" if "gate_temp_c" in snap else "max_temp_c"
            for name in (key, "battery_temp_c"):
                if snap.get(name) is not None:
                    temps.append(float(snap[name]))
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

    One row per run and key: run_id, started_at, device, variant, LATENCY_MS (median over
    trials of the one per-launch statistic).
    """
    rows = []
    for run in store.runs():
        if until_started_at is not None and run["started_at"] > until_started_at:
            continue
        samples: dict[tuple[str, str], list[float]] = {}
        for m in store.measurements(run["run_id"]):
            if model_name is not None and m.model_name != model_name:
                continue
            value = launch_value_us(m)
            if m.status == "ok" and m.kind == "timing" and value is not None:
                # By the stable identity: a lab restarted under new adb serials is one line.
                device = m.device_id or m.device_serial
                samples.setdefault((device, m.variant), []).append(value)
        for (device, variant), values in samples.items():
            low, high = np.percentile(values, [10, 90]) / 1000.0
            rows.append({"run_id": run["run_id"], "started_at": run["started_at"],
                         "device": device, "variant": variant,
                         LATENCY_MS: float(np.median(values)) / 1000.0,
                         "p10 ms": float(low), "p90 ms": float(high)})
    frame = pd.DataFrame(rows, columns=["run_id", "started_at", "device", "variant", LATENCY_MS,
                                        "p10 ms", "p90 ms"])
    frame["level change"] = False
    from harness.results.changes import change_points

    for _key, group in frame.groupby(["device", "variant"], sort=False):
        for index in change_points(list(group[LATENCY_MS])):
            frame.loc[group.index[index], "level change"] = True
    return frame


# -- display: one rounding rule per unit, shared by the terminal, Markdown and HTML ---------------
# Counts and sizes in bytes are whole numbers, whatever dtype a missing value left the column in.
INTEGER_COLUMNS = ("trials", "trial", "attempt", "threads", "params", "MACs", "SDK", "samples",
                   "failed")
MISSING = "-"


def is_missing(value) -> bool:
    """None, NaN, pd.NA or NaT: a cell with nothing to show."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or an array is a value, not a missing one
        return False


def fmt_ms(value: float) -> str:
    """Latency in ms to 3 significant digits, never in exponent form: 0.0331, 1.05, 12.3, 1235."""
    if value == 0 or not math.isfinite(value):
        return f"{value:.0f}" if value == 0 else str(value)
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def fmt_rel(value: float) -> str:
    """A small ratio (parity relative difference) to 3 significant digits: 1.70e-04, never 0.000."""
    return "0" if value == 0 else f"{value:.2e}"


def fmt_cosine(value: float) -> str:
    """A cosine similarity with the digits that tell it from 1: two significant digits of its
    distance from 1, so 0.99999768 is 0.9999977, 0.95 is 0.950, 0.9999999999995 is
    `1 - 5.0e-13` and only 1.0 itself is 1."""
    distance = 1.0 - value
    if distance <= 0 or not math.isfinite(value):
        return f"{value:g}"
    exponent = int(f"{distance:.1e}".split("e")[1])  # of the distance rounded to 2 digits
    decimals = max(2, 1 - exponent)
    if decimals > 8:  # a run of nines nobody can count: say how far from 1 it is
        return f"1 - {distance:.1e}"
    return f"{value:.{decimals}f}"


def format_value(column: str, value) -> str:
    """One cell as text, rounded to what its unit means; `-` for a missing value.

    ms: 3 significant digits; MB: 3 decimals; bytes and counts: whole numbers; %, °C and pt
    (percentage points, signed): 1 decimal; parity: see fmt_rel and fmt_cosine."""
    if is_missing(value):
        return MISSING
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        return str(value)
    value = float(value) if isinstance(value, (float, np.floating)) else int(value)
    if column.endswith(" bytes") or column in INTEGER_COLUMNS:
        return str(int(round(value)))
    if column.endswith(" ms"):
        return fmt_ms(value)
    if column.endswith(" MB"):
        return f"{value:.3f}"
    if column.endswith((" %", " °C")):
        return f"{value:.1f}"
    if column.endswith(" pt"):
        return f"{value:+.1f}"
    if column in ("parity cosine", "host cosine"):
        return fmt_cosine(value)
    if column.startswith(("parity ", "host max ")):
        return fmt_rel(value)
    return str(value) if isinstance(value, int) else f"{value:.3f}"


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as the text every view shows (format_value per cell); the numbers themselves
    stay in the frame, for results.json and the plots."""
    return pd.DataFrame({column: [format_value(str(column), v) for v in frame[column]]
                         for column in frame.columns}, columns=frame.columns)


def format_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(no successful measurements)"
    return display_frame(frame).to_string(index=False)
