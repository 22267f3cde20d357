"""`bench run`: build the artifact, measure it on every selected device at once, store, report."""
from __future__ import annotations

import json
import secrets
import shlex
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import harness
from harness.binaries import binary_for_abi
from harness.config import RunConfig
from harness.devices.discovery import DeviceTarget, known_servers, select_devices
from harness.devices.session import (EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, CommandTimeout,
                                     DeviceSession)
from harness.errors import BenchmarkError, DeviceError, UserError
from harness.results import PARSED_FIELDS, Measurement
from harness.store import Store

OUTPUT_TAIL_LINES = 40


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


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
        return 1 if self.failed or not self.measurements else 0


def run_benchmarks(config: RunConfig, log: Callable[[str], None] = lambda _m: None,
                   cache_dir: Path | None = None) -> RunResult:
    from harness.artifacts import sha256_file
    from harness.paths import cache_dir as default_cache_dir

    t0 = time.monotonic()
    for abi, path in config.binaries.items():  # bad paths are the user's to fix, before any work
        if not Path(path).expanduser().is_file():
            raise UserError(f"benchmark_model for {abi}: {path} is not a file; "
                            f"fix --binary {abi}=PATH or [binaries] in bench.toml")
    from harness.variants import parse_variants

    parse_variants(config.variants)  # a bad spec is the user's to fix before any device work
    targets = select_devices(config.devices, known_servers())
    log(f"devices: {', '.join(f'{t.serial} ({t.state})' for t in targets)}")

    artifacts = build_run_artifacts(config, cache_dir or default_cache_dir(), log)

    store = Store(config.store_path)
    run_id = new_run_id()
    store.start_run(run_id, utc_now(), harness.__version__, socket.gethostname(),
                    _config_dict(config))
    for artifact in artifacts:
        store.record_artifact(artifact.sha256, artifact.name, artifact.model_name,
                              artifact.variant, artifact.size_bytes, artifact.metadata)
    job = _DeviceJob(config, run_id, artifacts, store, sha256_file, log)
    # One thread per device: all devices at once, one job at a time on each.
    with ThreadPoolExecutor(max_workers=max(1, len(targets)), thread_name_prefix="device") as pool:
        measurements = [m for per_device in pool.map(job.run, targets) for m in per_device]
    bytes_pushed = sum(m.bytes_pushed or 0 for m in measurements)
    status = "ok" if all(m.status == "ok" for m in measurements) else "failed"
    store.finish_run(run_id, utc_now(), status, bytes_pushed)
    result = RunResult(run_id, measurements, bytes_pushed, artifacts,
                       seconds=time.monotonic() - t0)
    from harness.report import write_report
    result.report_dir = write_report(store, run_id, config.reports_dir)
    store.close()
    return result


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


@dataclass
class _PreparedDevice:
    session: DeviceSession
    info: object
    binary_sha256: str
    bytes_pushed: int


