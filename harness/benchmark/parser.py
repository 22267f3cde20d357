"""Parse the text output of TFLite/LiteRT ``benchmark_model`` into one record per benchmark run.

Supported: TF 1.x .. LiteRT wording, plain / ``INFO:``-prefixed / logcat / ``> ``-quoted /
indented lines, several runs in one log, error endings, op profiling tables and the LiteRT
CompiledModel ``BENCHMARK RESULTS`` block (values in ms, converted to us).

The parser never raises on odd input: unknown lines are ignored, and a log without any
benchmark_model line gives ``[]``. It never computes a latency the log does not state; the only
derivation is unit conversion (ms -> us) and reading ``count=N curr=C`` (all samples equal) as
min = max = avg = C, std = 0.

``parse_log_file`` reads a log as a stream with bounded memory (limits on bytes, line length,
runs and op rows; past one, a UserError naming the file).
"""
from __future__ import annotations

import itertools
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

from harness.errors import UserError
from harness.results.schema import BenchmarkFigures

NO_TIMED_STATS_ERROR = "no timed-run stats in the log (benchmark cut off or never measured)"

# A number as benchmark_model prints it: C++ default float format (6 significant digits, so
# scientific notation from 1e6 up: avg=2.95034e+06), integers, or nan/inf.
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"

# ---------------------------------------------------------------- line normalisation
_QUOTE_PREFIX = re.compile(r"^(?:>\s?)+")
# logcat -v threadtime: "05-31 10:31:13.023 21767 21767 I tflite  : msg"
_LOGCAT_THREADTIME = re.compile(
    r"^\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+([VDIWEFA])\s+[^:]*?:\s?(.*)$")
# logcat -v brief / time: "I/tflite  (12345): msg"
_LOGCAT_BRIEF = re.compile(
    r"^(?:\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+)?([VDIWEFA])/[^(:]+\(\s*\d+\):\s?(.*)$")
# absl / glog: "I0000 00:00:1758455106.022223   62590 accelerator_registry.cc:40] msg"
_ABSL = re.compile(r"^([IWEF])\d{4}\s+\d\d:\d\d:\d\d\.\d+\s+\d+\s+\S+:\d+\]\s?(.*)$")
_LEVEL_PREFIX = re.compile(r"^(INFO|WARN|WARNING|ERROR|FATAL|VERBOSE|DEBUG):\s?")
# LiteRT logger source location: "[./litert/tools/benchmark_litert_model.h:57] "
_SOURCE_LOCATION = re.compile(r"^\[[^\]\s]*:\d+\]\s?")
_LOGCAT_LEVELS = {"V": "VERBOSE", "D": "DEBUG", "I": "INFO", "W": "WARN", "E": "ERROR",
                  "F": "FATAL", "A": "FATAL"}


@dataclass(frozen=True)
class _LogLine:
    """One output line with transport decoration (quote, logcat, level, location) removed."""

    text: str
    level: str | None  # "INFO", "ERROR", ... when the line said so


def _normalize_line(raw: str) -> _LogLine:
    text = raw.strip()
    text = _QUOTE_PREFIX.sub("", text).strip()
    level = None
    for pattern in (_LOGCAT_THREADTIME, _LOGCAT_BRIEF, _ABSL):
        match = pattern.match(text)
        if match:
            level = _LOGCAT_LEVELS.get(match.group(1))
            text = match.group(2).strip()
            break
    # Nested prefixes happen (logcat message "ERROR: ..."); peel at most a few.
    for _ in range(3):
        match = _LEVEL_PREFIX.match(text)
        if match:
            level = "WARN" if match.group(1) == "WARNING" else match.group(1)
            text = text[match.end():].strip()
            continue
        match = _SOURCE_LOCATION.match(text)
        if match:
            text = text[match.end():].strip()
            continue
        break
    return _LogLine(text=text, level=level)


# ---------------------------------------------------------------- result records
@dataclass(slots=True)  # a profile may have many thousand rows: no __dict__ per row
class OpProfileRow:
    """One row of an op profiling table (times in ms, as the table prints them)."""

    node_type: str
    first_ms: float | None
    avg_ms: float | None
    percent: float | None
    cdf_percent: float | None
    mem_kb: float | None
    times_called: int | None
    name: str
    start_ms: float | None = None  # only older builds print the [start] column

    def to_dict(self) -> dict:
        return {"node_type": self.node_type, "first_ms": self.first_ms, "avg_ms": self.avg_ms,
                "percent": self.percent, "cdf_percent": self.cdf_percent, "mem_kb": self.mem_kb,
                "times_called": self.times_called, "name": self.name}


