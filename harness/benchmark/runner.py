"""One device's share of a run: lock it, prepare it, then launch its jobs one after another.

Each launch becomes one stored sample (committed before the next launch starts) with the
telemetry seen before and after it. A dropped device is waited for and the job retried; a
crash or hang is recorded and not retried (the artifact, not the link, is at fault); a device
that fails several jobs in a row is quarantined for the rest of the run. Once `stop` is set
(Ctrl-C), no new launch starts and the launch in progress is abandoned: its stream is closed, so
the device kills the benchmark, and nothing is stored for it.
"""
from __future__ import annotations

import json
import shlex
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness.benchmark.command import (benchmark_command, dropped_settings, input_layer_flags, launch_threads,
                                       unavailable_reason)
from harness.benchmark.binaries import (binary_for_abi, binary_version, remote_binary_path,
                                         shipped_flavour)
from harness.benchmark.tool import probe_tool
from harness.config import RunConfig
from harness.errors import BenchmarkError, DeviceError, StorageError, UserError
from harness.benchmark.jobs import Job, device_identity
from harness.progress import Line, Reporter, Task, as_reporter
from harness.results.schema import PARSED_FIELDS, Measurement, MeasurementStatus, utc_now
from harness.results.store import Store
from harness.targets.base import (EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, NOT_FOUND, ONLINE, Cancelled,
                                  CommandTimeout, HostLost, RemoteFileError, Target,
                                  TargetFile)

OUTPUT_TAIL_LINES = 40
# An accuracy job gives up after this many launches in a row failed alike (a delegate that
# cannot be created, a model the binary refuses): the rest would fail the same way.
SAME_FAILURES_TO_STOP = 3
# A snapshot taken right after one launch is the before-reading of the next if this recent.
FRESH_TELEMETRY_S = 2.0
EXIT_SIGNAL_BASE = 128


@dataclass
class LostJob:
    """A job lost with its device's lab host: `--retry-on-sibling` runs it on another phone of
    the same model (run.retry_lost_on_siblings)."""

    target: Target
    job: Job
    device_id: str
    device_model: str | None


@dataclass
class _Prepared:
    target: Target
    info: object
    binary_sha256: str
    bytes_pushed: int
    big_cores: list[int] = field(default_factory=list)
    mask_hex: str | None = None
    topology: object = None           # CpuTopology
    tool: object = None               # ToolInfo: the binary's flavour and flags (probed)
    last_telemetry: object = None     # after-telemetry of the previous launch ...
    last_telemetry_at: float = 0.0    # ... and when (monotonic): fresh ones stand in for a read
    sample_files_pushed: int = 0      # accuracy samples' files this preparation sent ...
    sample_bytes_pushed: int = 0      # ... and their bytes (the rest were on the device)


