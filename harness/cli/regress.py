"""`bench history`, `bench compare` and `bench tag` (harness.regress: the verdicts, their
rendering in regress/render.py). `register(cli)` adds the commands to the `bench` group.

`--confirm` re-runs the REGRESSED keys interleaved with the baseline artifact on their devices
(harness.regress.confirm) before the verdicts are shown.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from harness.cli.types import check_number_text, integer
from harness.errors import UserError

DEFAULT_STORE = Path("reports/bench.db")


def _open_store(store_path: Path):
    from harness.results.store import Store

    if not Path(store_path).exists():
        raise UserError(f"--store {store_path}: no results store there; run `bench run` first")
    return Store(store_path)


def confirm_options(f):
    """--confirm and --confirm-trials, shared by `bench compare` and `bench run --baseline`."""
    from harness.regress import DEFAULT_CONFIRM_TRIALS

    f = click.option("--confirm-trials", type=integer(), default=DEFAULT_CONFIRM_TRIALS,
                     show_default=True, help="Interleaved launches per side for --confirm.")(f)
    return click.option("--confirm", is_flag=True,
                        help="Re-run REGRESSED keys interleaved with the baseline artifact on "
                             "their device before the verdict stands.")(f)


def confirm_log(message: str) -> None:
    click.echo(f"  {message}", err=True)


@click.command()
@click.option("--model", default=None, help="Only this model.")
@click.option("--device", default=None,
              help="Only this device: its ro.serialno (as keys show it) or an adb serial.")
@click.option("--store", "store_path", type=click.Path(path_type=Path), default=DEFAULT_STORE)
@click.option("--json", "as_json", is_flag=True)
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), is_flag=False,
              flag_value=Path("reports/history.png"), default=None, metavar="[PNG]",
              help="Also draw each key's trend, its noise band and the runs where its level "
                   "changed (default reports/history.png).")
def history(model, device, store_path, as_json, plot_path):
    """Runs over time per key (variant, device, delegate, threads, CPU mask, OS build, binary)."""
    from dataclasses import asdict

    from harness.results.history import format_history, history_rows, write_history_plot

    rows = history_rows(_open_store(store_path), model=model, device=device)
    if as_json:
        click.echo(json.dumps([asdict(r) for r in rows], indent=1))
    else:
        click.echo(format_history(rows))
    if plot_path is not None:
        written = write_history_plot(rows, plot_path)
        click.echo(f"history plot: {written}" if written else
                   "history plot: no key has 2 runs or more; nothing drawn", err=True)


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
@click.option("--statistic", type=click.Choice(["min", "median", "mean"]), default=None,
              help="Which per-launch latency is a sample (default: the one statistic of report "
                   "and history, harness.results.statistic).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--junit", "junit_path", type=click.Path(path_type=Path), default=None,
              help="Also write JUnit XML here (one test case per key).")
@click.option("--cross-run", is_flag=True,
              help="Compare the two runs' own samples even where CAND launched BASE's "
                   "artifacts beside its own (paired, the default).")
@confirm_options
def compare(base, cand, store_path, reports_dir, output_dir, thresholds, statistic, as_json,
            junit_path, cross_run, confirm, confirm_trials):
    """Verdict per key of CAND against BASE (run ids, `latest` or `tag:NAME`). Exit 1 if REGRESSED."""
    from harness.paths import reports_dir as default_reports_dir
    from harness.regress.compare import Thresholds, parse_threshold, resolve_run_ref
    from harness.regress.render import format_compare
    from harness.regress.verdicts import judge

    if confirm:
        from harness.regress.confirm import check_confirm_trials

        check_confirm_trials(confirm_trials)
    settings = Thresholds(**({"statistic": statistic} if statistic else {}))
    for text in thresholds:
        parse_threshold(text, settings)
    store = _open_store(store_path)
    picked: list[str] = []  # which run `latest` is: said once both runs are known good
    cand_id = resolve_run_ref(store, cand, log=picked.append)
    base_id = resolve_run_ref(store, base, exclude=cand_id, log=picked.append)
    out_dir = output_dir or (reports_dir or default_reports_dir()) / cand_id
    result = judge(store, base_id, cand_id, out_dir, settings,
                   confirm_trials=confirm_trials if confirm else None, junit_path=junit_path,
                   log=confirm_log, paired=not cross_run)
    if not as_json:  # --json names both runs in its document
        for line in picked:
            click.echo(line, err=True)
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
