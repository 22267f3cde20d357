"""`bench parse` and `bench report`: benchmark_model logs and a stored run's report."""
from __future__ import annotations

import json
from pathlib import Path

import click

from harness.cli.main import cli
from harness.errors import UserError


# -- parse --------------------------------------------------------------------------------------
@cli.command()
@click.argument("log_file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="JSON list, one object per benchmark run.")
def parse(log_file, as_json):
    """Parse a benchmark_model log (any version, plain, INFO:-prefixed or logcat)."""
    from harness.benchmark.parser import parse_log_file

    # The whole log is parsed (a stream, bounded memory; a bad log is refused) before anything
    # is printed; then one run at a time, never the whole output at once.
    runs = parse_log_file(log_file)
    if as_json:
        if not runs:
            click.echo("[]")
            return
        # The layout of json.dumps(runs, indent=1), written as it is encoded.
        encoder, pending = json.JSONEncoder(indent=1), []
        for chunk in encoder.iterencode(_LazyList(runs, lambda run: run.to_dict())):
            pending.append(chunk)
            if len(pending) >= 4096:
                click.echo("".join(pending), nl=False)
                pending.clear()
        click.echo("".join(pending))
        return
    if not runs:
        click.echo("no benchmark run found")
        return
    for i, run in enumerate(runs, 1):
        r = run.to_dict()
        fields = ", ".join(f"{k}={v}" for k, v in r.items() if v not in (None, []) and k != "ops")
        ops = f", {len(r['ops'])} op rows" if r.get("ops") else ""
        click.echo(f"run {i}: {fields}{ops}")


class _LazyList(list):
    """A list json's (indenting, pure-Python) encoder walks item by item, each item made only
    when its turn comes: one run's dict in memory at a time."""

    def __init__(self, items: list, make):
        super().__init__()
        self._items, self._make = items, make

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return (self._make(item) for item in self._items)


# -- report -------------------------------------------------------------------------------------
@cli.command()
@click.argument("run_id")
@click.option("--store", "store_path", type=click.Path(path_type=Path), default=Path("reports/bench.db"))
@click.option("--reports-dir", type=click.Path(path_type=Path), default=Path("reports"))
def report(run_id, store_path, reports_dir):
    """(Re)write reports/<RUN_ID>/ from the store and print the latency table."""
    from harness.report import format_table, latency_table, write_report
    from harness.results.store import Store

    if not store_path.exists():
        raise UserError(f"--store {store_path}: no results store there; run `bench run` first")
    store = Store(store_path)  # a newer or non-SQLite store: one line, exit 2
    try:
        if store.run(run_id) is None:
            known = [r["run_id"] for r in store.runs()][-5:]
            raise UserError(f"run {run_id}: not in {store_path}; recent runs: "
                            f"{', '.join(known) or 'none'}")
        # A full or read-only reports dir: a StorageError naming it (exit 1); the files
        # already there stay whole.
        out = write_report(store, run_id, reports_dir)
        table = format_table(latency_table(store.measurements(run_id)))
    finally:
        store.close()
    click.echo(table)
    click.echo(f"report: {out}/index.html (also report.md, results.csv, results.json)")
