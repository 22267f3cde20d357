"""The report's plots (matplotlib, Agg: no display needed), each written as a PNG.

Each plot function draws one Figure and returns it, or None when the run has nothing to draw
(e.g. no accuracy figures, or no history), so the report simply leaves that plot out; `save`
writes a Figure as a PNG and closes it.

Figures use constrained layout, and device names (which can be 60 characters for a real phone)
are wrapped and shortened in titles, ticks and legends (`short_name`); the tables keep them
whole. `title_extents` gives where every title of a figure landed, so a test can check that no
two of them overlap.
"""
from __future__ import annotations

import textwrap
from itertools import combinations
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: CI and the lab host have no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from harness.results.statistic import DEFAULT_STATISTIC, LATENCY_MS  # noqa: E402

from harness.escape import plot_text  # noqa: E402

DPI = 110
PANEL_WIDTH_IN = 4.5  # one panel per device
# A device name in a panel title: 3 lines of 24 characters. Even 24 of the widest glyph ("W",
# 1 em) at the titles' 10 pt (250 pt) fit the axes of a 4.5 in (324 pt) panel, so neighbouring
# titles never meet and the outer ones stay inside the figure.
NAME_WIDTH = 24
NAME_LINES = 3
TITLE_SIZE = 10  # pt: panel titles
TICK_NAME = (20, 2)  # variant names under bars: width, lines (the legend has them longer)
LEGEND_NAME = (40, 2)


def short_name(name: str, width: int = NAME_WIDTH, lines: int = NAME_LINES) -> str:
    """`name` for a figure: wrapped at `width` characters on at most `lines` lines, "…" where
    it is cut (long words are broken too), and safe for matplotlib (plot_text)."""
    wrapped = textwrap.wrap(str(name), width=width, max_lines=lines, placeholder=" …",
                            break_long_words=True, break_on_hyphens=True) or [""]
    return plot_text("\n".join(wrapped))


def _variant_colours(variants) -> dict[str, str]:
    """The same colour for a variant in every panel and plot."""
    return {v: f"C{i % 10}" for i, v in enumerate(dict.fromkeys(variants))}


def _panels(count: int, height: float, bars: int = 0) -> tuple[Figure, list]:
    """`count` panels side by side, each wide enough for `bars` labelled bars."""
    width = max(PANEL_WIDTH_IN, 0.9 * bars + 1.5)
    fig, axes = plt.subplots(1, count, figsize=(max(6.0, width * count), height),
                             squeeze=False, layout="constrained")
    return fig, list(axes[0])