# Keys of BenchmarkRun.to_dict(), in output order (the JSON contract of `bench parse`).
RUN_DICT_KEYS = (
    "status", "error", "init_us", "first_inference_us", "warmup_avg_us", "inference_avg_us",
    "inference_std_us", "inference_min_us", "inference_max_us", "inference_count",
    "inference_p50_us", "memory_init_mb", "memory_overall_mb", "peak_memory_mb", "delegate",
    "nodes_delegated", "nodes_total", "partitions", "ops",
)


@dataclass
class BenchmarkRun(BenchmarkFigures):
    """One benchmark_model run found in a log; None where the log does not say."""

    status: str  # "ok" | "failed"
    error: str | None = None
    ops: list[OpProfileRow] = field(default_factory=list)
    # Extra detail, kept out of to_dict().
    inference_p5_us: float | None = None
    inference_p95_us: float | None = None
    warmup_count: int | None = None
    warmup_std_us: float | None = None
    warmup_min_us: float | None = None
    warmup_max_us: float | None = None
    model_size_mb: float | None = None
    throughput_mb_per_s: float | None = None
    init_ops: list[OpProfileRow] = field(default_factory=list)  # "Benchmark Initialization" table
    # Which tool printed it: "litert" (its BENCHMARK RESULTS block), "tflite" (the classic
    # tool's `Inference timings in us:`), None when the log shows neither.
    tool_flavour: str | None = None

    def to_dict(self) -> dict:
        values = {key: getattr(self, key) for key in RUN_DICT_KEYS}
        values["ops"] = [row.to_dict() for row in self.ops]
        return values


# ---------------------------------------------------------------- numbers
def _to_float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except (ValueError, OverflowError):
        return None
    # nan/inf (an empty stat, a digit string too long for a double) is no measurement; it
    # would also make the JSON of `bench parse` invalid.
    return value if math.isfinite(value) else None


def _to_int(text: str | None) -> int | None:
    value = _to_float(text)
    if value is None or value != int(value):
        return None
    return int(value)


def _ms_to_us(value_ms: float | None) -> float | None:
    # round() keeps 0.46 ms -> 460.0 us instead of 459.99999999999994.
    return None if value_ms is None else round(value_ms * 1000.0, 6)


# ---------------------------------------------------------------- line patterns
_STARTING = re.compile(r"^STARTING!$")
_PHASE = re.compile(r"^Running benchmark for (?:at least )?\d+ iterations?\b")
_STATS = re.compile(r"^count=(\d+)\b(.*)$")
_STAT_PAIR = re.compile(r"(\w+)=(" + _NUM + r")(?![\w.])")
_SUMMARY = re.compile(r"^(?:Average )?[Ii]nference timings in us:\s*(.*)$")
_SUMMARY_PAIR = re.compile(r"([A-Za-z][A-Za-z ()]*?)\s*:\s*(" + _NUM + r")")
_SESSION_INIT = re.compile(r"^Initialized session in (" + _NUM + r")\s*ms\.?$")
_LOADED_MODEL = re.compile(r"^Loaded model\b")
_MODEL_SIZE = re.compile(r"^The input model file size \(MB\):\s*(" + _NUM + r")")
_MEMORY_INIT_OVERALL = re.compile(
    r"^(?:Peak memory footprint|Memory footprint delta from the start of the tool) \(MB\):"
    r"\s*init=(" + _NUM + r")\s+overall=(" + _NUM + r")")
_PEAK_MEMORY = re.compile(
    r"^Overall peak memory footprint \(MB\) via periodic monitoring:\s*(" + _NUM + r")")
_BENCHMARKING_FAILED = re.compile(r"^Benchmarking failed\.?$")

# LiteRT CompiledModel tool (litert/tools:benchmark_model), values in ms.
_LITERT_HEADER = re.compile(r"^=*\s*BENCHMARK RESULTS\s*=*$")
_LITERT_VALUE = re.compile(
    r"^(Model initialization|Warmup \(first\)|First inference|Warmup \(avg\)|Inference \(avg\)|"
    r"Inference \(min\)|Inference \(max\)|Inference \(std\)|Inference \(median\)|"
    r"Inference \(p5\)|Inference \(p95\)|Throughput|Init footprint|Overall footprint|"
    r"Peak memory):\s*(" + _NUM + r")\s*(ms|MB/s|MB)?(?:\s*\((\d+) runs?\))?")

