"""`bench run`: build the artifact, measure it on every selected device at once, store, report."""
from __future__ import annotations

import json
import secrets
import shlex
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import harness
from harness.config import RunConfig, config_from_dict, validate_config
from harness.targets.adb.discovery import known_servers
from harness.errors import UserError
from harness.targets.adb.adb_binary import adb_path, adb_provenance
from harness.targets.locks import pid_namespace
from harness.executor import Executor, local_executor
from harness.benchmark.stop import stop_on_sigint
from harness.progress import Line, Reporter, as_reporter
from harness.results.schema import Measurement, RunStatus, final_records, utc_now
from harness.run_owner import RunOwnership, refuse_if_running, this_owner
from harness.results.store import Store


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


@dataclass
class RunResult:
    run_id: str
    measurements: list[Measurement]
    bytes_pushed: int
    artifacts: list = field(default_factory=list)
    report_dir: Path | None = None
    seconds: float = 0.0
    interrupted: bool = False  # stopped by Ctrl-C; `interrupted_line` says how to finish it
    jobs_stored: int = 0       # jobs of the run with a record, earlier sessions' included
    jobs_planned: int = 0
    store_path: Path | None = None
    summary: list = field(default_factory=list)  # a DeviceSummary per device (report.summary)

    @property
    def interrupted_line(self) -> str:
        return interrupted_line(self.run_id, self.jobs_stored, self.jobs_planned, self.store_path)

    @property
    def failed(self) -> list[Measurement]:
        return [m for m in self.measurements if m.status != "ok"]

    @property
    def exit_code(self) -> int:
        return 0 if _all_jobs_ok(self.measurements) else 1