@dataclass
class _DeviceJob:
    """Everything one device does in a run: prepare once, then one benchmark per artifact."""

    config: RunConfig
    run_id: str
    artifacts: list
    store: Store
    sha256_file: Callable[[Path], str]
    log: Callable[[str], None]
    _binary_hashes: dict = field(default_factory=dict)

    def run(self, target: DeviceTarget) -> list[Measurement]:
        measurements: list[Measurement] = []
        prepared = None
        device_failure: Exception | None = None
        try:
            prepared = self._prepare(target)
        except (DeviceError, UserError) as exc:
            device_failure = exc
            self.log(f"{target.serial}: FAILED (device): {exc}")
        for index, artifact in enumerate(self.artifacts):
            m = self._new_measurement(target, artifact, prepared, first=index == 0)
            try:
                if device_failure is not None:
                    raise device_failure
                self._benchmark(prepared.session, artifact, m)
                m.status = "ok"
                self.log(f"{target.serial} [{artifact.variant}]: {m.inference_avg_us / 1000:.3f} ms "
                         f"avg over {m.inference_count} runs")
            except BenchmarkError as exc:
                m.error, m.failure_kind = str(exc), "benchmark"
                m.exit_status = exc.exit_status if m.exit_status is None else m.exit_status
                m.output_tail = m.output_tail or exc.output_tail
                self.log(f"{target.serial} [{artifact.variant}]: FAILED (benchmark): {exc}")
            except (DeviceError, UserError) as exc:
                m.error, m.failure_kind = str(exc), "device"
                if device_failure is None:
                    self.log(f"{target.serial} [{artifact.variant}]: FAILED (device): {exc}")
                device_failure = exc  # the link is gone: the remaining variants fail with it
            finally:
                m.finished_at = utc_now()
                self.store.add_measurement(m)  # committed before this device starts anything else
            measurements.append(m)
        return measurements

    def _new_measurement(self, target: DeviceTarget, artifact, prepared: _PreparedDevice | None,
                         first: bool) -> Measurement:
        m = Measurement(run_id=self.run_id, device_serial=target.serial,
                        adb_server=target.server.name, variant=artifact.variant,
                        status="failed", model_name=artifact.model_name,
                        artifact_sha256=artifact.sha256, model_size_bytes=artifact.size_bytes,
                        started_at=utc_now())
        if prepared is not None:
            info = prepared.info
            m.device_model, m.device_abi, m.device_sdk = info.model, info.abi, info.sdk
            m.battery_pct, m.temperature_c = info.battery_pct, info.temperature_c
            m.device_props_json = json.dumps(info.props, sort_keys=True)
            m.binary_sha256 = prepared.binary_sha256
            # The push serves every variant; it is counted once, on the first.
            m.bytes_pushed = prepared.bytes_pushed if first else 0
        return m

    def _prepare(self, target: DeviceTarget) -> _PreparedDevice:
        if target.state == "not found":
            raise DeviceError(f"device {target.serial} not found on adb server {target.server.name}")
        if target.state != "device":
            raise DeviceError(f"device {target.serial} is {target.state}")
        session = DeviceSession(target.serial, target.server)
        info = session.info()
        if info.state != "device":
            raise DeviceError(f"device {target.serial} is {info.state}")
        self.store.record_device(target.serial, target.server.name, info.model, info.abi,
                                 info.sdk, info.props, utc_now())
        binary = binary_for_abi(info.abi, self.config.binaries)
        binary_sha256 = self._hash(binary)
        files = [(binary, self._remote_binary(), binary_sha256, 0o755)]
        files += [(a.path, self._remote_model(a), a.sha256, 0o644) for a in self.artifacts]
        return _PreparedDevice(session, info, binary_sha256, session.push_cached(files))

    def _remote_binary(self) -> str:
        return f"{self.config.remote_dir}/benchmark_model"

    def _remote_model(self, artifact) -> str:
        return f"{self.config.remote_dir}/{artifact.path.name}"

    def _benchmark(self, session: DeviceSession, artifact, m: Measurement) -> None:
        from harness.benchmark.parser import parse_log

        settings = self.config.benchmark
        m.num_threads = settings.num_threads
        m.command = " ".join([shlex.quote(self._remote_binary()),
                              shlex.quote(f"--graph={self._remote_model(artifact)}"),
                              *settings.flags()])
        try:
            result = session.shell(m.command, timeout_s=settings.timeout_s())
        except CommandTimeout:
            # Closing the stream makes the device kill the process, as adbd does.
            raise BenchmarkError(f"benchmark_model timed out after {settings.timeout_s():g} s "
                                 f"(max_secs {settings.max_secs:g}); killed") from None
        m.exit_status = result.status
        output = result.stdout + result.stderr
        m.output_tail = "\n".join(output.rstrip().splitlines()[-OUTPUT_TAIL_LINES:])
        runs = parse_log(output)
        parsed = runs[-1] if runs else None
        if result.status in (EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND):
            raise BenchmarkError(f"benchmark_model could not start (exit {result.status}): "
                                 f"{_last_line(output)}", m.output_tail, result.status)
        if result.status != 0 or parsed is None or parsed.status != "ok":
            reason = (parsed.error if parsed is not None and parsed.error else _last_line(output))
            raise BenchmarkError(f"benchmark_model failed (exit {result.status}): {reason}",
                                 m.output_tail, result.status)
        for name in PARSED_FIELDS:
            setattr(m, name, getattr(parsed, name))

    def _hash(self, path: Path) -> str:
        if path not in self._binary_hashes:
            self._binary_hashes[path] = self.sha256_file(path)
        return self._binary_hashes[path]


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"