# Delegation.
_REPLACING = re.compile(
    r"^Replacing (\d+) out of (\d+) node\(s\) with delegate \((\w+)\) node, yielding (\d+) "
    r"partitions?(?: for (subgraph \d+|the whole graph))?")
_EXPLICIT_APPLIED = re.compile(
    r"^Explicitly applied (\S+) delegate, and the model graph will be "
    r"(completely|partially) executed by the delegate(?: w/ (\d+) delegate kernels)?")
_EXPLICIT_NOT_EXECUTED = re.compile(
    r"^Though (\S+) delegate is explicitly applied, the model graph will not be executed")
_CREATED_DELEGATE = re.compile(
    r"^(?:Created TensorFlow Lite (\S+) delegate for CPU|Created TensorFlow Lite delegate for "
    r"(\S+?)\.?$|(\S+) delegate created\.?$)")
_GPU_KERNELS = re.compile(r"^Created (\d+) GPU delegate kernels")
_GPU_SPLIT = re.compile(
    r"^(\d+) operations will run on the GPU, and the remaining (\d+) operations? will run on the CPU")
_DELEGATE_CLASS_NAMES = {
    "TfLiteXNNPackDelegate": "XNNPACK", "TfLiteGpuDelegate": "GPU", "TfLiteGpuDelegateV2": "GPU",
    "TfLiteNnapiDelegate": "NNAPI", "TfLiteHexagonDelegate": "Hexagon",
    "TfLiteFlexDelegate": "Flex", "TfLiteCoreMlDelegate": "CoreML",
}
_DELEGATION_LINES = (_REPLACING, _EXPLICIT_APPLIED, _EXPLICIT_NOT_EXECUTED, _CREATED_DELEGATE,
                     _GPU_KERNELS, _GPU_SPLIT)

# Failures, most telling first (see _RunBuilder.error_line).
_SHELL_ERROR = re.compile(
    r"^(?:\S*sh: .*: (?:not executable|not found|Permission denied|No such file or directory|"
    r"cannot execute|inaccessible)|CANNOT LINK EXECUTABLE)")
_CRASH = re.compile(
    r"^(?:\S*sh: (?:line \d+: )?)?(?:\[\d+\]\s*)?(?:\d+\s+)?"
    r"(?:Segmentation fault|Aborted|Bus error|Illegal instruction|Killed)\b")
_TOOL_FATAL = re.compile(
    r"^(?:Failed to apply \S+ delegate|Failed to allocate tensors|Failed to (?:load|mmap) model|"
    r"Failed to initialize (?:the interpreter|model loader)|Disallowed CPU fallback detected|"
    r"Please specify the name of your TF Lite input file|Failed to parse flag|Failed to invoke)")
# Per-invoke kernel errors: fatal unless the runtime says it fell back (delegate prepare failure).
_INVOKE_ERROR = re.compile(
    r"^(?:Node number \d+ \(.*\) failed to (?:prepare|invoke)|Delegate kernel was not initialized)")
_RESTORED_PLAN = re.compile(r"^Restored original execution plan after delegate application failure")

# Op profiling.
_PROFILE_INIT = re.compile(r"^Profiling Info for Benchmark Initialization")
_PROFILE_REGULAR = re.compile(r"^Operator-wise Profiling Info for Regular Benchmark Runs")
_PROFILE_DELEGATE_INTERNAL = re.compile(r"^Delegate internal")
_PROFILE_TABLE = re.compile(
    r"^=+\s*(Run Order|Top by Computation Time|Top by Memory Use|Summary by node type)\s*=+$")
_ROW_TABLES = ("Run Order", "Top by Computation Time")
_COLUMN_SPLIT = re.compile(r"\t+|\s{2,}")
_PERCENT = re.compile(r"^(" + _NUM + r")%$")


def _parse_op_row(text: str) -> OpProfileRow | None:
    """A row: type, [start], first, avg, %, cdf%, mem KB, times called, name (tab or space aligned)."""
    if not text or text.startswith("["):
        return None  # the column header
    cells = [cell.strip() for cell in _COLUMN_SPLIT.split(text) if cell.strip()]
    if len(cells) < 7:
        return None
    percent_at = next((i for i, cell in enumerate(cells) if _PERCENT.match(cell)), None)
    if percent_at not in (3, 4) or len(cells) < percent_at + 4:
        return None
    numbers = [_to_float(cell) for cell in cells[1:percent_at]]
    percent = _to_float(_PERCENT.match(cells[percent_at]).group(1))
    cdf_match = _PERCENT.match(cells[percent_at + 1])
    mem_kb = _to_float(cells[percent_at + 2])
    times_called = _to_int(cells[percent_at + 3])
    if None in numbers or cdf_match is None or mem_kb is None or times_called is None:
        return None
    start_ms = numbers[0] if len(numbers) == 3 else None
    return OpProfileRow(node_type=cells[0], first_ms=numbers[-2], avg_ms=numbers[-1],
                        percent=percent, cdf_percent=_to_float(cdf_match.group(1)), mem_kb=mem_kb,
                        times_called=times_called, name=" ".join(cells[percent_at + 4:]),
                        start_ms=start_ms)


