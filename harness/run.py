"""`bench run`: build the artifact, measure it on every selected device at once, store, report."""
from __future__ import annotations

import json
import secrets
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import harness
from harness.config import RunConfig
from harness.devices.discovery import known_servers, select_devices
from harness.errors import UserError
from harness.results import Measurement, utc_now
from harness.store import Store


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

    @property
    def failed(self) -> list[Measurement]:
        return [m for m in self.measurements if m.status != "ok"]

    @property
    def exit_code(self) -> int:
        return 0 if _all_jobs_ok(self.measurements) else 1


def run_benchmarks(config: RunConfig, log: Callable[[str], None] = lambda _m: None,
                   cache_dir: Path | None = None, resume_run_id: str | None = None) -> RunResult:
    """Measure every variant on every selected device, all devices at once; with
    `resume_run_id`, finish only the jobs that run has no record of."""
    from harness.artifacts import sha256_file
    from harness.lab.device_runner import DeviceRunner
    from harness.lab.jobs import DELEGATES, plan_jobs
    from harness.paths import cache_dir as default_cache_dir
    from harness.variants import parse_variants

    t0 = time.monotonic()
    for abi, path in config.binaries.items():  # bad paths are the user's to fix, before any work
        if not Path(path).expanduser().is_file():
            raise UserError(f"benchmark_model for {abi}: {path} is not a file; "
                            f"fix --binary {abi}=PATH or [binaries] in bench.toml")
    for delegate in config.delegates:
        if delegate not in DELEGATES:
            raise UserError(f"--delegate {delegate}: use one of {', '.join(DELEGATES)}")
    if config.trials < 1:
        raise UserError(f"--trials {config.trials}: give at least 1")
    parse_variants(config.variants)  # a bad spec is the user's to fix before any device work
    targets = select_devices(config.devices, known_servers(config.lab), config.lab)
    log(f"devices: {', '.join(f'{t.serial} ({t.state})' for t in targets)}")

    artifacts = build_run_artifacts(config, cache_dir or default_cache_dir(), log)
    jobs = plan_jobs(len(artifacts), config.trials, list(config.delegates) or None,
                     list(config.threads) or None, config.peak_memory, config.op_profiling)

    store = Store(config.store_path)
    if resume_run_id:
        run_id, done = resume_run_id, store.done_job_keys(resume_run_id)
        log(f"resuming run {run_id}: {len(done)} job(s) already recorded")
    else:
        run_id, done = new_run_id(), set()
        store.start_run(run_id, utc_now(), harness.__version__, socket.gethostname(),
                        _config_dict(config))
    for artifact in artifacts:
        store.record_artifact(artifact.sha256, artifact.name, artifact.model_name,
                              artifact.variant, artifact.size_bytes, artifact.metadata,
                              str(artifact.path))
    runner = DeviceRunner(config, run_id, artifacts, jobs, store, sha256_file, log, done)
    # One thread per device: all devices at once, one job at a time on each.
    with ThreadPoolExecutor(max_workers=max(1, len(targets)), thread_name_prefix="device") as pool:
        list(pool.map(runner.run, targets))
    measurements = store.measurements(run_id)
    bytes_pushed = sum(m.bytes_pushed or 0 for m in measurements)
    status = "ok" if _all_jobs_ok(measurements) else "failed"
    store.finish_run(run_id, utc_now(), status, bytes_pushed)
    result = RunResult(run_id, measurements, bytes_pushed, artifacts,
                       seconds=time.monotonic() - t0)
    from harness.report import write_report
    result.report_dir = write_report(store, run_id, config.reports_dir)
    store.close()
    return result


def resume_benchmarks(run_id: str, store_path: Path, log: Callable[[str], None] = lambda _m: None,
                      cache_dir: Path | None = None) -> RunResult:
    """`bench run --resume RUN_ID`: the same config, only the jobs with no record yet."""
    if not Path(store_path).exists():
        raise UserError(f"--store {store_path}: no results store there to resume from")
    store = Store(store_path)
    run = store.run(run_id)
    store.close()
    if run is None:
        raise UserError(f"--resume {run_id}: no such run in {store_path}")
    config = config_from_dict(json.loads(run["config_json"]))
    config.store_path = Path(store_path)
    return run_benchmarks(config, log, cache_dir, resume_run_id=run_id)


def config_from_dict(data: dict) -> RunConfig:
    from harness.config import BenchmarkSettings, LabConfig

    data = dict(data)
    benchmark = BenchmarkSettings(**data.pop("benchmark", {}))
    lab = LabConfig.from_dict(data.pop("lab", {}) or {})
    known = {f for f in RunConfig.__dataclass_fields__}
    config = RunConfig(**{k: v for k, v in data.items() if k in known}, benchmark=benchmark, lab=lab)
    config.store_path, config.reports_dir = Path(config.store_path), Path(config.reports_dir)
    return config


def _all_jobs_ok(measurements: list[Measurement]) -> bool:
    """Every job's final record is ok (a retried job counts by its last attempt)."""
    final = [m for m in measurements if m.status != "retried"]
    return bool(final) and all(m.status == "ok" for m in final)


def build_run_artifacts(config: RunConfig, cache_dir: Path, log: Callable[[str], None]) -> list:
    """One artifact per variant of the configured model (built, or taken from the cache)."""
    from harness.optimize.pipeline import Pipeline
    from harness.variants import parse_variants
    from models.datasets import load_dataset
    from models.registry import resolve_model

    specs = parse_variants(config.variants)  # bad specs fail before any model is loaded
    source = resolve_model(config.model, weights=_path_or_none(config.weights),
                           input_shape=parse_input_shape(config.input_shape))
    data = load_dataset(source, _path_or_none(config.data_dir), seed=config.seed)
    return Pipeline(source, data, cache_dir, seed=config.seed, log=log).build_all(specs)


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
