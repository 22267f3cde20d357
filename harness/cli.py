"""The `bench` command: a thin layer that turns flags into library calls.

Only this module turns bench's errors into messages and exit codes: bad input (errors.BAD_INPUT) -> 2,
DeviceError/BenchmarkError -> 1, each as one line on stderr.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from harness.cli_compare import confirm_options
from harness.cli_types import (NumberType, OptionError, TextType, check_number_text, integer,
                               number)
from harness.config_schema import BENCHMARK_RULES, RUN_RULES
from harness.errors import BAD_INPUT, BenchError, UserError


EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


@click.group()
@click.version_option(package_name="bench", prog_name="bench")
def cli() -> None:
    """bench: prune, quantize, convert and benchmark models on Android devices (real or virtual)."""


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
@click.option("--data", "data_dir", type=TextType(RUN_RULES["data_dir"]), default=None,
              help="ImageFolder directory for accuracy and fine-tuning.")
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
@click.option("--delegate", "delegates", type=click.Choice(["cpu", "xnnpack", "gpu", "nnapi"]),
              multiple=True, help="Delegate as a run dimension (repeatable; default: the tool's).")
@click.option("--trials", type=NumberType(RUN_RULES["trials"]), default=None,
              help="Launches per variant, device and configuration, interleaved across variants.")
@click.option("--peak-memory/--no-peak-memory", default=None,
              help="One extra launch per variant measuring peak memory (default: on).")
@click.option("--op-profiling", is_flag=True, default=None, help="One extra launch per variant with op profiling.")
@click.option("--busy", type=click.Choice(["wait", "fail"]), default=None,
              help="A device another bench process is using: wait for it, or record it busy.")
@click.option("--baseline", default=None, metavar="RUN_ID|latest|tag:NAME",
              help="Compare this run against a baseline run; exit 1 when anything REGRESSED.")
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
def run(devices, model, variants, weights, input_shape, data_dir, config_path, binaries,
        num_runs, warmup_runs, min_secs, max_secs, threads, delegates, trials, peak_memory,
        op_profiling, busy, baseline, confirm, confirm_trials, junit_path, cluster,
        retry_on_sibling, resume_run_id,
        store_path, reports_dir, quiet, verbose):
    """Benchmark the model on every selected device concurrently, store and report."""
    from harness.binaries import parse_binary_options
    from harness.config import load_config

    config = load_config(config_path)  # a bad file is reported before the heavy imports below
    from harness.report import failures_table, format_table, latency_table, variants_table
    from harness.run import RunInterrupted, resume_benchmarks, run_benchmarks
    from harness.run_log import run_output

    if (confirm or junit_path) and not baseline:
        raise UserError(f"{'--confirm' if confirm else '--junit'} works on the verdicts against "
                        "a baseline: add --baseline RUN_ID|latest|tag:NAME")
    if confirm:
        from harness.confirm import check_confirm_trials

        check_confirm_trials(confirm_trials)
    if devices is not None:
        config.devices = devices
    for name, value in (("model", model), ("weights", weights), ("input_shape", input_shape),
                        ("data_dir", data_dir)):
        if value is not None:
            setattr(config, name, value)
    if variants:
        config.variants = list(variants)
    config.binaries.update(parse_binary_options(binaries))
    for name, value in (("num_runs", num_runs), ("warmup_runs", warmup_runs),
                        ("min_secs", min_secs), ("max_secs", max_secs)):
        if value is not None:
            setattr(config.benchmark, name, value)
    for name, value in (("trials", trials), ("peak_memory", peak_memory),
                        ("op_profiling", op_profiling), ("busy", busy), ("cluster", cluster),
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
    from harness.results import final_records

    final = {id(m) for m in final_records(result.measurements)}  # not a lost job resumed since
    failures = failures_table([m for m in result.measurements
                               if id(m) in final or m.status == "retried"])
    if not failures.empty:
        click.echo("\nfailed:")
        for row in failures.itertuples(index=False):
            click.echo(f"  {row.device} [{row.variant} trial {row.trial}] {row.status}: {row.reason}")
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
        from harness.atomic_write import write_atomic
        from harness.cli_compare import compare_markdown, confirm_result, format_compare
        from harness.compare import compare as compare_runs
        from harness.store import Store

        store = Store(config.store_path)
        verdicts = compare_runs(store, base_id, result.run_id)
        if confirm:
            verdicts = confirm_result(store, verdicts, confirm_trials)
        store.close()
        picked = " (latest: the newest other run that finished ok)" if baseline == "latest" else ""
        click.echo(f"\ncompared with baseline {base_id}{picked}:")
        click.echo(format_compare(verdicts))
        write_atomic(result.report_dir / "compare.md", compare_markdown(verdicts), "compare.md")
        if junit_path is not None:
            from harness.junit import write_junit

            click.echo(f"JUnit XML: {write_junit(verdicts, junit_path)}")
        exit_code = max(exit_code, verdicts.exit_code)
    sys.exit(exit_code)


def _baseline_run_id(ref: str, store_path: Path, exclude: str | None) -> str | None:
    """The run `--baseline` names (None: `latest` and no run yet); a missing one is a UserError."""
    from harness.compare import resolve_run_ref
    from harness.store import Store

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


# -- optimize / analyze --------------------------------------------------------------------------
def _model_options(f):
    for option in reversed([
        click.argument("model"),
        click.option("--weights", default=None, help="State dict for a built-in architecture."),
        click.option("--input-shape", default=None, help="Input shape, e.g. 1,3,224,224."),
        click.option("--data", "data_dir", default=None, help="ImageFolder directory."),
        click.option("--seed", type=NumberType(RUN_RULES["seed"]), default=0, show_default=True),
    ]):
        f = option(f)
    return f


def _load_model_and_data(model, weights, input_shape, data_dir, seed):
    from harness.run import _path_or_none, parse_input_shape
    from models.datasets import load_dataset
    from models.registry import resolve_model

    source = resolve_model(model, weights=_path_or_none(weights),
                           input_shape=parse_input_shape(input_shape))
    return source, load_dataset(source, _path_or_none(data_dir), seed=seed)


@cli.command()
@_model_options
@click.option("--variant", "variants", multiple=True, metavar="SPEC",
              help="baseline, or knobs like prune=0.5,ft=2,quant=int8 (repeatable).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--verbose", is_flag=True,
              help="Show torch/LiteRT/quantizer output on the terminal too (by default it goes "
                   "to reports/optimize-<time>/bench.log only).")
def optimize(model, weights, input_shape, data_dir, seed, variants, as_json, verbose):
    """Build variants of MODEL (prune, fine-tune, quantize, convert, verify) without devices;
    no --variant: the model's default set, as `bench run`."""
    from datetime import datetime

    from harness.optimize.pipeline import Pipeline
    from harness.paths import cache_dir
    from harness.report import format_table, variants_table
    from harness.run_log import run_output
    from harness.variants import default_variants, parse_variants

    specs = parse_variants(variants or default_variants(model))
    with run_output(Path("reports"), verbose=verbose) as out:
        out.reporter.run_started(datetime.now().strftime("optimize-%Y%m%d-%H%M%S"))
        source, data = _load_model_and_data(model, weights, input_shape, data_dir, seed)
        artifacts = Pipeline(source, data, cache_dir(), seed=seed,
                             log=out.reporter).build_all(specs)
    if as_json:
        click.echo(json.dumps([a.to_json_dict() | {"path": str(a.path)} for a in artifacts],
                              indent=1, default=str))
        return
    click.echo(format_table(variants_table(artifacts)))
    for a in artifacts:
        click.echo(f"  {a.name}: {a.path}")
    click.echo(f"log: {out.log_path}")