def _parse_stats(rest: str, count: int) -> dict[str, float]:
    stats: dict[str, float] = {"count": float(count)}
    for key, value in _STAT_PAIR.findall(rest):
        number = _to_float(value)
        if number is not None:
            stats[key] = number
    if "avg" not in stats and "curr" in stats:
        # "count=N curr=C": every sample was C (stats_calculator prints this form then).
        stats.update(first=stats["curr"], min=stats["curr"], max=stats["curr"],
                     avg=stats["curr"], std=0.0)
    return stats


def _parse_summary(rest: str) -> dict[str, float]:
    """'Init: I, First inference: F, Warmup (avg): W, Inference (avg): A' (1.x: 'no stats: A')."""
    names = {"init": "init", "first inference": "first", "warmup (avg)": "warmup",
             "warmup": "warmup", "inference (avg)": "inference", "inference": "inference",
             "no stats": "inference"}
    summary: dict[str, float] = {}
    for key, value in _SUMMARY_PAIR.findall(rest):
        name = names.get(key.strip().lower())
        number = _to_float(value)
        if name and number is not None:
            summary[name] = number
    return summary


def _same_number(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-6)


# ---------------------------------------------------------------- one run, as lines arrive
@dataclass
class _StatsLine:
    values: dict[str, float]
    phases_before: int  # how many "Running benchmark for" lines preceded it in this run


