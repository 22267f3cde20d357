"""harness.benchmark.parser against real benchmark_model outputs and synthetic edge cases.

Every expected number below was read by hand from the sample text, not produced by the parser.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from harness.benchmark import (
    NO_TIMED_STATS_ERROR,
    RUN_DICT_KEYS,
    BenchmarkRun,
    parse_last_run,
    parse_log,
)

SAMPLES_DIR = Path(__file__).parent / "data" / "benchmark_samples"


def read_sample(prefix: str) -> str:
    (path,) = SAMPLES_DIR.glob(f"{prefix}_*.txt")
    text = path.read_text()
    assert text.startswith("# source:")
    return text.split("\n", 1)[1]  # the first line is our provenance note, not tool output


def all_sample_prefixes() -> list[str]:
    return sorted(path.name.split("_", 1)[0] for path in SAMPLES_DIR.glob("*.txt"))


NONE_FIELDS = {key: None for key in RUN_DICT_KEYS if key not in ("status", "ops")}

# Per sample: one dict per run found; keys not given are expected None (ops: expected []).
EXPECTED_RUNS: dict[str, list[dict]] = {
    "01": [dict(status="ok", init_us=4452, first_inference_us=146161, warmup_avg_us=146161,
                inference_avg_us=137722, inference_std_us=896, inference_min_us=137079,
                inference_max_us=143416, inference_count=50)],
    "03": [dict(status="ok", init_us=1892, first_inference_us=91810, warmup_avg_us=86184.3,
                inference_avg_us=115062, inference_std_us=7678, inference_min_us=88216,
                inference_max_us=129193, inference_count=50)],
    "04": [dict(status="ok", init_us=9890, first_inference_us=606701, warmup_avg_us=577904,
                inference_avg_us=420334, inference_std_us=156392, inference_min_us=232432,
                inference_max_us=566895, inference_count=10),
           # Second run is cut after its warmup phase: no timed stats.
           dict(status="failed", error=NO_TIMED_STATS_ERROR, init_us=5930,
                first_inference_us=198994, warmup_avg_us=189810)],
    "05": [dict(status="ok", init_us=38467, warmup_avg_us=83235, inference_avg_us=79760.9)],
    "07": [dict(status="ok", init_us=16242, first_inference_us=360262, warmup_avg_us=304586,
                inference_avg_us=249684, inference_std_us=1442, inference_min_us=247067,
                inference_max_us=254474, inference_count=50, memory_init_mb=4.92969,
                memory_overall_mb=138.809)],
    # Only the profiling part of the output: ops, but no tool stats.
    "08": [dict(status="failed", error=NO_TIMED_STATS_ERROR)],
    "10": [dict(status="failed", error="Failed to apply NNAPI delegate.", delegate="NNAPI")],
    "11": [dict(status="ok", init_us=870557, first_inference_us=130565, warmup_avg_us=122373,
                inference_avg_us=119375, inference_std_us=1948, inference_min_us=113737,
                inference_max_us=124776, inference_count=50, delegate="GPU", partitions=1)],
    "13": [dict(status="failed", error=NO_TIMED_STATS_ERROR, delegate="NNAPI", nodes_delegated=0,
                partitions=0)],
    "14": [dict(status="failed", error=NO_TIMED_STATS_ERROR, delegate="GPU")],
    "15": [dict(status="failed", error=NO_TIMED_STATS_ERROR, memory_init_mb=2.03516,
                memory_overall_mb=2.03516)],
    "17": [dict(status="failed", error=NO_TIMED_STATS_ERROR, init_us=9340,
                first_inference_us=1381510, warmup_avg_us=1381510, delegate="XNNPACK")],
    "19": [dict(status="failed", error="Failed to allocate tensors!")],
    "20": [dict(status="ok", init_us=119515, first_inference_us=87112, warmup_avg_us=58147.4,
                inference_avg_us=63743.2, inference_std_us=60716, inference_min_us=49088,
                inference_max_us=686105, inference_count=1000, inference_p50_us=51891,
                memory_init_mb=55.4961, memory_overall_mb=55.4961, delegate="XNNPACK",
                nodes_delegated=2168, nodes_total=2168, partitions=1)],
    "22": [dict(status="ok", init_us=614333, first_inference_us=905463, warmup_avg_us=905463,
                inference_avg_us=899641, inference_std_us=1549, inference_min_us=898007,
                inference_max_us=906121, inference_count=50, inference_p50_us=899281,
                memory_init_mb=146.363, memory_overall_mb=150.141, delegate="XNNPACK",
                partitions=1)],
    "23": [dict(status="failed",
                error="/system/bin/sh: ./benchmark_model: not executable: 64-bit ELF file")],
    # Flex kernels fail at every invoke (min=22us): the numbers are printed but not valid.
    "25": [dict(status="failed", error="Node number 1139 (TfLiteFlexDelegate) failed to prepare.",
                inference_avg_us=4851.66, inference_std_us=26505, inference_min_us=22,
                inference_max_us=216495, inference_count=113)],
    # LiteRT CompiledModel block, ms -> us.
    "27": [dict(status="ok", init_us=586760, first_inference_us=4440, warmup_avg_us=520,
                inference_avg_us=460, inference_std_us=30, inference_min_us=350,
                inference_max_us=740, inference_count=2166),
           dict(status="ok", init_us=11030, first_inference_us=11500, warmup_avg_us=9850,
                inference_avg_us=10080, inference_std_us=1020, inference_min_us=9200,
                inference_max_us=16270, inference_count=100)],
    "29": [dict(status="failed", error=NO_TIMED_STATS_ERROR, memory_init_mb=2.43359,
                memory_overall_mb=8.67578, peak_memory_mb=13.1797)],
    # LiteRT v2.2.0's results block: ms with two decimals, the memory block, no peak memory.
    "30": [dict(status="ok", init_us=23744730, first_inference_us=7441040, warmup_avg_us=7441040,
                inference_avg_us=7430200, inference_std_us=9920, inference_min_us=7416400,
                inference_max_us=7448860, inference_count=10, memory_init_mb=6391.74,
                memory_overall_mb=6391.74)],
}


def assert_run_matches(run: BenchmarkRun, expected: dict) -> None:
    actual = run.to_dict()
    actual.pop("ops")
    wanted = {**NONE_FIELDS, **expected}
    for key, value in wanted.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            assert actual[key] == pytest.approx(value, rel=1e-9), key
        else:
            assert actual[key] == value, key


def test_every_sample_has_expectations():
    assert sorted(EXPECTED_RUNS) == all_sample_prefixes()


@pytest.mark.parametrize("prefix", sorted(EXPECTED_RUNS))
def test_sample_numbers(prefix):
    runs = parse_log(read_sample(prefix))
    assert len(runs) == len(EXPECTED_RUNS[prefix])
    for run, expected in zip(runs, EXPECTED_RUNS[prefix]):
        assert_run_matches(run, expected)


def test_sample_20_extra_attributes():
    (run,) = parse_log(read_sample("20"))
    assert (run.inference_p5_us, run.inference_p95_us) == (49620, 68628)
    assert (run.warmup_count, run.warmup_min_us, run.warmup_max_us, run.warmup_std_us) == (
        9, 51629, 87112, 11478)
    assert run.model_size_mb == pytest.approx(24.6229)


def test_the_parser_says_which_tool_printed_a_run():
    assert [r.tool_flavour for r in parse_log(read_sample("27"))] == ["litert", "litert"]
    assert [r.tool_flavour for r in parse_log(read_sample("30"))] == ["litert"]
    assert [r.tool_flavour for r in parse_log(read_sample("22"))] == ["tflite"]
    (run,) = parse_log(read_sample("30"))
    assert run.throughput_mb_per_s == pytest.approx(27.46) and run.warmup_count == 1


def test_sample_27_litert_extras():
    first, second = parse_log(read_sample("27"))
    assert (first.warmup_count, second.warmup_count) == (957, 51)
    assert first.throughput_mb_per_s == pytest.approx(1243.93)


def test_op_rows_space_aligned_with_start_column():
    (run,) = parse_log(read_sample("03"))
    assert len(run.ops) == 12
    assert run.ops[0].to_dict() == {
        "node_type": "CONV_2D", "first_ms": 5.567, "avg_ms": 7.237, "percent": 6.297,
        "cdf_percent": 6.297, "mem_kb": 0.0, "times_called": 1,
        "name": "[MobilenetV2/Conv/Relu6]"}
    assert run.ops[0].start_ms == 0.0
    assert run.ops[-1].node_type == "DEPTHWISE_CONV_2D"
    assert run.ops[-1].cdf_percent == pytest.approx(54.857)


def test_op_rows_tabs_regular_runs_only():
    (run,) = parse_log(read_sample("08"))
    # The Run Order table of the regular runs (11 rows), not the initialization table.
    assert len(run.ops) == 11
    assert [row.name for row in run.init_ops] == ["ModifyGraphWithDelegate/0", "AllocateTensors/0"]
    delegate_row = run.ops[6]
    assert delegate_row.node_type == "TfLiteNnapiDelegate"
    assert delegate_row.name == (
        "[model/tf.nn.silu_16/mul, model/tf.nn.silu_26/mul, model/tf.nn.silu_35/mul]:231")
    assert (delegate_row.first_ms, delegate_row.avg_ms, delegate_row.percent) == (78.701, 79.010,
                                                                                  49.781)
    assert run.ops[-1].cdf_percent == 100.0  # "35.320%\t100.000%" columns touch


def test_op_rows_top_table_when_run_order_is_absent():
    (run,) = parse_log(read_sample("05"))
    assert len(run.ops) == 10
    assert run.ops[0].name == "[MobilenetV1/MobilenetV1/Conv2d_3_pointwise/Relu6]"
    assert run.ops[0].start_ms == pytest.approx(19.352)
    assert run.ops[-1].times_called == 0


def test_op_rows_logcat_without_start_column_are_init_only():
    (run,) = parse_log(read_sample("15"))
    assert run.ops == []
    assert len(run.init_ops) == 2
    assert run.init_ops[0].start_ms is None
    assert (run.init_ops[0].first_ms, run.init_ops[0].mem_kb, run.init_ops[1].times_called) == (
        54.571, 1132.0, 2)


# What bench's own virtual benchmark_model prints (TF 2.18 wording + --report_peak_memory_footprint).
VIRTUAL_DEVICE_LOG = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Min num runs: [20]
INFO: Num threads: [2]
INFO: Min warmup runs: [2]
INFO: Graph: [/data/local/tmp/bench/3f2a.tflite]
INFO: Signature to run: []
INFO: Report the peak memory footprint: [1]
INFO: Loaded model /data/local/tmp/bench/3f2a.tflite
INFO: Initialized TensorFlow Lite runtime.
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
VERBOSE: Replacing 63 out of 65 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 3 partitions for subgraph 0.
INFO: The input model file size (MB): 13.3457
INFO: Initialized session in 41.207ms.
INFO: Running benchmark for at least 2 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=61 first=12702 curr=7918 min=7705 max=12702 avg=8187.3 std=671 p5=7747 median=8069 p95=8833

INFO: Running benchmark for at least 20 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=124 first=8011 curr=7989 min=7650 max=11214 avg=8040.51 std=402 p5=7702 median=7954 p95=8459

INFO: Inference timings in us: Init: 41207, First inference: 12702, Warmup (avg): 8187.3, Inference (avg): 8040.51
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=31.2734 overall=39.8125
INFO: Overall peak memory footprint (MB) via periodic monitoring: 45.5938
INFO: Memory status at the end of exeution:
INFO: - VmRSS              : 46 MB
INFO: + RssAnnon           : 25 MB
INFO: + RssFile + RssShmem : 21 MB
"""


