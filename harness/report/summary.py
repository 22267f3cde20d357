"""One line per device that answers "what did this run find?": the best variant on that device,
how much faster and smaller than the baseline it is, and what it costs in top-1.

    VIRT0001: pruned50-ft10-int8: 6.6x faster, 7.2x smaller, -0.3 pt top-1 (baseline
    0.0330 ms, 0.121 MB, top-1 98.9 %)

"Best" on a device: among the variants other than the baseline with an ok latency there, the
fastest whose top-1 drop from the baseline is at most ACCURACY_BUDGET_PT percentage points. If
none is within the budget, the one that drops least (the line says it is over the budget).
Without labels, the drop is the share of samples whose top-1 differs from the baseline's
(100 - agreement %), which bounds the top-1 change; without any accuracy figure, the fastest.

Latency: per (device, variant) the median over trials of each launch's average latency, as in
the latency table; when a run varied delegates or threads, the fastest setting's median.
Size: the .tflite bytes of the artifacts.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from harness.results.statistic import launch_value_us
from harness.report.tables import fmt_ms, top1_delta_pt
from harness.results.schema import Measurement

ACCURACY_BUDGET_PT = 1.0  # largest top-1 drop (percentage points) a "best" variant may cost


@dataclass(frozen=True)
class DeviceSummary:
    device_id: str  # stable identity (ro.serialno), as in the tables
    serial: str  # adb serial(s) it was reached under
    name: str | None  # device model
    baseline_variant: str | None = None
    baseline_ms: float | None = None
    baseline_mb: float | None = None  # .tflite size, 1e6 bytes
    baseline_top1_pct: float | None = None
    best_variant: str | None = None
    best_ms: float | None = None
    speedup_x: float | None = None  # baseline ms / best ms
    size_ratio_x: float | None = None  # baseline bytes / best bytes
    top1_delta_pt: float | None = None  # best's top-1 minus the baseline's, percentage points
    agreement_pct: float | None = None  # best's top-1 agreement with the baseline (no labels)
    over_budget: bool = False
    budget_pt: float = ACCURACY_BUDGET_PT
    variants_measured: int = 0  # variants with an ok latency on this device
    baseline_in_run: bool = False

    @property
    def line(self) -> str:
        head = f"{self.device_id}: "
        if self.variants_measured == 0:
            return head + "no successful latency measurement (see the failures)"
        if self.baseline_ms is None:
            why = ("no baseline in this run" if not self.baseline_in_run
                   else "the baseline has no successful latency on this device")
            return (head + f"{why}, so nothing to compare with (fastest: {self.best_variant} "
                    f"{fmt_ms(self.best_ms)} ms)")
        if self.best_variant is None:
            return head + f"{self._baseline_figures()} (no other variant to compare)"
        parts = [f"{fmt_ms(self.best_ms)} ms"]
        if self.speedup_x is not None:
            parts[0] = _ratio(self.speedup_x, "faster", "slower")
        if self.size_ratio_x is not None:
            parts.append(_ratio(self.size_ratio_x, "smaller", "larger"))
        parts.append(self._accuracy())
        return (head + f"{self.best_variant}: {', '.join(parts)} "
                f"(baseline {self._baseline_figures()})")

    def _baseline_figures(self) -> str:
        figures = [f"{fmt_ms(self.baseline_ms)} ms"]
        if self.baseline_mb is not None:
            figures.append(f"{self.baseline_mb:.3f} MB")
        if self.baseline_top1_pct is not None:
            figures.append(f"top-1 {self.baseline_top1_pct:.1f} %")
        text = ", ".join(figures)
        return text if self.best_variant is not None else f"{self.baseline_variant} {text}"

    def _accuracy(self) -> str:
        if self.top1_delta_pt is not None:
            text = f"{self.top1_delta_pt:+.1f} pt top-1"
        elif self.agreement_pct is not None:
            text = f"{self.agreement_pct:.1f} % agreement"
        else:
            return "accuracy not measured"
        return text + (f" (over the {self.budget_pt:.1f} pt budget)" if self.over_budget else "")


def _ratio(value: float, better: str, worse: str) -> str:
    return f"{value:.1f}x {better}" if value >= 1 or value <= 0 else f"{1 / value:.1f}x {worse}"


def device_summaries(store, run_id: str) -> list[DeviceSummary]:
    """The summary of each device of a stored run (e.g. for the CLI after `bench run`)."""
    measurements = store.measurements(run_id)
    shas = sorted({m.artifact_sha256 for m in measurements if m.artifact_sha256})
    return summarise(measurements, store.artifacts(shas))


def summarise(measurements: list[Measurement], artifacts) -> list[DeviceSummary]:
    """One DeviceSummary per device seen in `measurements`, in the order they appear.

    `artifacts`: Artifacts or the artifact dicts the store returns."""
    info = _variant_info(artifacts)
    measured = list(dict.fromkeys(m.variant for m in measurements))
    baseline = next((v for v, i in info.items() if i["parent"] is None), None)
    if baseline is None and "baseline" in measured:
        baseline = "baseline"
    latency = _median_ms(measurements)
    summaries = []
    for device, ms in _by_device(measurements).items():
        times = latency.get(device, {})
        base = info.get(baseline, {})
        common = dict(device_id=device, serial=", ".join(sorted({m.device_serial for m in ms})),
                      name=next((m.device_model for m in ms if m.device_model), None),
                      variants_measured=len(times), baseline_in_run=baseline in measured,
                      baseline_variant=baseline)
        if not times:
            summaries.append(DeviceSummary(**common))
            continue
        if baseline not in times:
            fastest = min(times, key=times.get)
            summaries.append(DeviceSummary(**common, best_variant=fastest, best_ms=times[fastest]))
            continue
        base_bytes = base.get("bytes") or _model_bytes(ms, baseline)
        figures = dict(baseline_ms=times[baseline],
                       baseline_mb=base_bytes / 1e6 if base_bytes else None,
                       baseline_top1_pct=base.get("top1_pct"))
        others = [v for v in times if v != baseline]
        if not others:
            summaries.append(DeviceSummary(**common, **figures))
            continue
        best, over = _best(others, times, info)
        best_bytes = info.get(best, {}).get("bytes") or _model_bytes(ms, best)
        summaries.append(DeviceSummary(
            **common, **figures, best_variant=best, best_ms=times[best],
            speedup_x=times[baseline] / times[best] if times[best] > 0 else None,
            size_ratio_x=base_bytes / best_bytes if base_bytes and best_bytes else None,
            top1_delta_pt=info.get(best, {}).get("delta_pt"),
            agreement_pct=info.get(best, {}).get("agreement_pct"), over_budget=over))
    return summaries


def _best(candidates: list[str], times: dict[str, float], info: dict) -> tuple[str, bool]:
    """(best variant, whether it is over the accuracy budget); see the module's docstring."""
    drops = {v: _drop_pt(info.get(v, {})) for v in candidates}
    known = [v for v in candidates if drops[v] is not None]
    # Rounded: 80 % - 79 % is 1.0000000000000009 points in floats, which is within 1.0.
    within = [v for v in known if round(drops[v], 6) <= ACCURACY_BUDGET_PT]
    if within:
        return min(within, key=times.get), False
    if known:
        return min(known, key=lambda v: (drops[v], times[v])), True
    return min(candidates, key=times.get), False