@dataclass
class _RunBuilder:
    """Facts collected for one run while its lines are read; `build()` turns them into a record."""

    has_content: bool = False
    closed: bool = False  # after 'Benchmarking failed.' or a shell error, the next run begins
    phase_count: int = 0
    stats_lines: list[_StatsLine] = field(default_factory=list)
    summary: dict[str, float] = field(default_factory=dict)
    session_init_ms: float | None = None
    litert: dict[str, float] = field(default_factory=dict)
    litert_runs: dict[str, int] = field(default_factory=dict)
    litert_results_seen: bool = False
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    peak_memory_mb: float | None = None
    model_size_mb: float | None = None
    # Delegation.
    explicit_delegate: str | None = None
    explicit_mode: str | None = None  # "completely" | "partially" | "not"
    explicit_kernels: int | None = None
    created_delegates: list[str] = field(default_factory=list)
    replacements: dict[tuple[str, str], tuple[int, int, int]] = field(default_factory=dict)
    gpu_kernels: int | None = None
    gpu_split: tuple[int, int] | None = None
    # Failures.
    shell_errors: list[str] = field(default_factory=list)
    fatal_errors: list[str] = field(default_factory=list)
    invoke_errors: list[str] = field(default_factory=list)
    error_lines: list[str] = field(default_factory=list)
    benchmarking_failed: bool = False
    # Op profiling.
    profile_section: str | None = None  # None (pre-2.x, no headers) | init | regular | internal
    profile_table: str | None = None
    init_rows: list[OpProfileRow] = field(default_factory=list)
    run_order_rows: list[OpProfileRow] = field(default_factory=list)
    top_rows: list[OpProfileRow] = field(default_factory=list)

    @property
    def has_measurement(self) -> bool:
        return bool(self.stats_lines or self.summary or self.litert_results_seen)

    # -- which stats line is which phase
    def _warmup_and_timed(self) -> tuple[dict[str, float] | None, dict[str, float] | None]:
        if not self.stats_lines:
            return None, None
        if len(self.stats_lines) >= 2:
            return self.stats_lines[0].values, self.stats_lines[-1].values
        only = self.stats_lines[0]
        avg = only.values.get("avg")
        if _same_number(avg, self.summary.get("inference")):
            return None, only.values
        if _same_number(avg, self.summary.get("warmup")):
            return only.values, None
        if only.phases_before == 1 and not self.summary:
            # One phase line, one stats line, no summary: the log stops after the warmup phase.
            return only.values, None
        # A tail excerpt without phase lines (or the 2nd phase): the last stats line is timed.
        return None, only.values

    def _delegation(self) -> tuple[str | None, int | None, int | None, int | None]:
        replaced = [name for (name, _), _ in self.replacements.items() if name != "Flex"]
        found = [*replaced, *self.created_delegates]
        accelerator = next((name for name in found if name != "XNNPACK"), None)
        delegate = self.explicit_delegate or accelerator or ("XNNPACK" if found else None)
        if delegate is None:
            return None, None, None, None
        nodes_delegated = nodes_total = partitions = None
        mine = [counts for (name, _), counts in self.replacements.items() if name == delegate]
        if mine:
            nodes_delegated = sum(c[0] for c in mine)
            nodes_total = sum(c[1] for c in mine)
            partitions = sum(c[2] for c in mine)
        elif delegate == "GPU" and self.gpu_split is not None:
            nodes_delegated = self.gpu_split[0]
            nodes_total = self.gpu_split[0] + self.gpu_split[1]
        if partitions is None and delegate == self.explicit_delegate:
            if self.explicit_mode == "not":
                partitions, nodes_delegated = 0, 0
            elif self.explicit_kernels is not None:
                partitions = self.explicit_kernels
            elif self.explicit_mode == "completely":
                partitions = 1
        if partitions is None and delegate == "GPU":
            partitions = self.gpu_kernels
        return delegate, nodes_delegated, nodes_total, partitions

    def _error_line(self, timed_missing: bool) -> str | None:
        for candidates in (self.shell_errors, self.fatal_errors, self.invoke_errors):
            if candidates:
                return candidates[0]
        if self.benchmarking_failed:
            return self.error_lines[0] if self.error_lines else "Benchmarking failed."
        return NO_TIMED_STATS_ERROR if timed_missing else None

    def build(self) -> BenchmarkRun:
        warmup, timed = self._warmup_and_timed()
        timed = timed or {}
        warmup = warmup or {}
        litert_ms = self.litert
        inference_avg_us = timed.get("avg", self.summary.get(
            "inference", _ms_to_us(litert_ms.get("Inference (avg)"))))
        failed = bool(self.shell_errors or self.fatal_errors or self.invoke_errors
                      or self.benchmarking_failed or inference_avg_us is None)
        delegate, nodes_delegated, nodes_total, partitions = self._delegation()
        timed_count = timed.get("count")
        warmup_count = warmup.get("count")
        run = BenchmarkRun(
            status="failed" if failed else "ok",
            error=self._error_line(inference_avg_us is None) if failed else None,
            init_us=self.summary.get("init", _ms_to_us(
                litert_ms.get("Model initialization", self.session_init_ms))),
            first_inference_us=self.summary.get("first", _ms_to_us(
                litert_ms.get("Warmup (first)", litert_ms.get("First inference")))),
            warmup_avg_us=self.summary.get("warmup", warmup.get(
                "avg", _ms_to_us(litert_ms.get("Warmup (avg)")))),
            inference_avg_us=inference_avg_us,
            inference_std_us=timed.get("std", _ms_to_us(litert_ms.get("Inference (std)"))),
            inference_min_us=timed.get("min", _ms_to_us(litert_ms.get("Inference (min)"))),
            inference_max_us=timed.get("max", _ms_to_us(litert_ms.get("Inference (max)"))),
            inference_count=(int(timed_count) if timed_count is not None
                             else self.litert_runs.get("Inference (avg)")),
            inference_p50_us=timed.get("median", _ms_to_us(litert_ms.get("Inference (median)"))),
            memory_init_mb=self.memory_init_mb,
            memory_overall_mb=self.memory_overall_mb,
            peak_memory_mb=self.peak_memory_mb,
            delegate=delegate,
            nodes_delegated=nodes_delegated,
            nodes_total=nodes_total,
            partitions=partitions,
            # Run Order lists every op; older excerpts may only show the Top-N table.
            ops=list(self.run_order_rows or self.top_rows),
            inference_p5_us=timed.get("p5", _ms_to_us(litert_ms.get("Inference (p5)"))),
            inference_p95_us=timed.get("p95", _ms_to_us(litert_ms.get("Inference (p95)"))),
            warmup_count=(int(warmup_count) if warmup_count is not None
                          else self.litert_runs.get("Warmup (avg)")),
            warmup_std_us=warmup.get("std"),
            warmup_min_us=warmup.get("min"),
            warmup_max_us=warmup.get("max"),
            model_size_mb=self.model_size_mb,
            throughput_mb_per_s=litert_ms.get("Throughput"),
            init_ops=list(self.init_rows),
            tool_flavour="litert" if self.litert_results_seen else "tflite" if self.summary else None,
        )
        if run.first_inference_us is None and warmup:
            # The first warmup invocation is the first inference ("count=1 curr=C": C).
            run.first_inference_us = warmup.get("first")
        return run