def test_virtual_device_format():
    (run,) = parse_log(VIRTUAL_DEVICE_LOG)
    assert_run_matches(run, dict(
        status="ok", init_us=41207, first_inference_us=12702, warmup_avg_us=8187.3,
        inference_avg_us=8040.51, inference_std_us=402, inference_min_us=7650,
        inference_max_us=11214, inference_count=124, inference_p50_us=7954,
        memory_init_mb=31.2734, memory_overall_mb=39.8125, peak_memory_mb=45.5938,
        delegate="XNNPACK", nodes_delegated=63, nodes_total=65, partitions=3))
    assert run.warmup_count == 61
    as_json = json.loads(json.dumps(run.to_dict()))
    assert list(as_json) == list(RUN_DICT_KEYS)
    assert as_json["ops"] == []


def test_two_runs_split_on_starting_and_crash_after_output():
    second = VIRTUAL_DEVICE_LOG.replace("count=124", "count=125") + "Segmentation fault\n"
    first, crashed = parse_log(VIRTUAL_DEVICE_LOG + "\n" + second)
    assert (first.status, first.inference_count) == ("ok", 124)
    assert (crashed.status, crashed.error, crashed.inference_count) == (
        "failed", "Segmentation fault", 125)


def test_phase_lines_split_runs_without_starting_marker():
    body = VIRTUAL_DEVICE_LOG.split("INFO: Running benchmark", 1)[1]
    runs = parse_log("INFO: Running benchmark" + body + "INFO: Running benchmark" + body)
    assert [run.inference_avg_us for run in runs] == [8040.51, 8040.51]