class DeviceRunner:
    def __init__(self, config: RunConfig, run_id: str, artifacts: list, jobs: list[Job],
                 store: Store, sha256_of: Callable[[Path], str], log: Line | Reporter,
                 done_keys: set[str] | None = None, stop: threading.Event | None = None,
                 accuracy_plans: dict | None = None):
        self.config, self.run_id, self.artifacts, self.jobs = config, run_id, artifacts, jobs
        # artifact sha256 -> AccuracyPlan (harness.benchmark.device_accuracy), for accuracy jobs
        self.accuracy_plans = accuracy_plans or {}
        self.store, self.sha256_of, self.log = store, sha256_of, as_reporter(log)
        self._launch_tasks: dict[tuple[str, str], Task] = {}  # per device: launches done/total
        self.done_keys = done_keys or set()
        self.stop = stop or threading.Event()
        self._device_ids: dict[tuple[str, str], str] = {}  # (server address, adb serial) -> id
        self.models: dict[tuple[str, str], str | None] = {}  # target key -> ro.product.model
        self.lost: list[LostJob] = []  # jobs lost with their lab host (list.append: thread-safe)
        self._conditions: dict[tuple[str, str], object] = {}  # target key -> DeviceConditions
        self._stacks: dict[tuple[str, str], ExitStack] = {}   # target key -> its share's stack

    # -- the loop ----------------------------------------------------------------------------
    def run(self, target: Target, jobs: list[Job] | None = None) -> list[Measurement]:
        """The device's share: every job of the run (or `jobs`) it has no record of."""
        results: list[Measurement] = []
        self._device_ids[target.key] = self._read_device_id(target)
        todo = [j for j in (self.jobs if jobs is None else jobs) if not self._done(j, target)]
        if not todo:
            return results
        launches = self.log.task(self._device_id(target), total=len(todo), unit="launches")
        self._launch_tasks[target.key] = launches
        with ExitStack() as stack:
            stack.callback(launches.finish)
            prepared, failure = None, None
            try:
                if target.listed_state == NOT_FOUND:
                    raise DeviceError(f"device {target.serial} not found on adb server "
                                      f"{target.provider_name}")
                self._lock_device(target, stack)
                prepared = self._prepare_with_retries(target)
                self._stacks[target.key] = stack
                stack.callback(self._forget, target.key)
                self._tune(target, prepared)
            except (DeviceError, UserError) as exc:
                failure = exc
                self.log(f"{target.serial}: {_lost_or_failed(exc)} (device): {exc}")
            except Cancelled:
                return results
            consecutive_failures = 0
            first_launch = True
            for job in todo:
                if self.stop.is_set():
                    break  # Ctrl-C: no new launch; the jobs left are --resume's
                if self._done(job, target):
                    continue  # done under the id the device gave once it answered (_prepare)
                if failure is not None:
                    m = self._record_without_launch(target, job, prepared, failure,
                                                    _lost_or_failed(failure), "device")
                    results.append(m)
                    self._note_if_lost(target, job, m)
                    launches.advance()
                    continue
                if consecutive_failures >= self.config.quarantine_after:
                    reason = (f"device quarantined after {consecutive_failures} failed jobs in a row")
                    results.append(self._record_without_launch(
                        target, job, prepared, reason, MeasurementStatus.SKIPPED, "quarantine"))
                    launches.advance()
                    continue
                m, prepared = self._run_job(target, job, prepared, first=first_launch)
                first_launch = False
                if m is None:
                    break  # stopped mid-launch: nothing stored for it
                results.append(m)  # counted by _run_job as it ended
                if m.status == MeasurementStatus.LOST:  # its host left: the rest is lost too,
                    failure = HostLost(m.error)  # without waiting for the host job by job
                    self._note_if_lost(target, job, m)
                    continue
                # An invalid sample is the device's heat, an unavailable one the binary's
                # missing flag: neither is a failure of the device.
                healthy = m.status in (MeasurementStatus.OK, MeasurementStatus.INVALID,
                                       MeasurementStatus.UNAVAILABLE)
                consecutive_failures = 0 if healthy else consecutive_failures + 1
                if consecutive_failures == self.config.quarantine_after:
                    self.log(f"{target.serial}: quarantined after {consecutive_failures} failed jobs in a row")
        return results

    def _tune(self, target: Target, prepared: _Prepared) -> None:
        """Set the device up for measuring until its share of the run ends (undone then, last
        tuning first); again after it came back, as a phone that rebooted lost it all."""
        self._conditions[target.key] = self._stacks[target.key].enter_context(
            _tuned(prepared, self.config))

    def _forget(self, key: tuple[str, str]) -> None:
        self._conditions.pop(key, None)
        self._stacks.pop(key, None)

    def _note_if_lost(self, target: Target, job: Job, m: Measurement) -> None:
        if m.status == MeasurementStatus.LOST:
            self.lost.append(LostJob(target, job, m.device_id or target.serial, m.device_model))

    def _lock_device(self, target: Target, stack: ExitStack) -> None:
        """Hold the device for this run: first this host's lock (bench processes sharing the
        state dir queue there, without asking the device), then the device's own, which every
        other bench that can reach the device honours."""
        from harness.targets.device_lock import OnDeviceLock
        from harness.targets.locks import DeviceBusy, DeviceLock, LockOwner

        owner = LockOwner.this_process(self.run_id)
        wait = self.config.busy == "wait"
        timeout_s = self.config.effective_hygiene().cooldown_deadline_s + 3600
        # Keyed by the server's address, not its name: two configs naming one server
        # differently still share its phones' locks.
        stack.enter_context(DeviceLock(target.serial, target.key[0], wait=wait,
                                       timeout_s=timeout_s, owner=owner, stop=self.stop))
        if target.listed_state != ONLINE:
            target.recover(self.config.device_wait_s, self.stop)
        for attempt in range(self.config.retries + 1):
            lock = OnDeviceLock(target, owner, wait=wait,
                                timeout_s=timeout_s, stop=self.stop, log=self.log)
            try:
                stack.enter_context(lock)
                return
            except DeviceError as exc:
                if isinstance(exc, DeviceBusy) or attempt == self.config.retries:
                    raise
                target.recover(self.config.device_wait_s, self.stop)

    def _run_job(self, target: Target, job: Job, prepared: _Prepared, first: bool):
        """The job's final record and the (maybe re-made) preparation; (None, prepared) when
        the run was stopped before the job finished."""
        artifact = self.artifacts[job.artifact_index]
        role = f" {job.role}" if job.role else ""
        what = f"{artifact.variant} {job.kind}{role} #{job.trial}"
        # The job's end is counted and said before its record is committed (tests time
        # storage faults on the "ms avg" line).
        ended = self._launch_tasks[target.key].advance
        for attempt in range(1, self.config.retries + 2):
            if self.stop.is_set():
                return None, prepared
            m = self._new_measurement(target, job, prepared, first and attempt == 1)
            m.attempt = attempt
            try:
                ops = self._launch(prepared, artifact, job, m)
                ended(note=f"{what}: " + (_ok_note(m) if m.status == MeasurementStatus.OK
                                          else f"{m.status}: {m.error}"))
                return self._commit(m, ops), prepared
            except Cancelled:
                self.log(f"{target.serial} [{artifact.variant} {job.kind} #{job.trial}]: stopped "
                         "(interrupted); the launch was killed and is not stored")
                return None, prepared
            except BenchmarkError as exc:
                m.status = _failure_status(exc)
                m.error, m.failure_kind = str(exc), "benchmark"
                m.exit_status = exc.exit_status if m.exit_status is None else m.exit_status
                m.output_tail = m.output_tail or exc.output_tail
                ended(note=f"{what}: {m.status}: {exc}")
                return self._commit(m), prepared
            except (DeviceError, UserError) as exc:
                m.error, m.failure_kind = str(exc), "device"
                m.status = _lost_or_failed(exc)
                last_attempt = attempt == self.config.retries + 1
                if last_attempt:
                    ended(note=f"{what}: device error: {exc}")
                    return self._commit(m), prepared
                self.log(f"{target.serial} [{what}]: device error, waiting for it to come "
                         f"back: {exc}")
                # The failed attempt is stored too, as "retried": nothing finished is ever lost,
                # the retry shows in the results, and --resume does not count it as done.
                m.status = MeasurementStatus.RETRIED
                self._commit(m)
                try:
                    target.recover(self.config.device_wait_s, self.stop)
                    prepared = self._prepare(target)
                    if target.key in self._stacks:
                        self._tune(target, prepared)
                except Cancelled:
                    return None, prepared
                except (DeviceError, UserError) as again:
                    m2 = self._new_measurement(target, job, prepared, False)
                    m2.attempt, m2.error, m2.failure_kind = attempt + 1, str(again), "device"
                    m2.status = _lost_or_failed(again)
                    ended(note=f"{what}: device error: {again}")
                    return self._commit(m2), prepared
        raise AssertionError("unreachable")

    # -- one launch --------------------------------------------------------------------------
    def _launch(self, prepared: _Prepared, artifact, job: Job, m: Measurement) -> list:
        """Fill `m` from one launch; returns the op profile rows (op_profile jobs only)."""
        from harness.benchmark.parser import parse_log
        from harness.targets.hygiene import wait_until_ready

        target = prepared.target
        why_not = unavailable_reason(prepared.tool, job.delegate, job.kind,
                                     self.config.benchmark)
        if why_not:  # never launched with a flag the binary lacks: the feature is unavailable
            m.status, m.failure_kind, m.error = MeasurementStatus.UNAVAILABLE, "unavailable", why_not
            return []
        fresh = time.monotonic() - prepared.last_telemetry_at < FRESH_TELEMETRY_S
        readiness = wait_until_ready(target, self.config.effective_hygiene(),
                                     sleep=self._cool_down,
                                     first_reading=prepared.last_telemetry if fresh else None)
        m.telemetry_before_json = json.dumps(readiness.after.to_dict())
        m.battery_pct, m.temperature_c = readiness.after.battery_pct, readiness.after.gate_temp_c
        if not readiness.ok:
            m.status, m.failure_kind = MeasurementStatus.INVALID, "hygiene"
            m.error = readiness.reason
            return []
        settings = self.config.benchmark
        m.num_threads = launch_threads(job.threads, settings, prepared.big_cores)
        conditions = self._conditions.get(target.key)
        m.cpu_mask = conditions.cpu_mask if conditions is not None else None
        if job.kind == "accuracy":
            self._accuracy(prepared, artifact, job, m)
            return []
        command = m.command = benchmark_command(
            self._remote_binary(), self._remote_model(artifact), settings,
            num_threads=m.num_threads, kind=job.kind, delegate=job.delegate,
            cpu_mask_hex=m.cpu_mask, tool=prepared.tool,
            extra_flags=input_layer_flags((artifact.metadata or {}).get("inputs"), prepared.tool))
        started = time.monotonic()
        try:
            result = target.shell(command, timeout_s=settings.timeout_s(), cancel=self.stop)
            m.launch_seconds = time.monotonic() - started
        except CommandTimeout:
            # Closing the stream makes the device kill the process, as adbd does.
            raise BenchmarkError(f"benchmark_model timed out after {settings.timeout_s():g} s "
                                 f"(max_secs {settings.max_secs:g}); killed") from None
        m.exit_status = result.status
        output = result.stdout + result.stderr
        m.output_tail = _tail(output)
        try:
            after = target.telemetry()
            m.telemetry_after_json = json.dumps(after.to_dict())
            prepared.last_telemetry, prepared.last_telemetry_at = after, time.monotonic()
        except DeviceError:
            pass  # the sample stands; only its after-telemetry is missing
        runs = parse_log(output)
        parsed = runs[-1] if runs else None
        if result.status in (EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND):
            raise BenchmarkError(f"benchmark_model could not start (exit {result.status}): "
                                 f"{_last_line(output)}", m.output_tail, result.status)
        if result.status != 0 or parsed is None or parsed.status != "ok":
            reason = parsed.error if parsed is not None and parsed.error else _last_line(output)
            raise BenchmarkError(f"benchmark_model failed (exit {result.status}): {reason}",
                                 m.output_tail, result.status)
        for name in PARSED_FIELDS:
            setattr(m, name, getattr(parsed, name))
        if m.tool_flavour is None:  # the probe learnt nothing; the output tells which tool ran
            m.tool_flavour = parsed.tool_flavour
        m.status = MeasurementStatus.OK
        return parsed.ops if job.kind == "op_profile" else []

    def _accuracy(self, prepared: _Prepared, artifact, job: Job, m: Measurement) -> None:
        """Fill `m` from the accuracy job: one launch per sample file, each launch's output
        file pulled and decoded; a launch that fails is that sample's failure, the others go
        on. A lost link raises DeviceError (the job is retried whole), a stop Cancelled."""
        from harness.benchmark.device_accuracy import (OutputFileError, decode_outputs, judge,
                                                       output_remote_path, removing_then,
                                                       sample_flags)
        from harness.benchmark.parser import parse_log

        plan = self.accuracy_plans.get(artifact.sha256)
        if plan is None or plan.unavailable:
            m.status, m.failure_kind = MeasurementStatus.UNAVAILABLE, "unavailable"
            m.error = (f"accuracy on the device: {plan.unavailable}" if plan is not None
                       else "accuracy on the device: no samples for this variant")
            return
        target, settings = prepared.target, self.config.benchmark
        started = time.monotonic()
        scores: dict[int, object] = {}
        failures: list[dict] = []
        last_ok_output = None
        for index, launch in enumerate(plan.launches):
            if self.stop.is_set():
                raise Cancelled("stopped between accuracy samples")
            output_remote = output_remote_path(self.config.remote_dir, plan, job.delegate, index)
            command = benchmark_command(
                self._remote_binary(), self._remote_model(artifact), settings,
                num_threads=m.num_threads, kind="accuracy", delegate=job.delegate,
                cpu_mask_hex=m.cpu_mask, tool=prepared.tool,
                extra_flags=sample_flags(plan, launch, output_remote))
            if index == 0:
                m.command = command
            try:
                result = target.shell(removing_then(command, output_remote),
                                      timeout_s=settings.timeout_s(), cancel=self.stop)
            except CommandTimeout:  # a hang would cost every sample the whole timeout
                failures.append(_sample_failure(launch, f"timed out after "
                                                        f"{settings.timeout_s():g} s; killed"))
                _not_launched(plan.launches[index + 1:], failures, "a launch timed out")
                break
            output = result.stdout + result.stderr
            if result.status != 0:
                failures.append(_sample_failure(launch, _launch_failure(result.status, output),
                                                result.status))
                m.output_tail = _tail(output)
                if result.status in (EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND) or (
                        not scores and _same_in_a_row(failures)):
                    _not_launched(plan.launches[index + 1:], failures,
                                  f"{len(failures)} launch(es) failed alike")
                    break
                continue
            try:
                raw = target.read_file(output_remote, plan.output_bytes)
                rows = decode_outputs(raw, plan, launch)
            except (OutputFileError, RemoteFileError) as exc:
                failures.append(_sample_failure(launch, str(exc)))
                m.output_tail = _tail(output)
                continue
            for sample, row in zip(launch.samples, rows):
                scores[sample] = row
            last_ok_output = output
        m.launch_seconds = time.monotonic() - started
        figures = judge(plan, scores, failures, self.config.accuracy_min_agreement)
        for name in ("device_top1", "device_top5", "host_top1", "host_agreement",
                     "host_max_abs_diff", "host_max_rel_diff", "host_cosine_min",
                     "baseline_agreement"):
            setattr(m, name, getattr(figures, name))
        m.accuracy_samples, m.accuracy_samples_failed = figures.samples, figures.samples_failed
        m.accuracy_flag = figures.flag
        m.accuracy_json = json.dumps({
            "samples_planned": plan.samples, "launches": len(plan.launches),
            "samples_per_launch": len(plan.launches[0].samples) if plan.launches else 0,
            "input": plan.input_name, "input_shape": list(plan.input_shape),
            "seconds": round(m.launch_seconds, 3), "failures": failures,
            "device_sample_files_pushed": prepared.sample_files_pushed,
            "device_sample_bytes_pushed": prepared.sample_bytes_pushed})
        if last_ok_output is not None:
            parsed = parse_log(last_ok_output)
            if parsed:  # the delegation of the launches that answered: what computed them
                for name in ("delegate", "nodes_delegated", "nodes_total", "partitions",
                             "init_us"):
                    setattr(m, name, getattr(parsed[-1], name))
            m.output_tail = m.output_tail or _tail(last_ok_output)
        self.log(f"{self._device_id(target)}: accuracy on the device, {artifact.variant} "
                 f"{job.delegate or 'default'}: {figures.samples} of {plan.samples} sample(s) in "
                 f"{m.launch_seconds:.1f} s ({len(plan.launches)} launch(es))")
        if failures:
            first = failures[0]
            m.status, m.failure_kind = MeasurementStatus.FAILED, "benchmark"
            m.error = (f"{len(failures)} of {len(plan.launches)} accuracy launch(es) failed "
                       f"or were not launched ({figures.samples} of {plan.samples} samples "
                       f"judged); {_samples_text(first['samples'])}: {first['error']}")
        else:
            m.status = MeasurementStatus.OK

    def _cool_down(self, pause_s: float) -> None:
        """The hygiene wait's sleep, cut short by a stop."""
        if self.stop.wait(pause_s):
            raise Cancelled("stopped during the cool-down wait")

    # -- preparation -------------------------------------------------------------------------
    def _prepare_with_retries(self, target: Target) -> _Prepared:
        for attempt in range(self.config.retries + 1):
            try:
                if target.listed_state != ONLINE and attempt == 0:
                    target.recover(self.config.device_wait_s, self.stop)
                return self._prepare(target)
            except DeviceError:
                if attempt == self.config.retries:
                    raise
                target.recover(self.config.device_wait_s, self.stop)
        raise AssertionError("unreachable")

    def _prepare(self, target: Target) -> _Prepared:
        from harness.targets.hygiene import check_storage
        from harness.targets.telemetry import cpu_topology

        info = target.info()
        if info.state != ONLINE:
            raise DeviceError(f"device {target.serial} is {info.state}")
        self._device_ids[target.key] = device_identity(info.props, target.serial)
        self.models[target.key] = info.model
        self.store.record_device(target.serial, target.provider_name, info.model, info.abi,
                                 info.sdk, info.props, utc_now(), self._device_id(target))
        binary = binary_for_abi(info.abi, self.config.binaries, self.config.lab.pinned_sha256(),
                                lab_binaries=self.config.lab.binaries,
                                flavour=shipped_flavour(info.props))
        binary_sha256 = self.sha256_of(binary)
        files = [TargetFile(Path(binary), self._remote_binary(), binary_sha256, 0o755)]
        files += [TargetFile(a.path, self._remote_model(a), a.sha256) for a in self.artifacts]
        samples = self._sample_files()
        files += samples
        to_send = target.files_to_send(files)
        sample_remotes = {f.remote for f in samples}
        samples_to_send = [f for f in to_send if f.remote in sample_remotes]
        sample_bytes = sum(f.local.stat().st_size for f in samples_to_send)
        pushed = 0
        if to_send:
            missing = sum(f.local.stat().st_size for f in to_send)
            check_storage(target, self.config.remote_dir, missing,
                          self.config.effective_hygiene())
            with self.log.task(f"push to {self._device_id(target)}", total=missing,
                               unit="bytes") as push:
                pushed = target.send_files(to_send, progress=push.update)
        if samples:  # where the accuracy launches write their outputs
            from harness.benchmark.device_accuracy import OUTPUTS_DIR

            target.shell(f"mkdir -p {shlex.quote(f'{self.config.remote_dir}/{OUTPUTS_DIR}')}")
            self.log(f"{self._device_id(target)}: accuracy samples: {len(samples)} file(s), "
                     f"{len(samples_to_send)} pushed ({sample_bytes} bytes), the others were "
                     "on the device")
        topology = cpu_topology(target)
        tool = probe_tool(target, self._remote_binary(), binary_sha256, self._device_id(target),
                          version=binary_version(binary))
        if not tool.known:
            self.log(f"{target.serial}: benchmark_model flavour unknown ({tool.note}); "
                     "launching it with the classic tool's flags")
        dropped = dropped_settings(self.config.benchmark, tool)
        if dropped:
            self.log(f"{target.serial}: this benchmark_model ({tool.label()}) has no "
                     f"{', '.join(f.split('=')[0] for f in dropped)}: left to its default")
        return _Prepared(target, info, binary_sha256, pushed, topology.big_cores,
                         topology.mask_hex, topology, tool,
                         sample_files_pushed=len(samples_to_send), sample_bytes_pushed=sample_bytes)

    def _sample_files(self) -> list[TargetFile]:
        """The accuracy jobs' sample files (each once: variants with the same input share them)."""
        if not any(job.kind == "accuracy" for job in self.jobs):
            return []
        files: dict[str, TargetFile] = {}
        for plan in self.accuracy_plans.values():
            for launch in [] if plan.unavailable else plan.launches:
                files.setdefault(launch.remote, TargetFile(launch.local, launch.remote,
                                                           launch.sha256))
        return list(files.values())

    def _remote_binary(self) -> str:
        return remote_binary_path(self.config.remote_dir)

    def _remote_model(self, artifact) -> str:
        return f"{self.config.remote_dir}/{artifact.path.name}"

    # -- records -----------------------------------------------------------------------------
    def _key(self, job: Job, target: Target) -> str:
        return job.key(self._device_id(target), target.provider_name,
                       self.artifacts[job.artifact_index].sha256)

    def _done(self, job: Job, target: Target) -> bool:
        # Runs stored before device ids keyed their jobs by the adb serial.
        legacy = job.key(target.serial, target.provider_name,
                         self.artifacts[job.artifact_index].sha256)
        return self._key(job, target) in self.done_keys or legacy in self.done_keys

    def _device_id(self, target: Target) -> str:
        return self._device_ids.get(target.key, target.serial)

    def _read_device_id(self, target: Target) -> str:
        """The device's identity before anything else is done with it; a device that cannot
        be asked now is known by what the store last recorded for its adb serial."""
        return (target.identity()
                or self.store.device_id_of(target.serial, target.provider_name) or target.serial)

    def _new_measurement(self, target: Target, job: Job, prepared: _Prepared | None,
                         first: bool) -> Measurement:
        artifact = self.artifacts[job.artifact_index]
        m = Measurement(run_id=self.run_id, device_serial=target.serial,
                        adb_server=target.provider_name, variant=artifact.variant,
                        status=MeasurementStatus.FAILED,
                        model_name=artifact.model_name, artifact_sha256=artifact.sha256,
                        model_size_bytes=artifact.size_bytes, started_at=utc_now(),
                        kind=job.kind, trial=job.trial, delegate_choice=job.delegate,
                        role=job.role, job_key=self._key(job, target),
                        device_id=self._device_id(target), lab_host=target.host)
        if prepared is not None:
            info = prepared.info
            m.device_model, m.device_abi, m.device_sdk = info.model, info.abi, info.sdk
            m.device_props_json = json.dumps(info.props, sort_keys=True)
            m.binary_sha256 = prepared.binary_sha256
            if prepared.tool is not None:
                m.tool_flavour, m.tool_version = prepared.tool.flavour, prepared.tool.version
            # The push serves every job; it is counted once, on the first.
            m.bytes_pushed = prepared.bytes_pushed if first else 0
        conditions = self._conditions.get(target.key)
        if conditions is not None:
            m.rooted, m.perf_mode, m.governor = (conditions.rooted, conditions.perf_mode,
                                                 conditions.governor)
            m.conditions_json = json.dumps(conditions.to_dict(), sort_keys=True)
        return m

    def _record_without_launch(self, target, job, prepared, reason, status, kind) -> Measurement:
        m = self._new_measurement(target, job, prepared, first=False)
        m.status, m.error, m.failure_kind = status, str(reason), kind
        return self._commit(m)

    def _commit(self, m: Measurement, ops: list | None = None) -> Measurement:
        m.finished_at = utc_now()
        try:
            self.store.add_measurement(m, ops)  # committed before the device starts anything else
        except StorageError:
            # The sample is in the store's journal; the other devices stop too, so the run
            # ends here and `--resume` finishes it once the store can take samples again.
            self.stop.set()
            raise
        return m