@cli.command()
@_model_options
@click.option("--ratio", type=number(), default=0.3, show_default=True,
              help="Pruning ratio of the per-group sensitivity scan.")
@click.option("--json", "as_json", is_flag=True)
def analyze(model, weights, input_shape, data_dir, seed, ratio, as_json):
    """Per-layer parameters, MACs and channels, a pruning sensitivity scan, and a verdict."""
    from harness.optimize.analyze import analyze_model, format_analysis

    if not 0 < ratio < 1:
        raise UserError(f"--ratio {ratio}: give a pruning ratio between 0 and 1, e.g. 0.3")
    source, data = _load_model_and_data(model, weights, input_shape, data_dir, seed)
    report = analyze_model(source, data, ratio=ratio)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1, default=str))
        return
    click.echo(format_analysis(report))



# -- devices ------------------------------------------------------------------------------------
@cli.command()
@click.option("--json", "as_json", is_flag=True, help="JSON list instead of a table.")
def devices(as_json):
    """List devices of every known adb server (the virtual lab's when one is up)."""
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd

    from harness.devices.discovery import known_servers, list_targets
    from harness.devices.session import DeviceInfo, DeviceSession
    from harness.errors import DeviceError

    targets, unreachable = list_targets(known_servers())

    def describe(t):
        if t.state != "device":
            return DeviceInfo(t.serial, t.server.name, t.state)
        try:
            return DeviceSession(t.serial, t.server, timeout_s=10).info()
        except DeviceError:
            return DeviceInfo(t.serial, t.server.name, "unresponsive")

    with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
        infos = [i.to_dict() for i in pool.map(describe, targets)]
    for name, why in unreachable.items():
        _echo_err(f"warning: {why}")
    if as_json:
        click.echo(json.dumps(infos, indent=1))
        return
    if not infos:
        click.echo("no devices (start a virtual lab with `bench lab up --virtual 2`)")
        return
    frame = pd.DataFrame(infos).rename(columns={"battery_pct": "battery %",
                                                "temperature_c": "temperature °C"})
    click.echo(frame.to_string(index=False, na_rep="-"))


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
    from harness.store import Store

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