def test_scientific_notation_and_count1_timed_phase():
    log = (
        "STARTING!\n"
        "Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.\n"
        "count=1 curr=3512391\n\n"
        "Running benchmark for at least 1 iterations and at least 1 seconds but terminate if exceeding 150 seconds.\n"
        "count=3 first=2951200 curr=2948000 min=2948000 max=2953100 avg=2.95034e+06 std=2104\n\n"
        "Inference timings in us: Init: 201345, First inference: 3512391, "
        "Warmup (avg): 3.51239e+06, Inference (avg): 2.95034e+06\n")
    (run,) = parse_log(log)
    assert run.status == "ok"
    assert run.inference_avg_us == 2950340.0
    assert run.warmup_avg_us == 3512390.0
    assert (run.inference_min_us, run.inference_max_us, run.inference_count) == (2948000, 2953100, 3)


def test_single_run_all_same_timed_line():
    # The only stats line matches the summary's inference average, so it is the timed phase.
    log = ("Running benchmark for 50 iterations\ncount=50 curr=1200 (all same)\n\n"
           "Average inference timings in us: Warmup: 1500, Init: 300, no stats: 1200\n")
    (run,) = parse_log(log)
    assert (run.status, run.inference_avg_us, run.inference_min_us, run.inference_std_us) == (
        "ok", 1200, 1200, 0)
    assert (run.warmup_avg_us, run.init_us, run.inference_count) == (1500, 300, 50)