@contextmanager
def _tuned(prepared: _Prepared, config: RunConfig):
    """The device set up for measuring (harness.targets.tuning) for its whole share of the run,
    undone after; a device gone by then has nothing to undo."""
    from harness.targets.tuning import device_tuning

    tuning = device_tuning(prepared.target, prepared.topology, sdk=prepared.info.sdk,
                           pin_big_cores=config.pin_big_cores,
                           pin_governors=config.pin_governors)
    conditions = tuning.__enter__()
    try:
        yield conditions
    finally:
        try:
            tuning.__exit__(None, None, None)
        except DeviceError:
            pass


def _ok_note(m: Measurement) -> str:
    if m.kind == "accuracy":
        top1 = f"top-1 {m.device_top1:.1%}, " if m.device_top1 is not None else ""
        return (f"{top1}{m.host_agreement:.0%} agreement with the host over "
                f"{m.accuracy_samples} samples" + (f" (flagged: {m.accuracy_flag})"
                                                    if m.accuracy_flag else ""))
    return f"{m.inference_avg_us / 1000:.3f} ms avg"


def _samples_text(samples: list[int]) -> str:
    if len(samples) == 1:
        return f"sample {samples[0]}"
    return f"samples {samples[0]}-{samples[-1]}"


def _sample_failure(launch, error: str, exit_status: int | None = None) -> dict:
    failure = {"samples": list(launch.samples), "error": error}
    if exit_status is not None:
        failure["exit"] = exit_status
    return failure


