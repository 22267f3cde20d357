"""Run report: `reports/<run-id>/report.md` and `results.csv`, and the same latency table for the terminal."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.results import Measurement
from harness.store import Store

CSV_EXCLUDED = ("output_tail", "device_props_json")


def measurements_frame(measurements: list[Measurement]) -> pd.DataFrame:
    return pd.DataFrame([m.to_dict() for m in measurements])


def latency_table(measurements: list[Measurement]) -> pd.DataFrame:
    """Device x variant (x delegate x threads): medians over the timing launches (ms), their
    count, and peak memory from the separate peak-memory launch (else the tool's footprint)."""
    frame = measurements_frame([m for m in measurements if m.status == "ok"])
    columns = ["device", "variant", "delegate", "threads", "trials", "avg ms", "std ms",
               "init ms", "first ms", "memory MB", "model MB"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame["device"] = [f"{s} ({m})" if m else s
                       for s, m in zip(frame["device_serial"], frame["device_model"])]
    frame["delegate"] = frame["delegate_choice"].fillna("default")
    keys = ["device", "variant", "delegate", "num_threads"]
    rows = []
    for key, group in frame.groupby(keys, sort=False, dropna=False):
        timing = group[group["kind"] == "timing"]
        memory = group[group["kind"] == "peak_memory"]["peak_memory_mb"].dropna()
        if memory.empty:
            memory = timing["memory_overall_mb"].dropna()
        source = timing if not timing.empty else group
        rows.append({
            "device": key[0], "variant": key[1], "delegate": key[2], "threads": key[3],
            "trials": len(timing),
            "avg ms": _median_ms(source["inference_avg_us"]),
            "std ms": _median_ms(source["inference_std_us"]),
            "init ms": _median_ms(source["init_us"]),
            "first ms": _median_ms(source["first_inference_us"]),
            "memory MB": float(memory.max()) if not memory.empty else None,
            "model MB": float(source["model_size_bytes"].iloc[0]) / 1e6,
        })
    table = pd.DataFrame(rows, columns=columns)
    # Dimensions nobody varied say nothing; keep the table narrow.
    for column in ("delegate", "threads"):
        if table[column].nunique(dropna=False) <= 1:
            table = table.drop(columns=column)
    return table


def _median_ms(values: pd.Series):
    values = values.dropna()
    return float(values.median()) / 1000.0 if not values.empty else None


def variants_table(artifacts) -> pd.DataFrame:
    """Per variant: parameters, MACs, .tflite and zip bytes, accuracy and its change vs baseline.

    Accepts Artifacts or the artifact dicts the store returns (name, variant, size_bytes, metadata).
    """
    rows, deltas = [], []
    for a in artifacts:
        a = a if isinstance(a, dict) else a.to_json_dict()
        meta = a.get("metadata") or {}
        acc = meta.get("accuracy") or {}
        base = acc.get("top1") if meta.get("parent") is None else acc.get("baseline_top1")
        deltas.append(None if acc.get("top1") is None or base is None
                      else 100.0 * (acc["top1"] - base))
        rows.append({
            "variant": a["variant"],
            "params": meta.get("params"),
            "MACs": meta.get("macs"),
            "tflite bytes": a["size_bytes"],
            "zip bytes": meta.get("zip_bytes"),
            "top-1 %": _pct(acc.get("top1")),
            "top-5 %": _pct(acc.get("top5")),
            "agreement %": _pct(acc.get("agreement")),
            "after prune %": _pct(_after_prune(meta)),
            "parity max diff": (meta.get("parity") or {}).get("max_abs_diff"),
        })
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame.insert(6, "Δ top-1", deltas)
    # Columns that no variant fills say nothing; drop them.
    return frame.dropna(axis=1, how="all")


def _after_prune(meta: dict):
    """Accuracy right after the last pruning step, before fine-tuning recovered it."""
    steps = (meta.get("prune") or {}).get("steps") or []
    return steps[-1].get("accuracy_after_prune") if steps else None


def _pct(value):
    return None if value is None else 100.0 * value


def failures_table(measurements: list[Measurement]) -> pd.DataFrame:
    """Launches that are not ok: failed, crashed, timed out, invalid (hygiene), skipped."""
    rows = [{"device": m.device_serial, "variant": m.variant, "kind": m.failure_kind,
             "status": m.status, "trial": m.trial, "attempt": m.attempt, "reason": m.error}
            for m in measurements if m.status != "ok"]
    return pd.DataFrame(rows, columns=["device", "variant", "kind", "status", "trial",
                                       "attempt", "reason"])


def format_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(no successful measurements)"
    return frame.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-")


def _markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured table without the optional `tabulate` dependency."""
    if frame.empty:
        return "_none_\n"
    def cell(v):
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return "-"
        text = f"{v:.3f}" if isinstance(v, float) else str(v)
        return text.replace("|", "\\|").replace("\n", " ")
    head = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


def write_report(store: Store, run_id: str, reports_dir: Path) -> Path:
    run = store.run(run_id)
    measurements = store.measurements(run_id)
    out = Path(reports_dir) / run_id
    out.mkdir(parents=True, exist_ok=True)
    # The CSV is for spreadsheets: one line per measurement, without the bulky raw fields
    # (output tail, full props), which stay in the store.
    measurements_frame(measurements).drop(columns=list(CSV_EXCLUDED), errors="ignore").to_csv(
        out / "results.csv", index=False)
    latency, failures = latency_table(measurements), failures_table(measurements)
    lines = [
        f"# bench run {run_id}",
        "",
        f"- started: {run['started_at']}, finished: {run['finished_at']}, status: **{run['status']}**",
        f"- tool: bench {run['tool_version']} on {run['host']}",
        f"- bytes pushed: {run['bytes_pushed']}",
        "",
        "## Latency",
        "",
        _markdown(latency),
        "## Variants",
        "",
        _markdown(variants_table(store.artifacts(sorted({m.artifact_sha256 for m in measurements if m.artifact_sha256})))),
        "Sparsity buys size, not speed: compare `zip bytes` (what a compressed download costs) with "
        "`tflite bytes` and latency. Structured pruning shrinks parameters, MACs and latency.",
        "",
        "## Failed, invalid or skipped launches",
        "",
        _markdown(failures),
        "## Provenance",
        "",
    ]
    for m in measurements:
        lines.append(f"- {m.device_serial} ({m.adb_server}): model {m.device_model}, ABI "
                     f"{m.device_abi}, SDK {m.device_sdk}, battery {m.battery_pct} %, "
                     f"temperature {m.temperature_c} °C; artifact {m.model_name}-{m.variant} "
                     f"sha256 {m.artifact_sha256}; benchmark_model sha256 {m.binary_sha256}")
    virtual = [m for m in measurements if m.device_abi == "x86_64" and m.device_model
               and "virtual" in m.device_model.lower()]
    if virtual:
        lines += ["", "Virtual devices run benchmark_model with the LiteRT interpreter on the "
                  "host CPU: their latencies are real host-CPU measurements, not phone figures."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out