def run_benchmarks(config: RunConfig, log: Line | Reporter | None = None,
                   cache_dir: Path | None = None, resume_run_id: str | None = None,
                   executor: Executor | None = None) -> RunResult:
    """Measure every variant on every selected device, all devices at once; with
    `resume_run_id`, finish only the jobs that run has no record of. No variants in the
    config: the model's default set (harness.optimize.variants.default_variants)."""
    from harness.optimize.artifacts import sha256_file
    from harness.benchmark.binaries import missing_binary_message, verify_binary_sha256
    from harness.benchmark.runner import DeviceRunner
    from harness.benchmark.jobs import DELEGATES, plan_jobs
    from harness.paths import cache_dir as default_cache_dir
    from harness.report import ensure_reports_dir
    from harness.optimize.variants import default_variants, parse_variants

    t0 = time.monotonic()
    log = as_reporter(log)
    if not config.variants:  # stored resolved, so a resume or a rerun builds the same set
        config = replace(config, variants=default_variants(config.model))
    validate_config(config)  # every setting against the one schema, before anything is written
    for abi, path in config.binaries.items():  # bad paths are the user's to fix, before any work
        if not Path(path).expanduser().is_file():
            raise UserError(missing_binary_message(abi, Path(path).expanduser(),
                                                   config.lab.binaries.get(abi)))
        pinned = config.lab.pinned_sha256().get(abi)
        if pinned:  # another build than the lab pinned: refused now, not per device later
            verify_binary_sha256(abi, Path(path).expanduser(), pinned)
    for delegate in config.delegates:
        if delegate not in DELEGATES:
            raise UserError(f"--delegate {delegate}: use one of {', '.join(DELEGATES)}")
    if config.trials < 1:
        raise UserError(f"--trials {config.trials}: give at least 1")
    parse_variants(config.variants)  # a bad spec is the user's to fix before any device work
    ensure_reports_dir(config.reports_dir)  # an unwritable one too, before any device time
    adb_path()  # and a BENCH_ADB that is no adb
    provider = device_provider(config)
    targets = provider.select(config.devices)  # a selector or cluster that finds nothing too
    Store(config.store_path).close()  # and a store this bench cannot use (newer, not SQLite)
    log(f"devices: {', '.join(f'{t.serial} ({t.listed_state})' for t in targets)}")

    cache_dir = cache_dir or default_cache_dir()
    artifacts, pipeline = build_run_artifacts(config, cache_dir, log, with_pipeline=True)
    if config.auto_trials and not resume_run_id:  # a resumed run keeps the count it chose
        config = replace(config, trials=auto_trials(config, artifacts, log))
    accuracy_plans = plan_run_accuracy(config, artifacts, pipeline, cache_dir, log)
    jobs = plan_jobs(len(artifacts), config.trials, list(config.delegates) or None,
                     list(config.threads) or None, config.peak_memory, config.op_profiling,
                     accuracy=bool(accuracy_plans))

    store = Store(config.store_path)
    staging = tempfile.TemporaryDirectory(prefix="bench-paired-")  # the baseline's links
    launched = list(artifacts)  # the runner's: this run's artifacts, then the baseline's
    if config.paired_baseline:
        jobs, launched = pair_with_baseline(store, config, artifacts, jobs, Path(staging.name),
                                            cache_dir, log)
    host, pid = this_owner()
    if resume_run_id:
        run_id = resume_run_id
        store.claim_run(run_id, host, pid, utc_now(), refuse_if_running, pid_namespace())
    else:
        run_id = new_run_id()
        store.start_run(run_id, utc_now(), harness.__version__, host, _config_dict(config),
                        owner_pid=pid, adb=adb_provenance(_local_adb_servers(targets)),
                        owner_pidns=pid_namespace())
    log.run_started(run_id)
    stop = threading.Event()  # set by the first Ctrl-C (harness.benchmark.stop)
    planned = len(jobs) * len(targets)
    try:
        # Owned from here on: a heartbeat while it runs, and `interrupted`, never `running`,
        # if anything below fails.
        with RunOwnership(store, run_id):
            done = set()
            if resume_run_id:
                kept = store.ingest_journal(run_id)  # samples a full disk could not take
                done = store.done_job_keys(run_id)
                log(f"resuming run {run_id}: {len(done)} job(s) already recorded"
                    + (f", {kept} sample(s) of them from {store.journal.path}" if kept else ""))
            store.journal.reserve()  # a disk that fills mid-run still takes samples in flight
            for artifact in artifacts:
                store.record_artifact(artifact.sha256, artifact.name, artifact.model_name,
                                      artifact.variant, artifact.size_bytes, artifact.metadata,
                                      str(artifact.path))
            runner = DeviceRunner(config, run_id, launched, jobs, store, sha256_file, log,
                                  done, stop, accuracy_plans)
            # All devices at once, one job at a time on each.
            with stop_on_sigint(stop, log):
                executor = executor or local_executor()
                executor.map(runner.run, targets)
                if config.retry_on_sibling and runner.lost and not stop.is_set():
                    retry_lost_on_siblings(runner, targets, executor, log)
    except KeyboardInterrupt:  # a second Ctrl-C: the devices are not waited for
        stop.set()  # (their threads, left to die with the process, start nothing more)
        store.stop_run(run_id, utc_now(), RunStatus.INTERRUPTED)
        store.journal.release()
        raise RunInterrupted(run_id, len(store.done_job_keys(run_id)), planned,
                             config.store_path) from None
    except BaseException:
        store.journal.release()
        raise
    finally:
        staging.cleanup()
    measurements = store.measurements(run_id)
    bytes_pushed = sum(m.bytes_pushed or 0 for m in measurements)
    status = (RunStatus.INTERRUPTED if stop.is_set() else
              RunStatus.OK if _all_jobs_ok(measurements) else RunStatus.FAILED)
    store.finish_run(run_id, utc_now(), status, bytes_pushed)
    result = RunResult(run_id, measurements, bytes_pushed, artifacts,
                       seconds=time.monotonic() - t0, interrupted=stop.is_set(),
                       jobs_stored=len(store.done_job_keys(run_id)), jobs_planned=planned,
                       store_path=config.store_path)
    store.journal.release()
    from harness.report import write_report
    from harness.report.summary import summarise
    # From what is in hand (the run's samples, its artifacts), not read back from the store.
    result.summary = summarise(measurements, artifacts)
    try:  # a report that cannot be written is a StorageError; the samples are in the store
        result.report_dir = write_report(store, run_id, config.reports_dir)
    except KeyboardInterrupt:
        if result.interrupted:  # Ctrl-C again while the report was being written
            raise RunInterrupted(run_id, result.jobs_stored, planned, config.store_path) from None
        raise
    finally:
        store.close()
    return result