def _figure_legend(fig: Figure, axes, title: str | None = None) -> None:
    """One legend for all panels, below them, so it never hides a point or a title."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        # As many columns as fit the figure's width (about 0.08 in per character, small font).
        longest = max(len(line) for label in entries for line in label.split("\n"))
        columns = max(1, min(len(entries), int(fig.get_figwidth() / (0.08 * longest + 0.8))))
        fig.legend(list(entries.values()), list(entries), loc="outside lower center",
                   ncol=columns, fontsize="small", title=title, title_fontsize="small")


def close(fig: Figure) -> None:
    plt.close(fig)


def figure_png(fig: Figure) -> bytes:
    """`fig` as PNG bytes (closed after)."""
    import io

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=DPI, pil_kwargs={"compress_level": 1})
    finally:
        plt.close(fig)
    return buffer.getvalue()


def save(fig: Figure, path: Path) -> Path:
    """Write `fig` as a PNG at `path` and close it."""
    try:
        # zlib level 1: a fifth of the encoding time of the default 6, for a few % more bytes
        fig.savefig(path, dpi=DPI, pil_kwargs={"compress_level": 1})
    finally:
        plt.close(fig)
    return path


def latency_bars(samples_ms: dict[tuple[str, str], list[float]]) -> Figure | None:
    """One panel per device: median trial latency per variant, error bars from min to max trial,
    and every trial as a dot so the spread is visible at a glance."""
    if not samples_ms:
        return None
    devices = list(dict.fromkeys(device for device, _ in samples_ms))
    colour = _variant_colours(variant for _, variant in samples_ms)
    most = max(sum(1 for d, _ in samples_ms if d == device) for device in devices)
    fig, axes = _panels(len(devices), 5.5, bars=most)
    for ax, device in zip(axes, devices):
        variants = [v for d, v in samples_ms if d == device]
        for i, variant in enumerate(variants):
            values = pd.Series(samples_ms[(device, variant)])
            median = float(values.median())
            ax.bar(i, median, color=colour[variant], label=short_name(variant, *LEGEND_NAME),
                   alpha=0.85)
            ax.errorbar(i, median, yerr=[[median - values.min()], [values.max() - median]],
                        fmt="none", ecolor="black", capsize=5)
            ax.scatter([i] * len(values), values, color="black", s=10, zorder=3)
        ax.set_xticks(range(len(variants)), [short_name(v, *TICK_NAME) for v in variants],
                      rotation=30, ha="right", rotation_mode="anchor", fontsize="small")
        ax.set_title(short_name(device), fontsize=TITLE_SIZE)
        ax.set_ylabel(f"inference latency, launch {DEFAULT_STATISTIC} (ms)")
    fig.suptitle("Latency per device")
    _figure_legend(fig, axes, "variant (bar: median; whiskers: min–max trial; dots: trials)")
    return fig


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


def accuracy_latency_pareto(latency: pd.DataFrame, variants: pd.DataFrame) -> Figure | None:
    """Top-1 accuracy against median latency, one panel per device, the Pareto frontier drawn;
    only with two variants or more (one point has no trade-off to show)."""
    if latency.empty or variants.empty or "top-1 %" not in variants:
        return None
    accuracy = variants.set_index("variant")["top-1 %"].dropna()
    merged = latency[latency["variant"].isin(accuracy.index)].dropna(subset=[LATENCY_MS])
    if merged["variant"].nunique() < 2:
        return None
    devices = list(dict.fromkeys(merged["device"]))
    colour = _variant_colours(merged["variant"])
    fig, axes = _panels(len(devices), 5.0)
    for ax, device in zip(axes, devices):
        rows = merged[merged["device"] == device]
        points = [(float(r[LATENCY_MS]), float(accuracy[r["variant"]])) for _, r in rows.iterrows()]
        for (lat, acc), variant in zip(points, rows["variant"]):
            ax.scatter(lat, acc, color=colour[variant], s=50,
                       label=short_name(variant, *LEGEND_NAME), zorder=3)
        front = pareto_frontier(points)
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "--", color="gray",
                label="Pareto frontier", zorder=2)
        ax.set_title(short_name(device), fontsize=TITLE_SIZE)
        ax.set_xlabel(f"inference latency, {LATENCY_MS}")
        ax.set_ylabel("top-1 accuracy (%)")
    fig.suptitle("Accuracy vs latency (Pareto frontier)")
    _figure_legend(fig, axes)
    return fig


def size_bars(variants: pd.DataFrame) -> Figure | None:
    """Raw .tflite bytes next to zip bytes per variant: what sparsity buys in a download; only
    with two variants or more (one variant's two sizes are in its table row)."""
    if len(variants) < 2 or "tflite bytes" not in variants:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(variants) + 2), 4.5), layout="constrained")
    positions = range(len(variants))
    ax.bar([p - 0.2 for p in positions], variants["tflite bytes"] / 1e6, width=0.4,
           label=".tflite (raw)")
    if "zip bytes" in variants:
        ax.bar([p + 0.2 for p in positions], variants["zip bytes"].astype(float) / 1e6, width=0.4,
               label="zip (compressed)")
    ax.set_xticks(list(positions), [short_name(v, *TICK_NAME) for v in variants["variant"]],
                  rotation=30, ha="right", rotation_mode="anchor", fontsize="small")
    ax.set_title("Model size per variant")
    ax.set_ylabel("size (MB)")
    ax.legend(fontsize="small")
    return fig


def latency_trend(history: pd.DataFrame) -> Figure | None:
    """Median latency per (device, variant) over the stored runs; drawn with ≥ 2 runs only."""
    if history.empty or history["run_id"].nunique() < 2:
        return None
    runs = list(dict.fromkeys(history.sort_values("started_at")["run_id"]))
    keys = list(history.groupby(["device", "variant"], sort=False).groups)
    labels = {key: short_name(f"{key[1]} @ {key[0]}", *LEGEND_NAME) for key in keys}
    # Tall enough for the legend beside the axes: one line of small text is about 0.2 in.
    legend_lines = sum(label.count("\n") + 1 for label in labels.values()) + 2
    fig, ax = plt.subplots(figsize=(max(9.0, 0.8 * len(runs) + 7), max(4.5, 0.2 * legend_lines)),
                           layout="constrained")
    for (device, variant), rows in history.groupby(["device", "variant"], sort=False):
        xs = [runs.index(r) for r in rows["run_id"]]
        line, = ax.plot(xs, rows[LATENCY_MS], marker="o", label=labels[(device, variant)])
        if "p10 ms" in rows:  # the runs' noise band (10th-90th percentile of their launches)
            ax.fill_between(xs, rows["p10 ms"], rows["p90 ms"], color=line.get_color(),
                            alpha=0.15, linewidth=0)
        if "level change" in rows:  # where the level changed: a ring round the point
            changed = rows[rows["level change"].astype(bool)]
            ax.scatter([runs.index(r) for r in changed["run_id"]], changed[LATENCY_MS], s=160,
                       facecolors="none", edgecolors=line.get_color(), linewidths=1.5)
    ax.set_xticks(range(len(runs)), [short_name(r, 24) for r in runs], rotation=30,
                  ha="right", rotation_mode="anchor", fontsize="small")
    ax.set_title("Latency over runs")
    ax.set_xlabel("run")
    ax.set_ylabel(f"inference latency, {LATENCY_MS}")
    # Outside the axes, right of them: with many keys an inside legend would hide the lines.
    fig.legend(loc="outside right upper", fontsize="small", title="variant @ device",
               title_fontsize="small")
    return fig