# -- lab ----------------------------------------------------------------------------------------
@cli.group()
def lab():
    """A lab of virtual Android devices with an adb server of its own."""


@lab.command("up")
@click.option("--virtual", "n", type=integer(1), required=True, help="Number of virtual devices.")
@click.option("--shared-cpus", is_flag=True,
              help="Run every device on all host cores (default: host cores of its own each).")
@click.option("--authorize-key", "authorize_keys", multiple=True, metavar="PATH",
              type=click.Path(path_type=Path),
              help="Also trust this adb public key (an adbkey.pub; repeatable). By default the "
                   "devices trust only ~/.android/adbkey.pub, the key of the lab's adb server.")
@click.option("--serial-prefix", default="VIRT", show_default=True,
              help="The devices' ro.serialno is PREFIX0001, PREFIX0002...: give each lab host "
                   "of a cluster its own, so device identities stay unique.")
def lab_up_cmd(n, shared_cpus, authorize_keys, serial_prefix):
    """Start N virtual devices and their adb server; returns when all are `device`."""
    from harness.lab.virtual_lab import lab_up

    state = lab_up(n, own_cpus=not shared_cpus, authorize_keys=authorize_keys,
                   serial_prefix=serial_prefix)
    click.echo(f"virtual lab up: adb server 127.0.0.1:{state.adb_port} "
               f"(adb -P {state.adb_port} devices -l)")
    for d in state.devices:
        click.echo(f"  {d.serial}  device  (pid {d.pid}, {_host_cpus_text(d.host_cpus)}, "
                   f"sandbox {d.state_dir}/fs)")
    _warn_shared_cpus({d.serial: d.host_cpus for d in state.devices})


def _host_cpus_text(host_cpus: list[int] | None) -> str:
    return "all host cores" if not host_cpus else (
        "host core" + ("s " if len(host_cpus) > 1 else " ") + ",".join(map(str, host_cpus)))


def _warn_shared_cpus(slices: dict) -> None:
    from device_agents.virtual.cpus import shared_cores

    shared = shared_cores(slices)
    if shared:
        cores = ", ".join(f"{cpu} ({' '.join(names)})" for cpu, names in shared.items())
        click.echo(f"warning: devices share host cores {cores}: launches that overlap in time "
                   "slow each other down; compare such devices' timings with care", err=True)


@lab.command("join")
@click.option("--address", required=True, metavar="HEAD:PORT",
              help="The Ray cluster's head (`ray start --head --port PORT` on the head host).")
@click.option("--name", default=None, metavar="NAME",
              help="This lab host's name in results and `--devices server:NAME` (default: the "
                   "host name).")
@click.option("--adb-server", "adb_servers", multiple=True, metavar="HOST:PORT",
              help="Reach the devices of this adb server (repeatable; default: this host's: "
                   "[lab.servers], the virtual lab's, or 127.0.0.1:5037).")
@click.option("--ray-arg", "ray_args", multiple=True, metavar="ARG",
              help="Passed on to `ray start` (repeatable), e.g. --ray-arg=--node-ip-address=IP.")