def auto_trials(config: RunConfig, artifacts: list, log: Reporter) -> int:
    """`--trials auto`: the trials (pairs) the run's keys need by the noise seen in their last
    runs (harness.regress.noise), within the time budget; what was chosen is logged."""
    from harness.regress.compare import Thresholds
    from harness.regress.noise import choose_trials, key_noise

    thresholds = Thresholds()
    store = Store(config.store_path)
    try:
        noise = key_noise(store, thresholds.statistic)
    finally:
        store.close()
    wanted = [(a.model_name, a.variant, d or "default", None if t is None else str(t))
              for a in artifacts for d in (config.delegates or [None])
              for t in (config.threads or [None])]
    choice = choose_trials(noise, wanted, thresholds.ratio, thresholds.alpha,
                           config.time_budget_s or None, paired=bool(config.paired_baseline))
    for line in choice.lines:
        log(f"--trials auto: {line}")
    return choice.pairs


def pair_with_baseline(store, config: RunConfig, artifacts: list, jobs: list, staging: Path,
                       cache_dir: Path, log: Reporter) -> tuple[list, list]:
    """(jobs, artifacts to launch) with the baseline run's artifacts paired beside this run's
    timing launches (harness.benchmark.pairing); variants left unpaired are said, loudly: their
    verdicts will be across runs."""
    from harness.benchmark.pairing import interleave_pairs, plan_paired_baseline

    paired = plan_paired_baseline(store, config.paired_baseline, artifacts, staging, cache_dir)
    for variant, why in paired.not_paired.items():
        log(f"WARNING: {variant}: not paired with baseline {config.paired_baseline}: {why}; "
            "its latency verdict will compare the two runs (cross-run), which night-to-night "
            "drift makes far less sensitive")
    if paired.partner:
        log(f"paired with baseline {config.paired_baseline}: "
            f"{len(paired.partner)} variant(s), each timing launch beside one of the baseline's "
            "artifact, in a random order per pair")
    return (interleave_pairs(jobs, paired.partner, config.seed),
            list(artifacts) + paired.artifacts)


SIBLING_ROLE = "for "  # + the lost device's id: the role of a job re-run on a sibling


def retry_lost_on_siblings(runner, targets: list, executor: Executor, log: Reporter) -> None:
    """`--retry-on-sibling`: each job lost with its lab host runs again on a phone of the same
    model on another host that is still up (the least loaded one), as role `for DEVICE_ID`.
    The lost record stays lost (`--resume` still measures it on its own device)."""
    lost_hosts = {lost.target.host for lost in runner.lost}
    siblings = [t for t in targets if t.host not in lost_hosts and runner.models.get(t.key)]
    plan: dict[int, list] = {}
    for lost in runner.lost:
        same_model = [i for i, t in enumerate(siblings)
                      if lost.device_model and runner.models[t.key] == lost.device_model]
        if not same_model:
            log(f"{lost.device_id}: no sibling of model {lost.device_model or '?'} on another "
                "lab host; its lost jobs wait for --resume")
            continue
        chosen = min(same_model, key=lambda i: len(plan.get(i, [])))
        plan.setdefault(chosen, []).append(replace(lost.job, role=SIBLING_ROLE + lost.device_id))
    if plan:
        log(f"retrying {sum(map(len, plan.values()))} lost job(s) on sibling devices: "
            + ", ".join(f"{siblings[i].serial} ({len(jobs)})" for i, jobs in plan.items()))
        executor.map(lambda item: runner.run(siblings[item[0]], jobs=item[1]), list(plan.items()))


def device_provider(config: RunConfig):
    """Where the run's devices come from: the lab hosts of a Ray cluster (`--cluster`), else
    this host's adb servers (configured, the virtual lab's, or the local default)."""
    if config.cluster:
        from harness.targets.cluster import RayProvider

        return RayProvider(config.cluster)
    from harness.targets.adb.provider import AdbProvider

    return AdbProvider(known_servers(config.lab), config.lab)