# ---------------------------------------------------------------- the log, line by line
class _LogParser:
    """Feeds lines to the current run and decides where one run ends and the next begins.

    A finished run is kept as its (smaller) record only. With `limits`, what the parser keeps is
    bounded too: more runs or op rows than allowed raise LogLimitExceeded."""

    def __init__(self, limits: "LogLimits | None" = None) -> None:
        self.finished: list[BenchmarkRun] = []
        self.run = _RunBuilder()
        self.limits = limits
        self.rows_kept = 0  # op rows and delegation facts of every run so far
        self.pending_delegation: list[str] = []  # see _defer_delegation

    def _start_new_run(self) -> None:
        if self.run.has_content:
            if self.limits and len(self.finished) + 2 > self.limits.max_runs:  # + this, the next
                raise LogLimitExceeded(f"more than {self.limits.max_runs} benchmark runs")
            self.finished.append(self.run.build())
        self.run = _RunBuilder()
        self._apply_pending_delegation()  # a measurement followed them: this run's

    def _keep_row(self) -> None:
        self.rows_kept += 1
        if self.limits and self.rows_kept > self.limits.max_rows:
            raise LogLimitExceeded(f"more than {self.limits.max_rows} op profiling rows and "
                                   "delegation lines")

    def _begin_marker(self, starts_run: bool = False) -> _RunBuilder:
        """A benchmark line: a closed run (failed / crashed) or `starts_run` opens the next one."""
        if self.run.closed or (starts_run and self.run.has_content):
            self._start_new_run()
        self.run.has_content = True
        return self.run

    def feed(self, raw: str) -> None:
        line = _normalize_line(raw)
        text = line.text
        if not text:
            self.run.profile_table = None  # a blank line ends a profiling table
            return
        if self._feed_profiling(text):
            return
        if _STARTING.match(text):
            self._begin_marker(starts_run=True)
            return
        match = _PHASE.match(text)
        if match:
            run = self._begin_marker(
                starts_run=self.run.phase_count >= 2 or bool(self.run.summary)
                or self.run.litert_results_seen)
            run.phase_count += 1
            return
        match = _STATS.match(text)
        if match:
            count = _to_int(match.group(1))
            if count is None:
                return
            run = self._begin_marker(
                starts_run=bool(self.run.summary) or self.run.litert_results_seen
                or len(self.run.stats_lines) >= max(2, self.run.phase_count))
            run.stats_lines.append(_StatsLine(_parse_stats(match.group(2), count), run.phase_count))
            return
        match = _SUMMARY.match(text)
        if match:
            run = self._begin_marker(starts_run=bool(self.run.summary)
                                     or self.run.litert_results_seen)
            run.summary = _parse_summary(match.group(1))
            return
        if _LITERT_HEADER.match(text):
            self._begin_marker(starts_run=self.run.litert_results_seen).litert_results_seen = True
            return
        match = _LITERT_VALUE.match(text)
        if match:
            self._feed_litert_value(match)
            return
        if _LOADED_MODEL.match(text) or _SESSION_INIT.match(text):
            run = self._begin_marker(starts_run=self.run.has_measurement)
            match = _SESSION_INIT.match(text)
            if match:
                run.session_init_ms = _to_float(match.group(1))
            return
        if self._feed_memory(text) or self._defer_delegation(text) or self._feed_delegation(text):
            return
        self._feed_failure(line)

    def _feed_litert_value(self, match: re.Match) -> None:
        key, value, unit, runs = match.groups()
        run = self._begin_marker()
        number = _to_float(value)
        if number is None:
            return
        if key == "Init footprint":
            run.memory_init_mb = number
        elif key == "Overall footprint":
            run.memory_overall_mb = number
        elif key == "Peak memory":
            run.peak_memory_mb = number
        else:
            run.litert[key] = number
            run_count = _to_int(runs)
            if run_count is not None:
                run.litert_runs[key] = run_count

    def _feed_memory(self, text: str) -> bool:
        match = _MEMORY_INIT_OVERALL.match(text)
        if match:
            run = self._begin_marker()
            run.memory_init_mb = _to_float(match.group(1))
            run.memory_overall_mb = _to_float(match.group(2))
            return True
        match = _PEAK_MEMORY.match(text)
        if match:
            self._begin_marker().peak_memory_mb = _to_float(match.group(1))
            return True
        match = _MODEL_SIZE.match(text)
        if match:
            self._begin_marker().model_size_mb = _to_float(match.group(1))
            return True
        return False

    def _defer_delegation(self, text: str) -> bool:
        """Hold a delegation line printed after this run's measurement. Delegates are applied
        at init, before any timing, so such a line is the next run's when another measurement
        follows (runs pasted or looped with no STARTING! between them), and this run's when
        none does: reading stderr after stdout (adb's shell v2 keeps them apart) puts the
        runtime's delegation lines after the tool's timings."""
        if not self.run.has_measurement or not any(p.match(text) for p in _DELEGATION_LINES):
            return False
        self.pending_delegation.append(text)
        if self.limits and len(self.pending_delegation) > self.limits.max_rows:
            raise LogLimitExceeded(f"more than {self.limits.max_rows} op profiling rows and "
                                   "delegation lines")
        return True

    def _apply_pending_delegation(self) -> None:
        pending, self.pending_delegation = self.pending_delegation, []
        for text in pending:
            self._feed_delegation(text)

    def _feed_delegation(self, text: str) -> bool:
        match = _REPLACING.match(text)
        if match:
            delegated, total, class_name, partitions, scope = match.groups()
            name = _DELEGATE_CLASS_NAMES.get(class_name, class_name)
            counts = (_to_int(delegated), _to_int(total), _to_int(partitions))
            if None not in counts:
                # One line per subgraph; a repeated line for the same subgraph replaces the earlier.
                run = self._begin_marker()
                key = (name, scope or "subgraph 0")
                if key not in run.replacements:
                    self._keep_row()
                run.replacements[key] = counts
            return True
        match = _EXPLICIT_APPLIED.match(text)
        if match:
            run = self._begin_marker()
            run.explicit_delegate, run.explicit_mode = match.group(1), match.group(2)
            run.explicit_kernels = _to_int(match.group(3))
            return True
        match = _EXPLICIT_NOT_EXECUTED.match(text)
        if match:
            run = self._begin_marker()
            run.explicit_delegate, run.explicit_mode = match.group(1), "not"
            return True
        match = _CREATED_DELEGATE.match(text)
        if match:
            name = next(group for group in match.groups() if group)
            run = self._begin_marker()
            if name not in run.created_delegates:
                self._keep_row()
                run.created_delegates.append(name)
            return True
        match = _GPU_KERNELS.match(text)
        if match:
            self._begin_marker().gpu_kernels = _to_int(match.group(1))
            return True
        match = _GPU_SPLIT.match(text)
        if match:
            on_gpu, on_cpu = _to_int(match.group(1)), _to_int(match.group(2))
            if on_gpu is not None and on_cpu is not None:
                self._begin_marker().gpu_split = (on_gpu, on_cpu)
            return True
        return False

    def _feed_failure(self, line: _LogLine) -> None:
        text = line.text
        if _BENCHMARKING_FAILED.match(text):
            run = self._begin_marker()
            run.benchmarking_failed = run.closed = True
            return
        if _SHELL_ERROR.match(text) or _CRASH.match(text):
            run = self._begin_marker()
            _keep_first(run.shell_errors, text)
            run.closed = True
            return
        if _TOOL_FATAL.match(text) or line.level == "FATAL":
            _keep_first(self._begin_marker().fatal_errors, text)
            return
        if _INVOKE_ERROR.match(text):
            _keep_first(self._begin_marker().invoke_errors, text)
            return
        if _RESTORED_PLAN.match(text):
            # The failing delegate nodes were undone: their "failed to prepare" lines are not fatal.
            self.run.invoke_errors.clear()
        if line.level == "ERROR":
            _keep_first(self.run.error_lines, text)

    def _feed_profiling(self, text: str) -> bool:
        run = self.run
        if _PROFILE_INIT.match(text):
            self._begin_marker().profile_section = "init"
            return True
        if _PROFILE_REGULAR.match(text):
            self._begin_marker().profile_section = "regular"
            return True
        if _PROFILE_DELEGATE_INTERNAL.match(text):
            run.profile_section = "internal"
            return True
        match = _PROFILE_TABLE.match(text)
        if match:
            self._begin_marker().profile_table = match.group(1)
            return True
        if run.profile_table not in _ROW_TABLES:
            return False
        row = _parse_op_row(text)
        if row is None:
            return text.startswith("[")  # the column header belongs to the table too
        if run.profile_section == "init":
            if run.profile_table == "Run Order":
                self._keep_row()
                run.init_rows.append(row)
        elif run.profile_section != "internal":
            target = run.run_order_rows if run.profile_table == "Run Order" else run.top_rows
            self._keep_row()
            target.append(row)
        return True

    def results(self) -> list[BenchmarkRun]:
        if not self.run.closed:  # no measurement followed them: the last run's
            self._apply_pending_delegation()
        return [*self.finished, self.run.build()] if self.run.has_content else list(self.finished)