def lab_join_cmd(address, name, adb_servers, ray_args):
    """Make this host a lab host of a Ray cluster: a Ray node and a host agent for its phones."""
    from device_agents.host_agent.join import join_lab

    servers = [_adb_server_option(text) for text in adb_servers] or None
    joined = join_lab(address, name, servers, tuple(ray_args))
    click.echo(f"lab host {joined.host} joined the cluster at {address} (node {joined.node_id})")
    for d in joined.devices:
        click.echo(f"  {d['serial']}  {d['state']}  ({d['identity'] or '?'}, "
                   f"model {d['model'] or '?'}, adb server {d['adb_server']})")
    if not joined.devices:
        click.echo("  no device yet: the agent adds phones as they come")


def _adb_server_option(text: str):
    from harness.devices.session import AdbServer

    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--adb-server {text}: give HOST:PORT, e.g. 127.0.0.1:5037")
    return AdbServer(host, int(port), name=text)


@lab.command("status")
@click.option("--json", "as_json", is_flag=True)
def lab_status_cmd(as_json):
    """Show the lab's adb server and devices."""
    from harness.lab.virtual_lab import lab_status

    status = lab_status()
    if as_json:
        click.echo(json.dumps(status, indent=1))
        return
    if not status["up"]:
        click.echo("no virtual lab is up")
        return
    alive = "running" if status["adb_server_alive"] else "NOT running"
    click.echo(f"adb server {status['adb_server']} ({alive})")
    for d in status["devices"]:
        proc = "running" if d["process_alive"] else "stopped"
        click.echo(f"  {d['serial']}  {d['adb_state']}  (process {proc}, pid {d['pid']}, "
                   f"{_host_cpus_text(d.get('host_cpus'))})")
    _warn_shared_cpus({d["serial"]: d.get("host_cpus") for d in status["devices"]})


@lab.command("down")
def lab_down_cmd():
    """Stop exactly the processes `bench lab up` started."""
    from harness.lab.virtual_lab import lab_down

    click.echo(f"virtual lab down ({lab_down()} process(es) stopped)")


@lab.command("fault")
@click.argument("serial")
@click.argument("settings", nargs=-1, metavar="NAME=VALUE...")
@click.option("--clear", is_flag=True, help="Switch every fault off first.")
def lab_fault_cmd(serial, settings, clear):
    """Switch faults of a running virtual device, e.g. battery_level=10 or benchmark_hang=true."""
    from harness.lab.virtual_lab import lab_fault

    changes = {}
    for setting in settings:
        name, sep, value = setting.partition("=")
        if not sep:
            raise UserError(f"{setting}: expected NAME=VALUE, e.g. temperature_c=48")
        changes[name] = _fault_value(value)
    active = lab_fault(serial, changes, clear=clear)
    click.echo(f"{serial}: faults now {active or 'none'}")


def _fault_value(text: str):
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null", "off"):
        return None
    # inf, nan, 1e999: no fault value (byte counts may pass 2**31, so a 64-bit bound here)
    check_number_text(text, f"fault value {text}", magnitude=2**63 - 1)
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    raise UserError(f"{text}: fault values are numbers, true/false or none")


from harness.cli_compare import register as _register_compare_commands  # noqa: E402

_register_compare_commands(cli)  # history, compare, tag


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        _echo_err("aborted")
        sys.exit(130)
    except click.UsageError as exc:  # bad flags: one line, like every bad input
        hint = (f" (see `{exc.ctx.command_path} --help`)"
                if exc.ctx and not isinstance(exc, OptionError) else "")
        _echo_err(f"error: {' '.join(exc.format_message().splitlines())}{hint}")
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BAD_INPUT as exc:  # UserError, and models' ModelInputError (see harness.errors)
        _echo_err(f"error: {exc}")
        sys.exit(2)
    except BenchError as exc:
        _echo_err(f"error: {exc}{_log_hint(exc)}")
        sys.exit(1)
    except KeyboardInterrupt:
        _echo_err("interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug: one line by default, the traceback on request
        if os.environ.get("BENCH_DEBUG"):
            raise
        _echo_err(f"internal error: {type(exc).__name__}: {exc} (set BENCH_DEBUG=1 for the "
                  f"traceback){_log_hint(exc)}")
        sys.exit(1)


def _log_hint(exc: BaseException) -> str:
    """Where the run's captured output went (harness.run_log), when it got that far."""
    path = getattr(exc, "bench_log", None)
    return f" (log: {path})" if path else ""
