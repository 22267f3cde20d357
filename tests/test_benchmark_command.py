"""The benchmark_model command line (harness.benchmark.command): flags, delegate, kind, pinning,
quoting; and that the virtual device's tool takes every flag it writes."""
import shlex
import subprocess
import sys

import pytest

from device_agents.benchmark_model.flags import parse_flags
from device_agents.benchmark_model.litert_main import SPECS as LITERT_SPECS
from harness.benchmark.command import (DELEGATE_FLAGS, DELEGATES, KIND_FLAGS, KINDS,
                                       NO_SUCH_DELEGATE, benchmark_command, launch_threads, pinned,
                                       settings_flags, unavailable_reason)
from harness.benchmark.flavours import Flavour
from harness.benchmark.tool import ToolInfo, parse_usage
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
    for flavour in Flavour:
        assert KINDS == tuple(KIND_FLAGS[flavour]) == jobs.KINDS
        assert set(DELEGATE_FLAGS[flavour]) <= set(DELEGATES)
    assert set(DELEGATES) == set(DELEGATE_FLAGS[Flavour.TFLITE]) | set(DELEGATE_FLAGS[Flavour.LITERT])
    assert DELEGATES == jobs.DELEGATES


def _probed(flavour: Flavour) -> ToolInfo:
    """What bench learns from the virtual device's tool of `flavour` (its real --help)."""
    program = {Flavour.TFLITE: "main", Flavour.LITERT: "litert_main"}[flavour]
    out = subprocess.run([sys.executable, "-m", f"device_agents.benchmark_model.{program}",
                          "--help"], capture_output=True, text=True, timeout=60)
    found, flags = parse_usage(out.stdout + out.stderr)
    assert found is flavour
    return ToolInfo(flavour.value, flags, sha256="test")


PARSERS = {Flavour.TFLITE: lambda argv: parse_flags(argv),
           Flavour.LITERT: lambda argv: parse_flags(argv, LITERT_SPECS)}


@pytest.fixture(scope="module")
def tools():
    return {flavour: _probed(flavour) for flavour in Flavour}


@pytest.mark.parametrize("flavour", list(Flavour))
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("delegate", [None, *DELEGATES])
def test_the_tool_takes_every_flag_the_command_writes(tools, flavour, kind, delegate):
    tool = tools[flavour]
    if unavailable_reason(tool, delegate, kind):
        # only what a flavour has no flag for (LiteRT's tool reads no samples, writes no outputs)
        assert (flavour, delegate) in NO_SUCH_DELEGATE or (flavour, kind) == (Flavour.LITERT,
                                                                              "accuracy")
        return
    argv = shlex.split(command(kind=kind, delegate=delegate, cpu_mask_hex="f0", tool=tool))[2:]
    parsed = PARSERS[flavour](argv)
    assert parsed.errors == [] and parsed.unconsumed == [], argv
    assert parsed.params["graph"] == MODEL and parsed.params["num_threads"] == 4


def test_an_accuracy_launch_feeds_its_samples_and_saves_its_outputs(tools):
    argv = shlex.split(command(kind="accuracy", delegate="xnnpack-fp16", tool=tools[Flavour.TFLITE],
                               extra_flags=["--input_layer=serving_default_args_0:0",
                                            "--input_layer_shape=1,1,8,8",
                                            "--input_layer_value_files=serving_default_args_0::0:"
                                            "/d/s.bin", "--output_filepath=/d/o.bin"]))[1:]
    parsed = parse_flags(argv)
    assert parsed.errors == [] and parsed.unconsumed == [], argv
    p = parsed.params
    assert (p["num_runs"], p["warmup_runs"], p["min_secs"], p["warmup_min_secs"]) == (1, 0, 0, 0)
    assert p["use_xnnpack"] and p["xnnpack_force_fp16"]
    assert p["input_layer_value_files"] == "serving_default_args_0::0:/d/s.bin"
    assert unavailable_reason(tools[Flavour.LITERT], None, "accuracy").startswith(
        "accuracy on the device: this benchmark_model (litert) has no --input_layer, "
        "--input_layer_shape, --input_layer_value_files, --output_filepath")


def test_flags_a_binary_lacks_are_never_passed(tools):
    litert = tools[Flavour.LITERT]
    settings = BenchmarkSettings(use_xnnpack=True)
    assert "--use_xnnpack=true" in command(settings)  # the classic tool has it
    assert "--use_xnnpack" not in command(settings, tool=litert)
    assert unavailable_reason(litert, "cpu", "timing").startswith("--delegate cpu: LiteRT's CPU")
    assert unavailable_reason(tools[Flavour.TFLITE], "npu", "timing").startswith("--delegate npu")
    assert command(kind="op_profile", tool=litert).endswith("--use_profiler=true")
    assert command(kind="op_profile").endswith("--enable_op_profiling=true")
    # An old classic build without --warmup_min_secs: the setting is left to the tool.
    old = ToolInfo("tflite", [f for f in tools[Flavour.TFLITE].flags if f != "warmup_min_secs"],
                   sha256="old")
    assert "--warmup_min_secs" not in command(tool=old)
    assert unavailable_reason(ToolInfo("tflite", ["graph", "num_runs"], sha256="x"), "gpu",
                              "timing") == ("--delegate gpu: this benchmark_model (tflite) has no "
                                            "--use_gpu")