def _keep_first(found: list[str], text: str) -> None:
    # Only the first line of each kind is reported: a log of a million error lines keeps one.
    if not found:
        found.append(text)


def parse_log(text: str) -> list[BenchmarkRun]:
    """Every benchmark_model run found in `text`, in order; [] when there is none."""
    if not isinstance(text, str):
        return []
    parser = _LogParser()
    for raw in text.splitlines():
        parser.feed(raw)
    return parser.results()


# ---------------------------------------------------------------- a log file, as a stream
@dataclass(frozen=True)
class LogLimits:
    """What `parse_log_file` reads and keeps at most. Real benchmark_model logs, even logcat
    captures with op profiles of big models, stay far below; beyond them memory would grow with
    the input (a run or an op row costs far more memory than its line of text)."""

    max_bytes: int = 256 * 2**20
    max_line_bytes: int = 2**20
    max_runs: int = 10_000
    max_rows: int = 50_000


class LogLimitExceeded(Exception):
    """The log is past a LogLimits bound (str: which)."""


class NotATextLog(LogLimitExceeded):
    """A line past max_line_bytes: binary data (or /dev/zero), not what benchmark_model prints."""


def parse_log_file(path: Path, limits: LogLimits = LogLimits()) -> list[BenchmarkRun]:
    """Every run found in the log at `path` (a file, a pipe, /dev/stdin), read line by line.

    UserError naming `path` when it cannot be read or is past a limit; nothing is returned then."""
    path = Path(path)
    fix = "give the path of a benchmark_model log"
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; {fix}") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory; {fix}") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror}); {fix}") from None
    cut = "cut out the benchmark_model output (e.g. with grep or tail) and parse that"
    with f:
        info = os.fstat(f.fileno())
        size = info.st_size if stat.S_ISREG(info.st_mode) else None  # pipes, devices: unknown
        if size is not None and size > limits.max_bytes:
            raise UserError(f"{path}: {_mib(size)}, over bench parse's limit of "
                            f"{_mib(limits.max_bytes)}; {cut}")
        parser = _LogParser(limits)
        try:
            for line in _log_lines(f, limits):
                parser.feed(line)
        except NotATextLog as exc:
            raise UserError(f"{path}: {exc}, so it is no benchmark_model log (binary data?); "
                            f"{fix}") from None
        except LogLimitExceeded as exc:
            raise UserError(f"{path}: {exc}, over bench parse's limit; {cut}") from None
        except OSError as exc:
            raise UserError(f"{path}: cannot read it ({exc.strerror}); {fix}") from None
        return parser.results()