def _local_adb_servers(targets) -> set:
    """The adb servers this host talks to itself (a cluster's are the lab hosts' own)."""
    from harness.targets.adb.provider import AdbTarget

    return {t.device.server for t in targets if isinstance(t, AdbTarget)}


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C twice: the run is marked interrupted without waiting for its devices; the samples
    that finished are stored, and `--resume` does the rest."""

    def __init__(self, run_id: str, jobs_stored: int, jobs_planned: int, store_path: Path):
        self.line = interrupted_line(run_id, jobs_stored, jobs_planned, store_path)
        super().__init__(self.line)


def interrupted_line(run_id: str, jobs_stored: int, jobs_planned: int, store_path) -> str:
    return (f"interrupted: {jobs_stored} of {jobs_planned} launch(es) stored; finish with: "
            f"bench run --resume {shlex.quote(run_id)} --store {shlex.quote(str(store_path))}")


def resume_benchmarks(run_id: str, store_path: Path, log: Line | Reporter | None = None,
                      cache_dir: Path | None = None, executor: Executor | None = None,
                      cluster: str | None = None) -> RunResult:
    """`bench run --resume RUN_ID`: the same config, only the jobs with no record yet (on the
    cluster at `cluster` when given: its head may have moved since)."""
    if not Path(store_path).exists():
        raise UserError(f"--store {store_path}: no results store there to resume from")
    store = Store(store_path)
    run = store.run(run_id)
    store.close()
    if run is None:
        raise UserError(f"--resume {run_id}: no such run in {store_path}")
    refuse_if_running(run)  # before any model is built; checked again when taking it over
    config = config_from_dict(json.loads(run["config_json"]))
    config.store_path = Path(store_path)
    if cluster:
        config.cluster = cluster
    return run_benchmarks(config, log, cache_dir, resume_run_id=run_id, executor=executor)


def _all_jobs_ok(measurements: list[Measurement]) -> bool:
    """Every job's final record is ok (a retried job counts by its last attempt)."""
    final = final_records(measurements)
    # A launch the binary cannot do (unavailable) is reported, not failed; but a run that
    # measured nothing at all is not ok.
    return (any(m.status == "ok" for m in final)
            and all(m.status in ("ok", "unavailable") for m in final))


def build_run_artifacts(config: RunConfig, cache_dir: Path, log: Reporter,
                        with_pipeline: bool = False):
    """One artifact per variant of the configured model (built, or taken from the cache);
    `with_pipeline`: (artifacts, the Pipeline that built them, which holds the data)."""
    from harness.optimize.pipeline import Pipeline
    from harness.optimize.variants import parse_variants
    from models.datasets import load_dataset
    from models.registry import resolve_model

    specs = parse_variants(config.variants)  # bad specs fail before any model is loaded
    from models.inputs import parse_inputs

    source = resolve_model(config.model, weights=_path_or_none(config.weights),
                           input_shape=parse_input_shape(config.input_shape),
                           inputs=parse_inputs(config.inputs))
    data = load_dataset(source, _path_or_none(config.data_dir), seed=config.seed)
    pipeline = Pipeline(source, data, cache_dir, seed=config.seed, log=log)
    artifacts = pipeline.build_all(specs)
    return (artifacts, pipeline) if with_pipeline else artifacts


def plan_run_accuracy(config: RunConfig, artifacts: list, pipeline, cache_dir: Path,
                      log: Reporter) -> dict:
    """artifact sha256 -> AccuracyPlan for `--accuracy-on-device N` (empty when off): the
    first N test samples as each variant's input files, with the host's answers to them."""
    if not config.accuracy_on_device:
        return {}
    from harness.benchmark.device_accuracy import plan_device_accuracy

    if "," in config.remote_dir:  # --input_layer_value_files separates its items with commas
        raise UserError(f"remote_dir {config.remote_dir}: accuracy on the device needs a device "
                        "folder without a comma")
    data = pipeline.data
    samples = min(config.accuracy_on_device, len(data.x_test))
    baseline = pipeline.torch_baseline_top1(samples)
    plans = {}
    for artifact in artifacts:
        plans[artifact.sha256] = plan = plan_device_accuracy(
            artifact, data.x_test, data.y_test, baseline, samples, cache_dir,
            config.remote_dir, per_sample=config.accuracy_per_sample)
        if plan.unavailable:
            log(f"{artifact.variant}: no accuracy on the device: {plan.unavailable}")
    shown = next(iter(plans.values()), None)
    if shown is not None and not shown.unavailable:
        log(f"accuracy on the device: {samples} {data.name} samples per variant, "
            f"{len(shown.launches)} launch(es) each")
    return plans


def _path_or_none(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


def parse_input_shape(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        shape = ()
    if len(shape) < 2 or any(v < 1 for v in shape):
        raise UserError(f"--input-shape {text}: expected positive integers like 1,3,224,224")
    return shape


def _config_dict(config: RunConfig) -> dict:
    data = asdict(config)
    return json.loads(json.dumps(data, default=str))