def history_trends(groups: dict) -> Figure | None:
    """`bench history --plot`: one panel per key with 2 runs or more (`groups`: key label ->
    its HistoryRows, oldest first): the runs' medians, their noise band (10th-90th percentile
    of the launches) and a dashed line where the level changed, with the change in %."""
    drawn = {key: [r for r in rows if r.median_ms] for key, rows in groups.items()}
    drawn = {key: rows for key, rows in drawn.items() if len(rows) >= 2}
    if not drawn:
        return None
    fig, axes = plt.subplots(len(drawn), 1, figsize=(10, 2.6 * len(drawn) + 0.6),
                             layout="constrained", squeeze=False)
    for ax, (key, rows) in zip(axes[:, 0], drawn.items()):
        xs = list(range(len(rows)))
        medians = [r.median_ms for r in rows]
        ax.fill_between(xs, [r.band_low_ms for r in rows], [r.band_high_ms for r in rows],
                        alpha=0.2, linewidth=0, label="10-90 % of launches")
        ax.plot(xs, medians, marker="o", label=f"median, {LATENCY_MS}")
        level = medians[0]
        for x, r in zip(xs, rows):
            if r.level_change:
                ax.axvline(x - 0.5, color="tab:red", linestyle="--", linewidth=1)
                ax.annotate(f"{100 * (r.median_ms / level - 1):+.1f} %", (x - 0.5, r.median_ms),
                            color="tab:red", fontsize="small", xytext=(3, 3),
                            textcoords="offset points")
                level = r.median_ms
        ax.set_title(short_name(key, 110), fontsize=TITLE_SIZE - 2, loc="left")
        ax.set_ylabel(LATENCY_MS)
        ax.set_xticks(xs, [short_name(r.run_id, 24) for r in rows], rotation=30, ha="right",
                      rotation_mode="anchor", fontsize="x-small")
    axes[0, 0].legend(fontsize="small", loc="upper left")
    fig.suptitle("History per key (dashed: the level changed)")
    return fig


# -- layout checks --------------------------------------------------------------------------------
def _titles(fig) -> list:
    """Every title Text of a figure (and its subfigures): suptitle, axes titles (centre, left,
    right), legend titles."""
    texts = [fig._suptitle] if getattr(fig, "_suptitle", None) is not None else []
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title]
        if ax.get_legend() is not None:
            texts.append(ax.get_legend().get_title())
    texts += [legend.get_title() for legend in fig.legends]
    for sub in getattr(fig, "subfigs", []):
        texts += _titles(sub)
    return texts


def title_extents(fig: Figure) -> list[tuple[str, Bbox]]:
    """(text, window extent in display pixels) of every non-empty, visible title of `fig`,
    after drawing it (so constrained layout has placed them)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [(text.get_text(), text.get_window_extent(renderer)) for text in _titles(fig)
            if text.get_text() and text.get_visible()]


def overlapping_titles(fig: Figure, extents=None) -> list[tuple[str, str]]:
    """Pairs of titles of `fig` whose boxes overlap (none, in a readable figure). `extents`:
    title_extents(fig) already computed (each call draws the figure)."""
    extents = title_extents(fig) if extents is None else extents
    return [(a, b) for (a, box_a), (b, box_b) in combinations(extents, 2)
            if box_a.overlaps(box_b)]


def titles_outside(fig: Figure, extents=None) -> list[str]:
    """Titles that do not fit inside the figure (cut off in the PNG)."""
    extents = title_extents(fig) if extents is None else extents
    frame = fig.bbox
    return [text for text, box in extents
            if box.x0 < frame.x0 - 1 or box.x1 > frame.x1 + 1 or box.y0 < frame.y0 - 1
            or box.y1 > frame.y1 + 1]


# -- the report's figures -------------------------------------------------------------------------
def report_figures(samples_ms, latency: pd.DataFrame, variants: pd.DataFrame,
                   history: pd.DataFrame) -> dict[str, tuple[str, Figure]]:
    """caption -> (PNG file name, Figure) of every plot the run has data for."""
    drawn = {
        "Latency per device (median, min–max over trials)":
            ("latency.png", latency_bars(samples_ms)),
        "Accuracy vs latency (Pareto frontier)":
            ("pareto.png", accuracy_latency_pareto(latency, variants)),
        "Size per variant (raw vs zip)": ("size.png", size_bars(variants)),
        "Latency over runs (band: 10–90 % of each run's launches; ring: the level changed)":
            ("trend.png", latency_trend(history)),
    }
    return {caption: (name, fig) for caption, (name, fig) in drawn.items() if fig is not None}
