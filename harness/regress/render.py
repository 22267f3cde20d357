"""How a compare result is shown: the terminal table (worst verdicts first) and compare.md
(short enough to paste in a CI comment). Pure functions over a CompareResult."""
from __future__ import annotations

from typing import TYPE_CHECKING

from harness.escape import md_code, md_text

if TYPE_CHECKING:  # harness.regress.compare loads scipy: not for commands that never compare
    from harness.regress.compare import CompareResult, KeyVerdict, MetricVerdict


def _ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.3f}"


def _latency_cells(v: KeyVerdict) -> list[str]:
    t = v.test
    return [v.verdict, v.label, v.mode, _ms(v.base.median_us), _ms(v.cand.median_us),
            "-" if t is None else f"{t.ratio:.3f}",
            "-" if t is None else f"{t.ci_low:.3f}–{t.ci_high:.3f}",
            "-" if t is None else f"{min(t.p_slower, t.p_faster):.2g}",
            f"{v.pairs} pairs" if v.pairs is not None else f"{v.base.n}/{v.cand.n}",
            _mde(v.mde_ratio),
            v.reason if not v.confirmation else f"{v.reason} [--confirm: {v.confirmation}]"]


def _mde(ratio: float | None) -> str:
    """The smallest slowdown the key's pairs would have caught (power 0.9), as a change."""
    if ratio is None:
        return "-"
    return ">100 %" if ratio > 2 else f"{100 * (ratio - 1):.1f} %"


def latency_header(result: CompareResult) -> list[str]:
    # The medians shown are over the per-launch figure the verdicts use (e.g. each launch's median).
    stat = result.thresholds.statistic
    return ["verdict", "key", "mode", f"base ms (launch {stat})", f"cand ms (launch {stat})",
            "ratio", "95% CI", "p", "n", "MDE", "why"]


METRIC_HEADER = ["verdict", "variant or key", "base", "cand", "why"]


def _metric_cells(v: MetricVerdict) -> list[str]:
    fmt = (lambda x: f"{x:,.0f} B") if v.metric == "size" else (lambda x: f"{100 * x:.2f} %")
    return [v.verdict, v.label, fmt(v.base_value), fmt(v.cand_value), v.reason]


def _summary(result: CompareResult) -> str:
    counts = ", ".join(f"{n} {name}" for name, n in result.counts().items() if n)
    return f"{result.base_run} -> {result.cand_run}: {counts or 'nothing compared'}"


def _text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
             for r in [header, *rows]]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _worst_first(verdicts: list[KeyVerdict]) -> list[KeyVerdict]:
    from harness.regress.compare import VERDICTS  # display order

    return sorted(verdicts, key=lambda v: VERDICTS.index(v.verdict))


def format_compare(result: CompareResult) -> str:
    """The terminal view: worst verdicts first."""
    parts = [_text_table(latency_header(result),
                         [_latency_cells(v) for v in _worst_first(result.latency)])]
    metrics = result.metrics
    if metrics:
        parts.append(_text_table(METRIC_HEADER, [_metric_cells(v) for v in metrics]))
    parts.append(_summary(result))
    return "\n\n".join(parts)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(md_text(c) for c in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md_text(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def compare_markdown(result: CompareResult) -> str:
    """compare.md: short enough to paste in a CI comment, regressions first."""
    icon = {"REGRESSED": "❌", "INVALID": "⚠️", "UNKNOWN": "❔", "IMPROVED": "✅", "SAME": "✅"}
    head = ("**bench compare**: " + ("❌ regressions found" if result.regressed
                                     else "no regressions"))
    latency_rows = []
    for v in _worst_first(result.latency):
        cells = _latency_cells(v)
        cells[0] = f"{icon[v.verdict]} {v.verdict}"
        # The key label stays plain escaped text: in a code span the escapes would show.
        latency_rows.append(cells)
    parts = [head, f"base {md_code(result.base_run)} → candidate {md_code(result.cand_run)}: "
             + ", ".join(f"{n} {name}" for name, n in result.counts().items() if n),
             "### Latency", _md_table(latency_header(result), latency_rows)]
    metrics = result.metrics
    if metrics:
        parts += ["### Size and accuracy (on the host and on the device), delegation",
                  _md_table(METRIC_HEADER, [[f"{icon[v.verdict]} {v.verdict}", *_metric_cells(v)[1:]]
                                            for v in metrics])]
    unmatched = len(result.only_in_base) + len(result.only_in_cand)
    if unmatched:
        parts.append(f"{len(result.only_in_base)} key(s) only in base, "
                     f"{len(result.only_in_cand)} only in candidate (not compared).")
    t = result.thresholds
    overrides = ", ".join(f"{md_code(p)}={r:g}" for p, r in t.overrides)
    threshold = f"{t.ratio:g}{' (' + overrides + ')' if overrides else ''}"
    parts.append(f"<sub>Samples: each launch's {t.statistic} latency. Paired keys (the "
                 "baseline's artifact launched beside the candidate's, one pair per trial): "
                 f"REGRESSED needs p ≤ {t.alpha:g} (one-sided Wilcoxon signed-rank on the pairs' "
                 f"log ratios) and a Hodges–Lehmann ratio ≥ √threshold ({threshold}); MDE: the "
                 "smallest slowdown those pairs catch with power 0.9. Cross-run keys: p ≤ "
                 f"{t.alpha:g} (one-sided Mann–Whitney U / KS), median ratio ≥ {threshold} and a "
                 f"bootstrap 95 % CI excluding 1. INVALID: CV ≥ {100 * t.max_cv:.0f} % (cross-run), "
                 f"max/min > {t.max_spread:g}, throttled, battery < {t.min_battery_pct} %.</sub>")
    return "\n\n".join(parts) + "\n"