def _drop_pt(variant: dict) -> float | None:
    if variant.get("delta_pt") is not None:
        return -variant["delta_pt"]
    if variant.get("agreement_pct") is not None:
        return 100.0 - variant["agreement_pct"]
    return None


def _variant_info(artifacts) -> dict[str, dict]:
    """variant -> parent, .tflite bytes, top-1 %, Δ top-1 pt and agreement % (first artifact of a
    name wins, as in the tables)."""
    info: dict[str, dict] = {}
    for a in artifacts:
        a = a if isinstance(a, dict) else a.to_json_dict()
        meta = a.get("metadata") or {}
        acc = meta.get("accuracy") or {}
        info.setdefault(a["variant"], {
            "parent": meta.get("parent"), "bytes": a.get("size_bytes"),
            "top1_pct": None if acc.get("top1") is None else 100.0 * acc["top1"],
            "delta_pt": top1_delta_pt(meta),
            "agreement_pct": None if acc.get("agreement") is None else 100.0 * acc["agreement"]})
    return info


def _by_device(measurements: list[Measurement]) -> dict[str, list[Measurement]]:
    by: dict[str, list[Measurement]] = {}
    for m in measurements:
        by.setdefault(m.device_id or m.device_serial, []).append(m)
    return by


def _median_ms(measurements: list[Measurement]) -> dict[str, dict[str, float]]:
    """device -> variant -> median trial latency (ms) of its fastest (delegate, threads) setting,
    over the run's own ok timing launches."""
    samples: dict[tuple, list[float]] = {}
    for m in measurements:
        value = launch_value_us(m)  # the one per-launch statistic
        if m.status == "ok" and m.kind == "timing" and value is not None and value == value:
            key = (m.device_id or m.device_serial, m.variant, m.delegate_choice, m.num_threads)
            samples.setdefault(key, []).append(value / 1000.0)
    latency: dict[str, dict[str, float]] = {}
    for (device, variant, _, _), values in samples.items():
        median = statistics.median(values)
        per_device = latency.setdefault(device, {})
        per_device[variant] = min(median, per_device.get(variant, median))
    return latency


def _model_bytes(ms: list[Measurement], variant: str) -> int | None:
    """The .tflite size a launch of `variant` recorded, when the store has no artifact for it."""
    return next((m.model_size_bytes for m in ms if m.variant == variant and m.model_size_bytes),
                None)
