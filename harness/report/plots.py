"""The report's plots (matplotlib, Agg: no display needed), each written as a PNG.

Each plot function writes one file and returns its path, or None when the run has nothing to
draw (e.g. no accuracy figures, or no history), so the report simply leaves that plot out.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: CI and the lab host have no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from harness.escape import plot_text  # noqa: E402

DPI = 110


def _variant_colours(variants) -> dict[str, str]:
    """The same colour for a variant in every panel and plot."""
    return {v: f"C{i % 10}" for i, v in enumerate(dict.fromkeys(variants))}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def latency_bars(samples_ms: dict[tuple[str, str], list[float]], path: Path) -> Path | None:
    """One panel per device: median trial latency per variant, error bars from min to max trial,
    and every trial as a dot so the spread is visible at a glance."""
    if not samples_ms:
        return None
    devices = list(dict.fromkeys(device for device, _ in samples_ms))
    colour = _variant_colours(variant for _, variant in samples_ms)
    fig, axes = plt.subplots(1, len(devices), figsize=(max(6.0, 4.5 * len(devices)), 5.0),
                             squeeze=False)
    for ax, device in zip(axes[0], devices):
        variants = [v for d, v in samples_ms if d == device]
        for i, variant in enumerate(variants):
            values = pd.Series(samples_ms[(device, variant)])
            median = float(values.median())
            ax.bar(i, median, color=colour[variant], label=plot_text(variant), alpha=0.85)
            ax.errorbar(i, median, yerr=[[median - values.min()], [values.max() - median]],
                        fmt="none", ecolor="black", capsize=5)
            ax.scatter([i] * len(values), values, color="black", s=10, zorder=3)
        ax.set_xticks(range(len(variants)), [plot_text(v) for v in variants], rotation=20,
                      ha="right")
        ax.set_title(f"Latency on {plot_text(device)}")
        ax.set_ylabel("inference latency (ms)")
    # One legend for all panels, below them, so it never hides a bar.
    legend = {}
    for ax in axes[0]:
        legend.update(zip(*reversed(ax.get_legend_handles_labels())))
    labels, handles = list(legend), list(legend.values())
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize="small",
               title="variant (bar: median; whiskers: min–max trial; dots: trials)")
    fig.tight_layout(rect=(0, 0.18, 1, 1))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def pareto_frontier(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated: nothing else is both faster (or as fast) and at least
    as accurate, with one strictly better. Latency lower is better, accuracy higher is better."""
    frontier = []
    for i, (lat_i, acc_i) in enumerate(points):
        dominated = any(lat_j <= lat_i and acc_j >= acc_i and (lat_j < lat_i or acc_j > acc_i)
                        for j, (lat_j, acc_j) in enumerate(points) if j != i)
        if not dominated:
            frontier.append(i)
    return sorted(frontier, key=lambda i: points[i][0])


def accuracy_latency_pareto(latency: pd.DataFrame, variants: pd.DataFrame, path: Path) -> Path | None:
    """Top-1 accuracy against median latency, one panel per device, the Pareto frontier drawn."""
    if latency.empty or variants.empty or "top-1 %" not in variants:
        return None
    accuracy = variants.set_index("variant")["top-1 %"].dropna()
    merged = latency[latency["variant"].isin(accuracy.index)].dropna(subset=["avg ms"])
    if merged.empty:
        return None
    devices = list(dict.fromkeys(merged["device"]))
    colour = _variant_colours(merged["variant"])
    fig, axes = plt.subplots(1, len(devices), figsize=(max(6.0, 4.5 * len(devices)), 4.2),
                             squeeze=False)
    for ax, device in zip(axes[0], devices):
        rows = merged[merged["device"] == device]
        points = [(float(r["avg ms"]), float(accuracy[r["variant"]])) for _, r in rows.iterrows()]
        for (lat, acc), variant in zip(points, rows["variant"]):
            ax.scatter(lat, acc, color=colour[variant], s=50, label=plot_text(variant), zorder=3)
        front = pareto_frontier(points)
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "--", color="gray",
                label="Pareto frontier", zorder=2)
        ax.set_title(f"Accuracy vs latency on {plot_text(device)}")
        ax.set_xlabel("median inference latency (ms)")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.legend(fontsize="small")
    return _save(fig, path)


def size_bars(variants: pd.DataFrame, path: Path) -> Path | None:
    """Raw .tflite bytes next to zip bytes per variant: what sparsity buys in a download."""
    if variants.empty or "tflite bytes" not in variants:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(variants) + 2), 4.2))
    positions = range(len(variants))
    ax.bar([p - 0.2 for p in positions], variants["tflite bytes"] / 1e6, width=0.4,
           label=".tflite (raw)")
    if "zip bytes" in variants:
        ax.bar([p + 0.2 for p in positions], variants["zip bytes"].astype(float) / 1e6, width=0.4,
               label="zip (compressed)")
    ax.set_xticks(list(positions), [plot_text(v) for v in variants["variant"]], rotation=20,
                  ha="right")
    ax.set_title("Model size per variant")
    ax.set_ylabel("size (MB)")
    ax.legend()
    return _save(fig, path)


def latency_trend(history: pd.DataFrame, path: Path) -> Path | None:
    """Median latency per (device, variant) over the stored runs; drawn with ≥ 2 runs only."""
    if history.empty or history["run_id"].nunique() < 2:
        return None
    runs = list(dict.fromkeys(history.sort_values("started_at")["run_id"]))
    fig, ax = plt.subplots(figsize=(max(9.0, 0.8 * len(runs) + 7), 4.2))
    for (device, variant), rows in history.groupby(["device", "variant"], sort=False):
        xs = [runs.index(r) for r in rows["run_id"]]
        ax.plot(xs, rows["avg ms"], marker="o", label=plot_text(f"{variant} @ {device}"))
    ax.set_xticks(range(len(runs)), [plot_text(r) for r in runs], rotation=30, ha="right",
                  fontsize="small")
    ax.set_title("Median latency over runs")
    ax.set_xlabel("run")
    ax.set_ylabel("median inference latency (ms)")
    # Outside the axes: with many keys an inside legend would hide the lines.
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return _save(fig, path)
