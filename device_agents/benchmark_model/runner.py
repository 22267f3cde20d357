"""`BenchmarkModel::Run(min_num_times, min_secs, max_secs)`: the timing loop of the real tool.

Keeps running while (run < min runs or now < start + min_secs) and now <= start + max_secs; each
run resets the inputs (outside the timed span), times one Invoke in microseconds, then honours
--run_delay / --run_frequency.
"""
import time
from dataclasses import dataclass
from typing import Callable

from device_agents.benchmark_model import log
from device_agents.benchmark_model.flags import cpp_double, to_float32
from device_agents.benchmark_model.stats import StatWithPercentiles


def now_us() -> int:
    return time.monotonic_ns() // 1000


@dataclass
class RunSettings:
    min_runs: int
    min_secs: float
    max_secs: float
    run_delay_s: float
    run_frequency_hz: float


@dataclass
class PhaseResult:
    stats: StatWithPercentiles
    invoke_ok: bool
    error_text: str = ""


def run_phase(settings: RunSettings, reset_inputs: Callable[[], None],
              invoke: Callable[[], None], on_run_end: Callable[[int], None] | None = None) -> PhaseResult:
    """One phase (warmup or timed). `invoke` raises on failure; the loop goes on like the real one."""
    stats = StatWithPercentiles()
    log.info(f"Running benchmark for at least {settings.min_runs} iterations and at least "
             f"{cpp_double(settings.min_secs)} seconds but terminate if exceeding "
             f"{cpp_double(settings.max_secs)} seconds.")
    current_us = now_us()
    # static_cast<int64_t>(secs * 1.e6f): float arithmetic, truncated.
    min_finish_us = current_us + int(to_float32(settings.min_secs * 1e6))
    max_finish_us = current_us + int(to_float32(settings.max_secs * 1e6))
    sleep_s = settings.run_delay_s
    gap_s = 1.0 / settings.run_frequency_hz if settings.run_frequency_hz != 0 else float("inf")
    next_run_finish_s = current_us * 1e-6 + gap_s
    invoke_ok = True
    error_text = ""
    run = 0
    while (run < settings.min_runs or current_us < min_finish_us) and current_us <= max_finish_us:
        reset_inputs()
        start_us = now_us()
        try:
            invoke()
        except Exception as exc:  # the interpreter reports a failed Invoke as an exception
            invoke_ok = False
            error_text = str(exc)
        end_us = now_us()
        stats.update(end_us - start_us)
        if on_run_end is not None:
            on_run_end(end_us - start_us)
        if settings.run_frequency_hz > 0:
            sleep_s = next_run_finish_s - now_us() * 1e-6
            next_run_finish_s += gap_s
        if sleep_s > 0:
            time.sleep(sleep_s)
        current_us = now_us()
        run += 1
    # TFLITE_LOG(INFO) << stats << std::endl: the message ends with an empty line.
    log.info(stats.text() + "\n")
    return PhaseResult(stats, invoke_ok, error_text)
