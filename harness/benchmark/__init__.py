"""Reading benchmark_model output: `parse_log(text)` -> one `BenchmarkRun` per run found."""
from harness.benchmark.parser import (
    NO_TIMED_STATS_ERROR,
    RUN_DICT_KEYS,
    BenchmarkRun,
    LogLimits,
    OpProfileRow,
    parse_last_run,
    parse_log,
    parse_log_file,
)

__all__ = ["NO_TIMED_STATS_ERROR", "RUN_DICT_KEYS", "BenchmarkRun", "LogLimits", "OpProfileRow",
           "parse_last_run", "parse_log", "parse_log_file"]