def test_missing_model_error_prefers_tool_line():
    log = ("INFO: STARTING!\nINFO: Graph: [/data/local/tmp/missing.tflite]\n"
           "ERROR: Could not open '/data/local/tmp/missing.tflite'.\n"
           "ERROR: Failed to load model /data/local/tmp/missing.tflite\n"
           "ERROR: Benchmarking failed.\n")
    (run,) = parse_log(log)
    assert (run.status, run.error) == ("failed", "Failed to load model /data/local/tmp/missing.tflite")


def test_benchmarking_failed_reports_first_error_line():
    log = "STARTING!\nERROR: Something odd happened.\nERROR: Another.\nBenchmarking failed.\n"
    (run,) = parse_log(log)
    assert (run.status, run.error) == ("failed", "Something odd happened.")


def test_delegate_fallback_restored_is_not_a_failure():
    log = VIRTUAL_DEVICE_LOG.replace(
        "INFO: The input model file size",
        "ERROR: Node number 12 (TfLiteXNNPackDelegate) failed to prepare.\n"
        "ERROR: Restored original execution plan after delegate application failure.\n"
        "INFO: The input model file size")
    (run,) = parse_log(log)
    assert (run.status, run.error) == ("ok", None)


def test_logcat_quoted_and_gpu_split():
    log = "\n".join(
        "> 05-31 10:38:42.607 22206 22206 I tflite  : " + line for line in (
            "STARTING!",
            "Created TensorFlow Lite delegate for GPU.",
            "294 operations will run on the GPU, and the remaining 6 operations will run on the CPU.",
            "Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.",
            "count=3 first=9000 curr=7000 min=7000 max=9000 avg=7666.67 std=942",
            "Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.",
            "count=50 first=7100 curr=7050 min=6900 max=7400 avg=7080.5 std=80",
        ))
    (run,) = parse_log(log)
    assert (run.status, run.delegate, run.nodes_delegated, run.nodes_total) == ("ok", "GPU", 294, 300)
    assert (run.inference_avg_us, run.warmup_avg_us, run.first_inference_us) == (7080.5, 7666.67, 9000)


@pytest.mark.parametrize("text", ["", "\n\n   \n", "hello world\nthis is not a benchmark log\n"])
def test_empty_and_unrelated_text_give_no_runs(text):
    assert parse_log(text) == []


def test_garbage_never_raises():
    rng = random.Random(1234)
    alphabet = "count=avg std:%[]()\t >INFO ERROR 0123456789.e+-nan\n\x00\xff"
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 400)))
        for run in parse_log(text):
            assert run.status in ("ok", "failed")
            json.dumps(run.to_dict(), allow_nan=False)
    huge = "9" * 5000
    odd = (f"count={huge} avg={huge}\n(1 runs)\nInference (avg): {huge} ms ({huge} runs)\n"
           f"Replacing {huge} out of 1 node(s) with delegate (X) node, yielding 1 partitions\n"
           "count=5 avg=nan std=inf\nInference timings in us: Init: , Inference (avg): x\n")
    (run,) = parse_log(odd)
    # Non-finite or overlong numbers are no measurement: nothing usable, so the run failed.
    assert (run.status, run.inference_avg_us, run.inference_std_us) == ("failed", None, None)
    assert run.inference_count == 5
    json.dumps(run.to_dict(), allow_nan=False)
    assert parse_log(None) == []  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", all_sample_prefixes())
