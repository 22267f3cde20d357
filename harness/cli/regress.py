"""`bench history`, `bench compare` and `bench tag`, plus how a compare result is shown
(terminal table, compare.md). `register(cli)` adds the commands to the `bench` group.

`--confirm` re-runs the REGRESSED keys interleaved with the baseline artifact on their devices
(harness.regress.confirm) before the verdicts are shown.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from harness.atomic_write import write_atomic
from harness.cli.types import check_number_text, integer
from harness.errors import UserError
from harness.escape import md_code, md_text

if TYPE_CHECKING:  # harness.regress.compare loads scipy: not for commands that never compare
    from harness.regress.compare import CompareResult, KeyVerdict, MetricVerdict

DEFAULT_STORE = Path("reports/bench.db")


def _ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.3f}"


def _latency_cells(v: KeyVerdict) -> list[str]:
    t = v.test
    return [v.verdict, v.label, _ms(v.base.median_us), _ms(v.cand.median_us),
            "-" if t is None else f"{t.ratio:.3f}",
            "-" if t is None else f"{t.ci_low:.3f}–{t.ci_high:.3f}",
            "-" if t is None else f"{min(t.p_slower, t.p_faster):.2g}",
            f"{v.base.n}/{v.cand.n}",
            v.reason if not v.confirmation else f"{v.reason} [--confirm: {v.confirmation}]"]


def latency_header(result: CompareResult) -> list[str]:
    # The medians shown are over the per-launch figure the verdicts use (e.g. each launch's min).
    stat = result.thresholds.statistic
    return ["verdict", "key", f"base {stat} ms", f"cand {stat} ms", "ratio", "95% CI", "p",
            "n b/c", "why"]


METRIC_HEADER = ["verdict", "variant", "base", "cand", "why"]


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
    metrics = [*result.size, *result.accuracy]
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
    metrics = [*result.size, *result.accuracy]
    if metrics:
        parts += ["### Size and accuracy",
                  _md_table(METRIC_HEADER, [[f"{icon[v.verdict]} {v.verdict}", *_metric_cells(v)[1:]]
                                            for v in metrics])]
    unmatched = len(result.only_in_base) + len(result.only_in_cand)
    if unmatched:
        parts.append(f"{len(result.only_in_base)} key(s) only in base, "
                     f"{len(result.only_in_cand)} only in candidate (not compared).")
    t = result.thresholds
    overrides = ", ".join(f"{md_code(p)}={r:g}" for p, r in t.overrides)
    parts.append(f"<sub>Samples: each launch's {t.statistic} latency. "
                 f"REGRESSED needs p ≤ {t.alpha:g} (one-sided Mann–Whitney U / KS), median "
                 f"ratio ≥ {t.ratio:g}{' (' + overrides + ')' if overrides else ''} and a bootstrap "
                 f"95 % CI excluding 1. INVALID: CV ≥ {100 * t.max_cv:.0f} %, max/min > "
                 f"{t.max_spread:g}, throttled, battery < {t.min_battery_pct} %.</sub>")
    return "\n\n".join(parts) + "\n"


def _open_store(store_path: Path):
    from harness.results.store import Store

    if not Path(store_path).exists():
        raise UserError(f"--store {store_path}: no results store there; run `bench run` first")
    return Store(store_path)


def confirm_options(f):
    """--confirm and --confirm-trials, shared by `bench compare` and `bench run --baseline`."""
    from harness.regress.confirm import DEFAULT_CONFIRM_TRIALS

    f = click.option("--confirm-trials", type=integer(), default=DEFAULT_CONFIRM_TRIALS,
                     show_default=True, help="Interleaved launches per side for --confirm.")(f)
    return click.option("--confirm", is_flag=True,
                        help="Re-run REGRESSED keys interleaved with the baseline artifact on "
                             "their device before the verdict stands.")(f)


def confirm_result(store, result: CompareResult, trials: int) -> CompareResult:
    from harness.regress.confirm import confirm_regressions

    return confirm_regressions(store, result, trials,
                               log=lambda m: click.echo(f"  {m}", err=True))


@click.command()
@click.option("--model", default=None, help="Only this model.")
@click.option("--device", default=None,
              help="Only this device: its ro.serialno (as keys show it) or an adb serial.")
@click.option("--store", "store_path", type=click.Path(path_type=Path), default=DEFAULT_STORE)
@click.option("--json", "as_json", is_flag=True)
def history(model, device, store_path, as_json):
    """Runs over time per key (variant, device, delegate, threads, CPU mask, OS build, binary)."""
    from dataclasses import asdict

    from harness.results.history import format_history, history_rows

    rows = history_rows(_open_store(store_path), model=model, device=device)
    if as_json:
        click.echo(json.dumps([asdict(r) for r in rows], indent=1))
    else:
        click.echo(format_history(rows))


@click.command()
@click.argument("base")
@click.argument("cand")
@click.option("--store", "store_path", type=click.Path(path_type=Path), default=DEFAULT_STORE)
@click.option("--reports-dir", type=click.Path(path_type=Path), default=None,
              help="compare.md goes to REPORTS_DIR/<cand>/ (default: reports).")
@click.option("--output", "output_dir", type=click.Path(path_type=Path), default=None,
              help="Write compare.md into this directory instead.")
@click.option("--threshold", "thresholds", multiple=True, metavar="RATIO|PATTERN=RATIO",
              callback=lambda _ctx, _param, values: _finite_ratios(values),
              help="Slowdown ratio that counts (default 1.05); PATTERN=RATIO per key, e.g. '*gpu*=1.10'.")
@click.option("--statistic", type=click.Choice(["min", "median", "mean"]), default="min",
              show_default=True, help="Which per-launch latency is a sample.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--junit", "junit_path", type=click.Path(path_type=Path), default=None,
              help="Also write JUnit XML here (one test case per key).")
@confirm_options
def compare(base, cand, store_path, reports_dir, output_dir, thresholds, statistic, as_json,
            junit_path, confirm, confirm_trials):
    """Verdict per key of CAND against BASE (run ids, `latest` or `tag:NAME`). Exit 1 if REGRESSED."""
    from harness.regress.compare import Thresholds, compare as compare_runs, parse_threshold, resolve_run_ref
    from harness.regress.junit import write_junit
    from harness.paths import reports_dir as default_reports_dir

    if confirm:
        from harness.regress.confirm import check_confirm_trials

        check_confirm_trials(confirm_trials)
    settings = Thresholds(statistic=statistic)
    for text in thresholds:
        parse_threshold(text, settings)
    store = _open_store(store_path)
    picked: list[str] = []  # which run `latest` is: said once both runs are known good
    cand_id = resolve_run_ref(store, cand, log=picked.append)
    base_id = resolve_run_ref(store, base, exclude=cand_id, log=picked.append)
    result = compare_runs(store, base_id, cand_id, settings)
    if not as_json:  # --json names both runs in its document
        for line in picked:
            click.echo(line, err=True)
    if confirm:
        result = confirm_result(store, result, confirm_trials)
    out_dir = output_dir or (reports_dir or default_reports_dir()) / cand_id
    write_atomic(out_dir / "compare.md", compare_markdown(result), "compare.md")
    if junit_path is not None:
        write_junit(result, junit_path)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=1, default=str))
    else:
        click.echo(format_compare(result))
        click.echo(f"compare.md: {out_dir / 'compare.md'}")
    # sys.exit, not ctx.exit: bench's main() runs click with standalone_mode=False, which
    # would swallow click's Exit and return 0.
    if result.exit_code:
        sys.exit(result.exit_code)


@click.command()
@click.argument("run_id")
@click.argument("name")
@click.option("--store", "store_path", type=click.Path(path_type=Path), default=DEFAULT_STORE)
def tag(run_id, name, store_path):
    """Name a run (e.g. release-1.4) so `bench compare tag:NAME ...` finds it."""
    from harness.config_schema import tag_name_problem

    problem = tag_name_problem(name)  # before the store is even opened
    if problem:
        raise UserError(problem)
    store = _open_store(store_path)
    if store.run(run_id) is None:
        raise UserError(f"run {run_id}: not in {store_path}")
    store.tag_run(run_id, name)
    click.echo(f"tagged {run_id} as {name}")


def _finite_ratios(values: tuple[str, ...]) -> tuple[str, ...]:
    for text in values:
        check_number_text(text.rpartition("=")[2], f"--threshold {text}")
    return values


def register(cli_group: click.Group) -> None:
    for command in (history, compare, tag):
        cli_group.add_command(command)
