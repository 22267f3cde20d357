"""Result records: the one place that defines what a run and a measurement are.

The SQLite store derives its measurement columns from `Measurement`'s fields, and reports read
the same names, so a field is added here once.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from enum import Enum


def utc_now() -> str:
    """Timestamps of runs and samples: UTC, ISO 8601, milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class RunStatus(str, Enum):
    """A run's status in the store (`runs.status`); a str Enum, so stored values stay plain
    strings and compare equal to them."""

    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    INTERRUPTED = "interrupted"   # stopped by Ctrl-C or a storage fault; finish it with `--resume`

    def __str__(self) -> str:
        return self.value


class MeasurementStatus(str, Enum):
    """A launch's outcome (`Measurement.status`, `measurements.status` in the store); a str Enum
    like RunStatus, so the store keeps the same text and readers may compare with strings."""

    OK = "ok"
    FAILED = "failed"            # an error exit, no figures in the output, or the device failed
    CRASHED = "crashed"          # killed by a signal
    TIMED_OUT = "timed_out"      # ran past BenchmarkSettings.timeout_s() and was killed
    INVALID = "invalid"          # not launched: the device stayed unfit to measure (hygiene)
    SKIPPED = "skipped"          # not launched: the device was quarantined
    RETRIED = "retried"          # an attempt that lost the device; the job was run again
    LOST = "lost"                # not measured: the device's lab host left the cluster;
    #                              not done, so `--resume` measures it once the host is back
    UNAVAILABLE = "unavailable"  # not launched: the device's benchmark_model has no flag for it
    #                              (a delegate or kind its flavour lacks); not a failure

    def __str__(self) -> str:
        return self.value


@dataclass(kw_only=True)
class BenchmarkFigures:
    """What one benchmark_model run reports; None where its output does not say.

    The parser's runs and the stored measurements both carry these, under these names.
    """

    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None
    inference_std_us: float | None = None
    inference_min_us: float | None = None
    inference_max_us: float | None = None
    inference_count: int | None = None
    inference_p50_us: float | None = None
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    peak_memory_mb: float | None = None
    delegate: str | None = None
    nodes_delegated: int | None = None
    nodes_total: int | None = None
    partitions: int | None = None


@dataclass
class Measurement(BenchmarkFigures):
    """One launch of benchmark_model on one device for one artifact (or why it could not be)."""

    run_id: str
    device_serial: str
    adb_server: str
    variant: str
    status: str                      # a MeasurementStatus (plain text once read back)
    error: str | None = None         # why it is not ok, one line
    failure_kind: str | None = None  # "device" | "benchmark" | "hygiene" | "quarantine" | None
    kind: str = "timing"             # timing | peak_memory | op_profile | accuracy | confirm | paired (harness.benchmark.jobs.KINDS)
    role: str | None = None          # confirm launches: "base" or "cand" artifact of a compared key;
    #                                  paired launches (the baseline's artifact beside a timing one): "base"
    trial: int = 0
    attempt: int = 1                 # 2, 3: retried after the device dropped
    delegate_choice: str | None = None  # --delegate: cpu|xnnpack|xnnpack-fp16|gpu|nnapi|npu (None: default)
    cpu_mask: str | None = None      # taskset mask the launch was pinned to (None: not pinned)
    # How the device was set up (harness.targets.tuning.DeviceConditions) and which tool ran:
    rooted: str | None = None        # "no", "adb root", "su (Magisk)", "su (AOSP)"
    perf_mode: str | None = None     # fixed performance mode: on | off | unavailable | refused
    governor: str | None = None      # the CPU governors, e.g. "performance (pinned; was schedutil)"
    tool_flavour: str | None = None  # benchmark_model flavour: tflite | litert
    tool_version: str | None = None  # its version, where anything tells it (the fetch record)
    conditions_json: str | None = None  # each condition and how it was found out (the report)
    launch_seconds: float | None = None  # host wall time of the benchmark_model launch
    job_key: str | None = None
    lab_host: str | None = None      # the lab host (Ray node) whose adb server ran it (--cluster)
    # The device's stable identity (`ro.serialno`; the adb serial where the props could not be
    # read): compare/history keys and job keys use it, since the adb serial of a network or
    # virtual device (127.0.0.1:PORT) changes when the lab restarts.
    device_id: str | None = None
    telemetry_before_json: str | None = None
    telemetry_after_json: str | None = None
    model_name: str | None = None
    artifact_sha256: str | None = None
    model_size_bytes: int | None = None
    binary_sha256: str | None = None
    device_model: str | None = None
    device_abi: str | None = None
    device_sdk: int | None = None
    device_props_json: str | None = None
    battery_pct: int | None = None
    temperature_c: float | None = None
    num_threads: int | None = None
    command: str | None = None
    exit_status: int | None = None
    bytes_pushed: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    output_tail: str | None = None
    # Accuracy on the device (kind "accuracy": harness.benchmark.device_accuracy): the device's
    # outputs for real samples, against the labels, the host LiteRT run and the baseline.
    accuracy_samples: int | None = None        # samples judged
    accuracy_samples_failed: int | None = None  # samples whose launch or output file failed
    device_top1: float | None = None
    device_top5: float | None = None
    host_top1: float | None = None             # the host LiteRT CPU run, on the same samples
    host_agreement: float | None = None        # share of samples with the host's top-1
    host_max_abs_diff: float | None = None
    host_max_rel_diff: float | None = None     # max abs diff / the host's largest output
    host_cosine_min: float | None = None       # the least similar sample's outputs
    baseline_agreement: float | None = None    # with the torch baseline's top-1
    accuracy_flag: str | None = None           # why this delegate is flagged (None: it is not)
    accuracy_json: str | None = None           # per-sample failures, launches, pushes, seconds

    def to_dict(self) -> dict:
        return asdict(self)


def final_records(measurements: list[Measurement]) -> list[Measurement]:
    """Each job's last record, in the order given (the store's): a retried attempt is never
    one, and a job lost with its lab host and measured by `--resume` counts by the later one."""
    last: dict[object, Measurement] = {}
    for m in measurements:
        if m.status != MeasurementStatus.RETRIED:
            last.pop(m.job_key or id(m), None)
            last[m.job_key or id(m)] = m
    return list(last.values())


MEASUREMENT_FIELDS = tuple(f.name for f in fields(Measurement))
PARSED_FIELDS = tuple(f.name for f in fields(BenchmarkFigures))


@dataclass
class RunSummary:
    run_id: str
    started_at: str
    finished_at: str | None = None
    status: str = RunStatus.RUNNING
    bytes_pushed: int = 0
    devices: list[str] = field(default_factory=list)
    failed_devices: dict[str, str] = field(default_factory=dict)
    report_dir: str | None = None