def _same_in_a_row(failures: list[dict]) -> bool:
    """The last launches all ended with one exit status (what they printed may differ)."""
    last = [f.get("exit") for f in failures[-SAME_FAILURES_TO_STOP:]]
    return len(last) == SAME_FAILURES_TO_STOP and len(set(last)) == 1 and last[0] is not None


def _not_launched(launches: list, failures: list[dict], why: str) -> None:
    """The launches an accuracy job gives up on, recorded as one failure."""
    samples = [s for launch in launches for s in launch.samples]
    if samples:
        failures.append({"samples": samples, "error": f"not launched: {why}"})


def _launch_failure(status: int, output: str) -> str:
    """What a failed accuracy launch said: the tool's FATAL or ERROR line, else the last."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    said = next((line for line in lines if line.startswith("FATAL: ")), None) or next(
        (line for line in reversed(lines) if line.startswith("ERROR: ")
         and "Benchmarking failed" not in line), None) or _last_line(output)
    if _is_signal(status):
        return f"benchmark_model ended by signal {status - EXIT_SIGNAL_BASE} (exit {status}): {said}"
    return f"benchmark_model failed (exit {status}): {said}"


def _tail(output: str) -> str:
    return "\n".join(output.rstrip().splitlines()[-OUTPUT_TAIL_LINES:])


def _lost_or_failed(exc: Exception) -> MeasurementStatus:
    """A device error's record: LOST when the device's lab host left the cluster (measured
    by `--resume` once it is back), else FAILED."""
    return MeasurementStatus.LOST if isinstance(exc, HostLost) else MeasurementStatus.FAILED


def _failure_status(exc: BenchmarkError) -> MeasurementStatus:
    """How a launch that raised `exc` ended: killed by a signal, past its timeout, or failed."""
    if _is_signal(exc.exit_status):
        return MeasurementStatus.CRASHED
    return MeasurementStatus.TIMED_OUT if "timed out" in str(exc) else MeasurementStatus.FAILED


def _is_signal(exit_status: int | None) -> bool:
    return exit_status is not None and EXIT_SIGNAL_BASE < exit_status < EXIT_SIGNAL_BASE + 32 \
        and exit_status not in (EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"
