"""The benchmark_model command line (harness.benchmark.command): flags, delegate, kind, pinning,
quoting; and that the virtual device's tool takes every flag it writes."""
import shlex

import pytest

from device_agents.benchmark_model.flags import parse_flags
from harness.benchmark.command import (DELEGATE_FLAGS, DELEGATES, KIND_FLAGS, KINDS,
                                       benchmark_command, launch_threads, pinned, settings_flags)
from harness.config import BenchmarkSettings
from harness.benchmark import jobs

BINARY = "/data/local/tmp/bench/benchmark_model"
MODEL = "/data/local/tmp/bench/model.tflite"
SETTINGS_FLAGS = ("--num_runs=50 --warmup_runs=1 --min_secs=1 --max_secs=150 "
                  "--warmup_min_secs=0.5")


def command(settings=None, **kw) -> str:
    kw.setdefault("num_threads", 4)
    return benchmark_command(BINARY, MODEL, settings or BenchmarkSettings(), **kw)


def test_a_timing_launch_with_the_default_settings():
    assert command() == f"{BINARY} --graph={MODEL} {SETTINGS_FLAGS} --num_threads=4"


def test_the_settings_flags_in_order_with_the_launchs_thread_count():
    settings = BenchmarkSettings(num_runs=7, warmup_runs=0, min_secs=0.25, max_secs=20,
                                 warmup_min_secs=0.01, num_threads=2, use_xnnpack=False)
    assert command(settings, num_threads=3) == (
        f"{BINARY} --graph={MODEL} --num_runs=7 --warmup_runs=0 --min_secs=0.25 --max_secs=20 "
        "--warmup_min_secs=0.01 --use_xnnpack=false --num_threads=3")
    # BenchmarkSettings.flags() is the same text, with the settings' own thread count.
    assert settings.flags() == settings_flags(settings) == [
        "--num_runs=7", "--warmup_runs=0", "--min_secs=0.25", "--max_secs=20",
        "--warmup_min_secs=0.01", "--use_xnnpack=false", "--num_threads=2"]


@pytest.mark.parametrize("delegate, flag", [
    (None, ""), ("cpu", " --use_xnnpack=false"), ("xnnpack", " --use_xnnpack=true"),
    ("gpu", " --use_gpu=true"), ("nnapi", " --use_nnapi=true")])
def test_the_delegate_flag_follows_the_thread_count(delegate, flag):
    assert command(delegate=delegate).endswith(f"--num_threads=4{flag}")


@pytest.mark.parametrize("kind, flag", [
    ("timing", ""), ("confirm", ""),
    ("peak_memory", " --report_peak_memory_footprint=true"),
    ("op_profile", " --enable_op_profiling=true")])
def test_the_kind_flag_comes_last(kind, flag):
    assert command(kind=kind, delegate="gpu").endswith(f"--use_gpu=true{flag}")


def test_a_pinned_launch_runs_under_taskset_with_the_mask():
    assert command(cpu_mask_hex="f0") == f"taskset f0 {command()}"
    assert command(cpu_mask_hex=None) == command()
    assert pinned("nproc", "80") == "taskset 80 nproc" and pinned("nproc", None) == "nproc"


def test_paths_are_quoted_for_the_device_shell():
    text = benchmark_command("/data/local/tmp/my bench/benchmark_model",
                             "/data/local/tmp/my bench/it's.tflite", BenchmarkSettings(),
                             num_threads=1, cpu_mask_hex="0f")
    words = shlex.split(text)
    assert words[:4] == ["taskset", "0f", "/data/local/tmp/my bench/benchmark_model",
                         "--graph=/data/local/tmp/my bench/it's.tflite"]
    assert text.startswith("taskset 0f '/data/local/tmp/my bench/benchmark_model' ")
    plain = command()  # nothing to quote: the device log shows the paths as they are
    assert plain.startswith(f"{BINARY} --graph={MODEL} ")


def test_the_thread_count_of_a_launch():
    auto, fixed = BenchmarkSettings(num_threads=-1), BenchmarkSettings(num_threads=2)
    assert launch_threads(3, auto, [4, 5, 6, 7]) == 3      # --threads wins
    assert launch_threads(None, auto, [4, 5, 6, 7]) == 4   # one per big core
    assert launch_threads(None, auto, []) == -1            # no topology: the tool's default
    assert launch_threads(None, fixed, [4, 5, 6, 7]) == 2  # [benchmark] num_threads


def test_kinds_and_delegates_are_the_flag_tables_keys():
    assert KINDS == tuple(KIND_FLAGS) == jobs.KINDS
    assert DELEGATES == tuple(DELEGATE_FLAGS) == jobs.DELEGATES


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("delegate", [None, *DELEGATES])
def test_the_tool_takes_every_flag_the_command_writes(kind, delegate):
    argv = shlex.split(command(kind=kind, delegate=delegate, cpu_mask_hex="f0"))[2:]
    parsed = parse_flags(argv)
    assert parsed.errors == [] and parsed.unconsumed == [], argv
    assert parsed.params["graph"] == MODEL and parsed.params["num_threads"] == 4
