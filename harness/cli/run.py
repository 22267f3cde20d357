"""`bench run`: flags into a RunConfig, then run_benchmarks or resume_benchmarks (harness.run);
the tables, the summary and, with --baseline, the verdicts."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from harness.cli.regress import confirm_options
from harness.cli.types import NumberType, TextType, TrialsType
from harness.cli.main import EXIT_INTERRUPTED, _echo_err, cli
from harness.benchmark.command import DELEGATES
from harness.config import DEFAULT_ACCURACY_SAMPLES as DEFAULT_SAMPLES
from harness.config_schema import BENCHMARK_RULES, RUN_RULES
from harness.errors import UserError


# -- run ----------------------------------------------------------------------------------------
@cli.command()
@click.option("--devices", type=TextType(RUN_RULES["devices"]), default=None,
              help="all, or SERIAL[,SERIAL...] (default: all).")
@click.option("--model", type=TextType(RUN_RULES["model"]), default=None,
              help="Model to benchmark (default: digits_cnn).")
@click.option("--variant", "variants", type=TextType(RUN_RULES["variants"]), multiple=True,
              metavar="SPEC", help="baseline, or knobs like prune=0.35,ft=2,quant=int8 (repeatable).")
@click.option("--weights", type=TextType(RUN_RULES["weights"]), default=None,
              help="State dict (.pt/.pth) for a built-in architecture.")
@click.option("--input-shape", type=TextType(RUN_RULES["input_shape"]), default=None,
              help="Model input shape, e.g. 1,3,224,224.")
@click.option("--input", "inputs", type=TextType(RUN_RULES["inputs"]), multiple=True,
              metavar="NAME:DTYPE:SHAPE[:LOW,HIGH]",
              help="One model input, in forward's order (repeatable), e.g. input_ids:int64:1,128; "
                   "LOW,HIGH: an integer input's values (default: the embedding it feeds).")
@click.option("--data", "data_dir", type=TextType(RUN_RULES["data_dir"]), default=None,
              help="ImageFolder directory, .npy inputs, or .jsonl token samples with labels.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="TOML config file (default: ./bench.toml when present).")
@click.option("--binary", "binaries", multiple=True, metavar="ABI=PATH",
              help="benchmark_model binary for an ABI, e.g. arm64-v8a=./benchmark_model.")
@click.option("--num-runs", type=NumberType(BENCHMARK_RULES["num_runs"]), default=None,
              help="benchmark_model --num_runs.")
@click.option("--warmup-runs", type=NumberType(BENCHMARK_RULES["warmup_runs"]), default=None,
              help="--warmup_runs.")
@click.option("--min-secs", type=NumberType(BENCHMARK_RULES["min_secs"]), default=None,
              help="--min_secs.")
@click.option("--max-secs", type=NumberType(BENCHMARK_RULES["max_secs"]), default=None,
              help="--max_secs.")
@click.option("--threads", "threads", type=NumberType(RUN_RULES["threads"]), multiple=True,
              help="--num_threads as a run dimension (repeatable; default: one per big core).")
@click.option("--delegate", "delegates", type=click.Choice(list(DELEGATES)),
              multiple=True, help="Delegate as a run dimension (repeatable; default: the tool's).")
@click.option("--trials", type=TrialsType(RUN_RULES["trials"]), default=None, metavar="N|auto",
              help="Launches per variant, device and configuration, interleaved across variants; "
                   "auto: as many as each key's noise in its last runs needs to catch a 5 % "
                   "slowdown with power 0.9 (with --baseline, pairs).")
@click.option("--time-budget", "time_budget_s", type=NumberType(RUN_RULES["time_budget_s"]),
              default=None, metavar="SECONDS",
              help="With --trials auto: at most this long of launches per device.")
@click.option("--peak-memory/--no-peak-memory", default=None,
              help="One extra launch per variant measuring peak memory (default: on).")
@click.option("--op-profiling", is_flag=True, default=None, help="One extra launch per variant with op profiling.")
@click.option("--accuracy-on-device", "accuracy_on_device",
              type=NumberType(RUN_RULES["accuracy_on_device"]), is_flag=False,
              flag_value=DEFAULT_SAMPLES, default=None, metavar="[N]",
              help=f"Run N test samples (default {DEFAULT_SAMPLES}) through each variant on "
                   "each device and delegate, pull the outputs and judge them against the "
                   "labels, the host's LiteRT run and the baseline (0: off).")
@click.option("--accuracy-per-sample", is_flag=True, default=None,
              help="One accuracy launch per sample, even where the model takes a batch.")
@click.option("--busy", type=click.Choice(["wait", "fail"]), default=None,
              help="A device another bench process is using: wait for it, or record it busy.")
@click.option("--baseline", default=None, metavar="RUN_ID|latest|tag:NAME",
              help="Compare this run against a baseline run; exit 1 when anything REGRESSED.")
@click.option("--cross-run", is_flag=True,
              help="With --baseline: do not launch the baseline's artifacts beside this run's "
                   "(paired, the default); compare with the baseline run's own samples.")
@confirm_options
@click.option("--junit", "junit_path", type=click.Path(path_type=Path), default=None,
              help="With --baseline: also write the verdicts as JUnit XML here.")
@click.option("--cluster", default=None, metavar="HEAD:PORT",
              help="Measure on the devices of the lab hosts that joined this Ray cluster "
                   "(`bench lab join`); see README, Lab of many hosts.")
@click.option("--retry-on-sibling", is_flag=True, default=None,
              help="With --cluster: a job lost with its lab host runs again on a phone of the "
                   "same model on another host.")
@click.option("--resume", "resume_run_id", default=None, metavar="RUN_ID",
              help="Finish only the jobs RUN_ID has no record of (same config).")
@click.option("--store", "store_path", type=click.Path(path_type=Path), default=None,
              help="SQLite results store (default: reports/bench.db).")
@click.option("--reports-dir", type=click.Path(path_type=Path), default=None,
              help="Where reports/<run-id>/ goes (default: reports).")
@click.option("--quiet", is_flag=True, help="Only the tables and the summary.")
@click.option("--verbose", is_flag=True,
              help="Show torch/TensorFlow/LiteRT/quantizer output on the terminal too (by default "
                   "it goes to reports/<run-id>/bench.log only).")
def run(devices, model, variants, weights, input_shape, inputs, data_dir, config_path, binaries,
        num_runs, warmup_runs, min_secs, max_secs, threads, delegates, trials, time_budget_s, peak_memory,
        op_profiling, accuracy_on_device, accuracy_per_sample, busy, baseline, cross_run, confirm, confirm_trials, junit_path, cluster,
        retry_on_sibling, resume_run_id,
        store_path, reports_dir, quiet, verbose):
    """Benchmark the model on every selected device concurrently, store and report."""
    from harness.benchmark.binaries import parse_binary_options
    from harness.config import load_config

    config = load_config(config_path)  # a bad file is reported before the heavy imports below
    from harness.report import failures_table, format_table, latency_table, variants_table
    from harness.run import RunInterrupted, resume_benchmarks, run_benchmarks
    from harness.run_log import run_output

    if (confirm or junit_path or cross_run) and not baseline:
        flag = "--confirm" if confirm else "--junit" if junit_path else "--cross-run"
        raise UserError(f"{flag} works on the verdicts against a baseline: add "
                        "--baseline RUN_ID|latest|tag:NAME")
    if confirm:
        from harness.regress.confirm import check_confirm_trials

        check_confirm_trials(confirm_trials)
    if devices is not None:
        config.devices = devices
    for name, value in (("model", model), ("weights", weights), ("input_shape", input_shape),
                        ("data_dir", data_dir)):
        if value is not None:
            setattr(config, name, value)
    if variants:
        config.variants = list(variants)
    if inputs:
        config.inputs = list(inputs)
    config.binaries.update(parse_binary_options(binaries))
    for name, value in (("num_runs", num_runs), ("warmup_runs", warmup_runs),
                        ("min_secs", min_secs), ("max_secs", max_secs)):
        if value is not None:
            setattr(config.benchmark, name, value)
    if trials == "auto":
        config.auto_trials = True
    elif trials is not None:
        config.trials, config.auto_trials = trials, False
    for name, value in (("time_budget_s", time_budget_s), ("peak_memory", peak_memory),
                        ("op_profiling", op_profiling), ("accuracy_on_device", accuracy_on_device),
                        ("accuracy_per_sample", accuracy_per_sample),
                        ("busy", busy), ("cluster", cluster),
                        ("retry_on_sibling", retry_on_sibling)):
        if value is not None:
            setattr(config, name, value)
    if threads:
        config.threads = list(threads)
    if delegates:
        config.delegates = list(delegates)
    if store_path is not None:
        config.store_path = store_path
    if reports_dir is not None:
        config.reports_dir = reports_dir
    # A baseline that does not exist is found out before any device time is spent; `latest`
    # in a store with no run yet lets this run become the first baseline.
    base_id = (_baseline_run_id(baseline, config.store_path, exclude=resume_run_id)
               if baseline else None)
    # Paired by default: the baseline's artifacts run beside this run's (harness.benchmark.pairing).
    config.paired_baseline = base_id if not cross_run else None
    try:
        # Third-party output goes to the run's bench.log; bench speaks through out.reporter.
        with run_output(config.reports_dir, verbose=verbose, quiet=quiet) as out:
            if resume_run_id:
                result = resume_benchmarks(resume_run_id, config.store_path, log=out.reporter,
                                           cluster=cluster)
            else:
                result = run_benchmarks(config, log=out.reporter)
    except RunInterrupted as exc:  # Ctrl-C twice: no tables, just how to finish
        _echo_err(exc.line)
        sys.exit(EXIT_INTERRUPTED)
    click.echo(f"\nrun {result.run_id}: latency (benchmark_model, timed runs)")
    click.echo(format_table(latency_table(result.measurements)))
    click.echo("\nvariants: size and accuracy")
    click.echo(format_table(variants_table(result.artifacts)))
    from harness.report.tables import device_accuracy_table

    on_device = device_accuracy_table(result.measurements)
    if not on_device.empty:
        click.echo("\naccuracy on the device (against the host's LiteRT run of the same file)")
        click.echo(format_table(on_device.drop(columns=["host max abs"])))
    from harness.results.schema import final_records

    final = {id(m) for m in final_records(result.measurements)}  # not a lost job resumed since
    failures = failures_table([m for m in result.measurements
                               if id(m) in final or m.status == "retried"])
    unavailable = failures[failures["status"] == "unavailable"]
    failures = failures[failures["status"] != "unavailable"]
    if not failures.empty:
        click.echo("\nfailed:")
        for row in failures.itertuples(index=False):
            click.echo(f"  {row.device} [{row.variant} trial {row.trial}] {row.status}: {row.reason}")
    if not unavailable.empty:  # the binary lacks the flag: reported, not failed
        click.echo("\nunavailable with this benchmark_model (not launched):")
        for reason, rows in unavailable.groupby("reason", sort=False):
            devices = ", ".join(sorted(set(rows["device"])))
            click.echo(f"  {devices}: {reason} ({len(rows)} launch(es))")
    lost_hosts = sorted({m.lab_host or m.adb_server for m in result.measurements
                         if id(m) in final and m.status == "lost"})
    if lost_hosts:
        lost = sum(1 for m in result.measurements if id(m) in final and m.status == "lost")
        click.echo(f"\n{lost} job(s) lost with lab host {', '.join(lost_hosts)}; once back: "
                   f"bench run --resume {result.run_id} --store {config.store_path}")
    ok = len(result.measurements) - len(result.failed)
    click.echo(f"\n{ok} of {len(result.measurements)} launch(es) ok; "
               f"bytes pushed: {result.bytes_pushed}; {result.seconds:.1f} s; "
               f"report: {result.report_dir}/index.html; store: {config.store_path}"
               + (f"; log: {out.log_path}" if out.log_path else ""))
    if result.summary:  # last, where the eye lands: what the run found, per device
        from harness.report.summary import ACCURACY_BUDGET_PT

        click.echo(f"\nsummary: per device, the fastest variant within {ACCURACY_BUDGET_PT:g} pt "
                   "top-1 of the baseline")
        for line in result.summary:
            click.echo(f"  {line.line}")
    if result.interrupted:  # no verdicts on half a run
        _echo_err(result.interrupted_line)
        sys.exit(EXIT_INTERRUPTED)
    exit_code = result.exit_code
    if baseline and base_id is None:
        click.echo(f"\n--baseline {baseline}: no earlier run in {config.store_path}; this run "
                   "is the first baseline", err=True)
    if base_id:
        from harness.cli.regress import confirm_log
        from harness.regress.render import format_compare
        from harness.regress.verdicts import judge
        from harness.results.store import Store

        store = Store(config.store_path)
        try:
            verdicts = judge(store, base_id, result.run_id, result.report_dir,
                             confirm_trials=confirm_trials if confirm else None,
                             junit_path=junit_path, log=confirm_log, paired=not cross_run)
        finally:
            store.close()
        picked = " (latest: the newest other run that finished ok)" if baseline == "latest" else ""
        click.echo(f"\ncompared with baseline {base_id}{picked}:")
        click.echo(format_compare(verdicts))
        if junit_path is not None:
            click.echo(f"JUnit XML: {junit_path}")
        exit_code = max(exit_code, verdicts.exit_code)
    sys.exit(exit_code)


def _baseline_run_id(ref: str, store_path: Path, exclude: str | None) -> str | None:
    """The run `--baseline` names (None: `latest` and no run yet); a missing one is a UserError."""
    from harness.regress.compare import resolve_run_ref
    from harness.results.store import Store

    if ref == "latest" and not Path(store_path).exists():
        return None
    if not Path(store_path).exists():
        raise UserError(f"--baseline {ref}: no results store at {store_path}; run without "
                        "--baseline first, or give --store")
    store = Store(store_path)
    try:
        if ref == "latest" and store.latest_run_id(exclude=exclude) is None:
            return None
        base_id = resolve_run_ref(store, ref, exclude=exclude)
        if store.run(base_id) is None:
            raise UserError(f"--baseline {ref}: no such run in {store_path}")
        return base_id
    finally:
        store.close()