def test_truncated_samples_never_raise(prefix):
    # Logs get cut anywhere (timeouts, pulled too early): every cut must still parse.
    text = read_sample(prefix)
    cut_points = {len(text)}
    position = 0
    for line in text.splitlines(keepends=True):
        cut_points.update((position, position + len(line) // 2))
        position += len(line)
    for cut in sorted(cut_points):
        for run in parse_log(text[:cut]):
            assert list(run.to_dict()) == list(RUN_DICT_KEYS)
            assert run.status in ("ok", "failed")
            assert (run.error is None) == (run.status == "ok")


def test_parse_last_run():
    assert parse_last_run(read_sample("27")).inference_count == 100
    nothing = parse_last_run("")
    assert (nothing.status, nothing.error) == ("failed", "no benchmark_model output found")


@pytest.mark.parametrize("line, delegate, partitions", [
    ("Explicitly applied NNAPI delegate, and the model graph will be completely executed by the delegate.",
     "NNAPI", 1),
    ("Explicitly applied Hexagon delegate, and the model graph will be partially executed by the delegate w/ 3 delegate kernels.",
     "Hexagon", 3),
])
def test_explicit_delegate_lines(line, delegate, partitions):
    (run,) = parse_log(VIRTUAL_DEVICE_LOG.replace(
        "VERBOSE: Replacing 63 out of 65 node(s) with delegate (TfLiteXNNPackDelegate) node, "
        "yielding 3 partitions for subgraph 0.", "INFO: " + line))
    assert (run.status, run.delegate, run.partitions, run.nodes_delegated) == (
        "ok", delegate, partitions, None)


def test_delegation_lines_after_a_measurement_belong_to_the_next_run():
    """Selected lines of a CPU run, then of a GPU run, pasted with no STARTING! between them
    (issue 12): the GPU run's delegation lines are its own, not the CPU run's. Line formats
    from real logs in ../shared/reference/benchmark_model_samples: the XNNPACK lines as in
    sample 22 (TI's TF Lite 2.18 doc), `Created TensorFlow Lite delegate for GPU.` as in
    sample 14 (tensorflow/tensorflow#56301); `TfLiteGpuDelegateV2` is the custom name the GPU
    delegate registers its node under (tensorflow/lite/delegates/gpu/delegate.cc)."""
    log = "\n".join((
        "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
        "VERBOSE: Replacing 63 out of 65 node(s) with delegate (TfLiteXNNPackDelegate) node, "
        "yielding 3 partitions for subgraph 0.",
        "INFO: count=124 first=8011 curr=7989 min=7650 max=11214 avg=8040.51 std=402",
        "INFO: Inference timings in us: Init: 41207, First inference: 12702, "
        "Warmup (avg): 8187.3, Inference (avg): 8040.51",
        "INFO: Created TensorFlow Lite delegate for GPU.",
        "VERBOSE: Replacing 65 out of 65 node(s) with delegate (TfLiteGpuDelegateV2) node, "
        "yielding 1 partitions for subgraph 0.",
        "INFO: count=200 first=3100 curr=3005 min=2950 max=3300 avg=3010.5 std=40",
        "INFO: Inference timings in us: Init: 90210, First inference: 3100, "
        "Warmup (avg): 3050.2, Inference (avg): 3010.5",
    ))
    cpu, gpu = parse_log(log)
    assert (cpu.delegate, cpu.nodes_delegated, cpu.partitions) == ("XNNPACK", 63, 3)
    assert (gpu.delegate, gpu.nodes_delegated, gpu.partitions) == ("GPU", 65, 1)
    assert (cpu.inference_avg_us, gpu.inference_avg_us) == (8040.51, 3010.5)


def test_delegation_lines_after_the_last_measurement_are_that_runs():
    """The tool's lines on stdout, then the runtime's on stderr (adb's shell v2 keeps the
    streams apart, and bench reads stdout first): one run, with its delegation."""
    stdout = ("INFO: count=124 first=8011 curr=7989 min=7650 max=11214 avg=8040.51 std=402\n"
              "INFO: Inference timings in us: Init: 41207, First inference: 12702, "
              "Warmup (avg): 8187.3, Inference (avg): 8040.51\n")
    stderr = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
              "VERBOSE: Replacing 63 out of 65 node(s) with delegate (TfLiteXNNPackDelegate) "
              "node, yielding 3 partitions for subgraph 0.\n")
    (run,) = parse_log(stdout + stderr)
    assert (run.status, run.delegate, run.nodes_delegated, run.inference_avg_us) == \
        ("ok", "XNNPACK", 63, 8040.51)