def _mib(size: int) -> str:
    if size < 2**20:
        return f"{size:,} bytes"
    return f"{size / 2**20:,.0f} MiB" if size < 2**30 else f"{size / 2**30:,.1f} GiB"


def _log_lines(f: BinaryIO, limits: LogLimits) -> Iterator[str]:
    """The lines of `f` as `str.splitlines()` of the whole text would give them, one at a time."""
    total = 0
    for number in itertools.count(1):
        chunk = f.readline(limits.max_line_bytes + 1)  # up to a b"\n", or a line's limit
        if not chunk:
            return
        total += len(chunk)
        if total > limits.max_bytes:
            raise LogLimitExceeded(f"more than {_mib(limits.max_bytes)} of text")
        if len(chunk.rstrip(b"\r\n")) > limits.max_line_bytes:
            raise NotATextLog(f"line {number} is longer than {_mib(limits.max_line_bytes)}")
        # splitlines() also breaks at \r, \v, \f, \x1c-\x1e, \x85, \u2028/9, as for a whole text;
        # a line that is only a newline is one blank line (it ends an op profiling table).
        yield from chunk.decode("utf-8", errors="replace").splitlines() or [""]


def parse_last_run(text: str) -> BenchmarkRun:
    """The last run of `text` (the usual case: one launch, one log); a failed run if none is found."""
    runs = parse_log(text)
    if runs:
        return runs[-1]
    return BenchmarkRun(status="failed", error="no benchmark_model output found")
