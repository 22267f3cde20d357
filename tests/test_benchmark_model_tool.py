"""The virtual device's benchmark_model, run as a subprocess on a tiny real .tflite model."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from device_agents.benchmark_model.flags import parse_flags
from device_agents.benchmark_model.stats import StatWithPercentiles

REPO_ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = REPO_ROOT / "device_agents" / "bin" / "x86_64" / "benchmark_model"
SHORT_RUN = ["--min_secs=0.05", "--warmup_min_secs=0.02", "--num_runs=5"]
COUNT_LINE = re.compile(
    r"^INFO: count=(\d+) first=(\d+) curr=(\d+) min=(\d+) max=(\d+) avg=([\d.e+]+) std=(\d+) "
    r"p5=(\d+) median=(\d+) p95=(\d+)$|^INFO: count=(\d+) curr=(\d+)(\(all same\))? p5=\d+ median=\d+ p95=\d+$",
    re.M)


@pytest.fixture(scope="session")
def model_op_count(tiny_model) -> int:
    from ai_edge_litert.tools import flatbuffer_utils

    return len(flatbuffer_utils.read_model(str(tiny_model)).subgraphs[0].operators)


def run_tool(*args: str, env_extra: dict | None = None, cwd: Path | None = None):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    env.pop("BENCH_DEVICE_ROOT", None)
    env.update(env_extra or {})
    done = subprocess.run([sys.executable, str(LAUNCHER), *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)
    return done.returncode, done.stdout, done.stderr


def test_default_run_prints_the_real_tools_structure(tiny_model, model_op_count):
    rc, out, err = run_tool(f"--graph={tiny_model}", "--num_threads=2", *SHORT_RUN)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "INFO: STARTING!"
    assert lines[1] == "INFO: Log parameter values verbosely: [0]"
    assert "INFO: Min num runs: [5]" in lines
    assert "INFO: Num threads: [2]" in lines
    assert "INFO: #threads used for CPU inference: [2]" in lines
    assert f"INFO: Graph: [{tiny_model}]" in lines
    assert "INFO: Signature to run: []" in lines
    assert "INFO: Min warmup runs: [1]" not in lines  # not set on the command line: not echoed
    assert f"INFO: Loaded model {tiny_model}" in lines
    assert re.search(r"^INFO: The input model file size \(MB\): [\d.e+-]+$", out, re.M)
    init_ms = float(re.search(r"^INFO: Initialized session in ([\d.e+]+)ms\.$", out, re.M).group(1))
    phases = re.findall(r"^INFO: Running benchmark for at least (\d+) iterations and at least "
                        r"([\d.]+) seconds but terminate if exceeding 150 seconds\.$", out, re.M)
    assert phases == [("1", "0.02"), ("5", "0.05")]
    counts = COUNT_LINE.findall(out)
    assert len(counts) == 2
    timed = counts[1]
    assert int(timed[0]) >= 5 and int(timed[3]) <= int(timed[7]) <= int(timed[4])
    summary = re.search(r"^INFO: Inference timings in us: Init: (\d+), First inference: (\d+), "
                        r"Warmup \(avg\): ([\d.e+]+), Inference \(avg\): ([\d.e+]+)$", out, re.M)
    assert summary and summary.group(4) == timed[5]
    assert int(summary.group(1)) == round(init_ms * 1000)
    assert int(summary.group(2)) == int(counts[0][1] or counts[0][11])
    assert re.search(r"^INFO: Memory footprint delta from the start of the tool \(MB\): "
                     r"init=[\d.e+-]+ overall=[\d.e+-]+$", out, re.M)
    # Runtime lines go to stderr, as the TFLite core logger does; the figures are read back
    # from the interpreter: every op of this model is XNNPACK-compatible.
    assert "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." in err
    assert (f"VERBOSE: Replacing {model_op_count} out of {model_op_count} node(s) with delegate "
            "(TfLiteXNNPackDelegate) node, yielding 1 partitions for subgraph 0.") in err


def test_use_xnnpack_false_disables_the_default_delegate(tiny_model):
    rc, out, err = run_tool(f"--graph={tiny_model}", "--use_xnnpack=false", *SHORT_RUN)
    assert rc == 0, err
    assert "INFO: Use xnnpack: [0]" in out
    assert "XNNPACK" not in err and "Replacing" not in err


def test_use_xnnpack_true_reports_explicit_full_delegation(tiny_model):
    rc, out, err = run_tool(f"--graph={tiny_model}", "--use_xnnpack=true",
                            "--require_full_delegation=true", *SHORT_RUN)
    assert rc == 0, err
    assert "INFO: Use xnnpack: [1]" in out
    assert ("INFO: Explicitly applied XNNPACK delegate, and the model graph will be completely "
            "executed by the delegate.") in out


def test_require_full_delegation_without_any_delegate_fails(tiny_model):
    rc, out, err = run_tool(f"--graph={tiny_model}", "--use_xnnpack=false",
                            "--require_full_delegation=true", *SHORT_RUN)
    assert rc == 1
    assert "ERROR: Disallowed CPU fallback detected." in err
    assert err.rstrip().endswith("ERROR: Benchmarking failed.")


def test_device_paths_map_under_bench_device_root(tiny_model, tmp_path):
    device_dir = tmp_path / "data" / "local" / "tmp" / "bench"
    device_dir.mkdir(parents=True)
    (device_dir / "model.tflite").write_bytes(tiny_model.read_bytes())
    env = {"BENCH_DEVICE_ROOT": str(tmp_path)}
    rc, out, err = run_tool("--graph=/data/local/tmp/bench/model.tflite", *SHORT_RUN,
                            env_extra=env, cwd=device_dir)
    assert rc == 0, err
    assert "INFO: Loaded model /data/local/tmp/bench/model.tflite" in out
    # Relative paths are relative to the device cwd.
    rc, out, err = run_tool("--graph=model.tflite", *SHORT_RUN, env_extra=env, cwd=device_dir)
    assert rc == 0, err
    # The same absolute path means nothing on the host when the device root is another folder.
    rc, _, err = run_tool("--graph=/data/local/tmp/bench/model.tflite", *SHORT_RUN,
                          env_extra={"BENCH_DEVICE_ROOT": str(tmp_path / "elsewhere")})
    assert rc == 1 and "Could not open" in err
    rc, _, err = run_tool("--graph=/data/../../" + str(device_dir / "model.tflite"), *SHORT_RUN,
                          env_extra=env)
    assert rc == 1 and "Could not open" in err


def test_missing_model_fails_like_the_model_loader(tmp_path):
    missing = "/data/local/tmp/missing.tflite"
    rc, out, err = run_tool(f"--graph={missing}", env_extra={"BENCH_DEVICE_ROOT": str(tmp_path)})
    assert rc == 1
    assert out.splitlines()[-2:] == [f"INFO: Graph: [{missing}]", "INFO: Signature to run: []"]
    assert err.splitlines() == [f"ERROR: Could not open '{missing}'.",
                                f"ERROR: Failed to load model {missing}",
                                "ERROR: Benchmarking failed."]


def test_bad_flag_value_prints_usage_and_fails(tiny_model):
    rc, out, err = run_tool(f"--graph={tiny_model}", "--num_runs=many")
    assert rc == 1
    assert out == "INFO: STARTING!\n"
    assert err.startswith("ERROR: Failed to parse flag 'num_runs' against argv '--num_runs=many'\n"
                          "ERROR: usage: ")
    assert re.search(r"^\t--num_runs=50\s+\tint32\toptional\t", err, re.M)
    assert err.rstrip().endswith("ERROR: Benchmarking failed.")


def test_unknown_flags_are_reported_and_the_run_goes_on(tiny_model):
    rc, out, _ = run_tool(f"--graph={tiny_model}", "--no_such_flag=1", "--num_threads", *SHORT_RUN)
    assert rc == 0
    assert "WARN: Unconsumed cmdline flags: --no_such_flag=1 --num_threads" in out.splitlines()


def test_gpu_delegate_cannot_be_applied_without_a_gpu_driver(tiny_model, model_op_count):
    rc, out, err = run_tool(f"--graph={tiny_model}", "--use_gpu=true", *SHORT_RUN)
    assert rc == 1
    assert "INFO: Use gpu: [1]" in out and "INFO: GPU delegate created." in out
    assert f"ERROR: Node number {model_op_count} (TfLiteGpuDelegateV2) failed to prepare." in err
    assert err.splitlines()[-2:] == ["ERROR: Failed to apply GPU delegate.", "ERROR: Benchmarking failed."]
    assert "count=" not in out


def test_nnapi_delegate_fails_without_libneuralnetworks(tiny_model):
    rc, out, err = run_tool(f"--graph={tiny_model}", "--use_nnapi=true", *SHORT_RUN)
    assert rc == 1
    assert "INFO: Use NNAPI: [1]" in out
    assert "nnapi error: unable to open library libneuralnetworks.so" in err
    assert err.splitlines()[-2:] == ["ERROR: Failed to apply NNAPI delegate.", "ERROR: Benchmarking failed."]


def test_peak_memory_footprint_lines(tiny_model):
    rc, out, err = run_tool(f"--graph={tiny_model}", "--report_peak_memory_footprint=true",
                            "--memory_footprint_check_interval_ms=5", *SHORT_RUN)
    assert rc == 0, err
    assert "INFO: Report the peak memory footprint: [1]" in out
    peak = re.search(r"^INFO: Overall peak memory footprint \(MB\) via periodic monitoring: ([\d.]+)$",
                     out, re.M)
    assert peak and float(peak.group(1)) > 1
    tail = out.splitlines()[-4:]
    assert tail[0] == "INFO: Memory status at the end of exeution:"
    vm_rss = int(re.fullmatch(r"INFO: - VmRSS              : (\d+) MB", tail[1]).group(1))
    anon = int(re.fullmatch(r"INFO: \+ RssAnnon           : (\d+) MB", tail[2]).group(1))
    shared = int(re.fullmatch(r"INFO: \+ RssFile \+ RssShmem : (\d+) MB", tail[3]).group(1))
    assert vm_rss == anon + shared and vm_rss > 0


def test_op_profiling_tables(tiny_model, model_op_count):
    rc, out, err = run_tool(f"--graph={tiny_model}", "--enable_op_profiling=true", *SHORT_RUN)
    assert rc == 0, err
    assert "INFO: Enable op profiling: [1]" in out
    init_at = out.index("INFO: Profiling Info for Benchmark Initialization:")
    runs_at = out.index("INFO: Operator-wise Profiling Info for Regular Benchmark Runs:")
    assert out.index("Memory footprint delta") < init_at < runs_at
    runs = out[runs_at:]
    run_order = runs.split("============================== Run Order ==============================\n")[1]
    run_order = run_order.split("\n\n")[0].splitlines()
    assert run_order[0].split("\t")[1:] == ["             [node type]", "  [first]", " [avg ms]",
                                            "     [%]", "  [cdf%]", "  [mem KB]", "[times called]", "[Name]"]
    rows = [row.split("\t") for row in run_order[1:]]
    assert len(rows) == model_op_count
    assert all(len(row) == 9 for row in rows)
    assert [row[8].rsplit(":", 1)[1] for row in rows] == [str(i) for i in range(model_op_count)]
    assert {row[1].strip() for row in rows} >= {"CONV_2D", "SOFTMAX"}
    assert rows[-1][5].strip() == "100.000%"
    assert f"Number of nodes executed: {model_op_count}" in runs
    assert f"\n{model_op_count} nodes observed\n" in runs
    assert re.search(r"^Timings \(microseconds\): count=\d+ first=\d+ ", runs, re.M)
    assert "Top by Computation Time" in runs and "Summary by node type" in runs


def test_result_file_is_written(tiny_model, tmp_path):
    result = tmp_path / "result.pb"
    rc, out, err = run_tool(f"--graph={tiny_model}", f"--result_file_path={result}", *SHORT_RUN)
    assert rc == 0, err
    assert f"INFO: Saved benchmark result to: {result}" in out
    assert result.stat().st_size > 40


@pytest.mark.parametrize("values, text", [
    ([905463], "count=1 curr=905463 p5=905463 median=905463 p95=905463"),
    ([7, 7, 7], "count=3 curr=7(all same) p5=7 median=7 p95=7"),
    ([3000000, 2900000, 2951020], "count=3 first=3000000 curr=2951020 min=2900000 max=3000000 "
                                  "avg=2.95034e+06 std=40827 p5=2900000 median=2951020 p95=3000000"),
    ([10, 20], "count=2 first=10 curr=20 min=10 max=20 avg=15 std=5 p5=10 median=20 p95=20"),
])
def test_stats_line_matches_tensorflow_formatting(values, text):
    stat = StatWithPercentiles()
    for value in values:
        stat.update(value)
    assert stat.text() == text


def test_flag_parsing_rules():
    parsed = parse_flags(["bm", "--num_runs=7", "--use_gpu=1", "--min_secs=0.25", "--num_runs=9", "--x"])
    assert parsed.errors == []
    assert parsed.params["num_runs"] == 7 and parsed.params["use_gpu"] is True
    assert parsed.params["min_secs"] == 0.25
    assert parsed.unconsumed == ["--num_runs=9", "--x"]
    assert parse_flags(["bm", "--use_gpu=yes"]).errors == ["Failed to parse flag 'use_gpu' against argv '--use_gpu=yes'"]


# -- real inputs in, outputs out (--input_layer_value_files, --output_filepath) -------------------
# What the real tool does, and the messages asserted below, come from LiteRT's source at
# f67457790c9c (2026-08-21): tflite/tools/benchmark/benchmark_tflite_model.cc
# (PopulateInputLayerInfo, SplitInputLayerNameAndValueFile and its cases in benchmark_test.cc,
# LoadInputTensorData, OutputSaver), tflite/tools/logging.h (FATAL: abort()),
# tflite/tools/delegates/xnnpack_delegate_provider.cc and tflite/tools/evaluation/utils.cc
# (xnnpack_force_fp16 -> TFLITE_XNNPACK_DELEGATE_FLAG_FORCE_FP16, "XNNPack FP16 inference
# enabled."), core/interpreter_experimental.cc and nnapi_delegate.cc (allow_fp16 reaches NNAPI only).
ONE_RUN = ["--num_runs=1", "--warmup_runs=0", "--min_secs=0", "--warmup_min_secs=0"]


def _io(tiny_model):
    """The model's input name and shape, a real input and the host LiteRT run's outputs."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tiny_model))
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    x = np.random.default_rng(3).uniform(-1, 1, size=detail["shape"]).astype(np.float32)
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    outputs = [interpreter.get_tensor(o["index"]) for o in interpreter.get_output_details()]
    return detail["name"], ",".join(str(d) for d in detail["shape"]), x, outputs


def test_value_files_feed_the_model_and_its_outputs_are_written(tiny_model, tmp_path):
    import numpy as np

    name, shape, x, host = _io(tiny_model)
    x.tofile(tmp_path / "in.bin")
    # A name or path holding ':' is written with '::' (SplitInputLayerNameAndValueFile).
    weird = tmp_path / "a:b"
    weird.mkdir()
    x.tofile(weird / "in.bin")
    for value_file in (f"{name}:{tmp_path}/in.bin", f"{name}:{tmp_path}/a::b/in.bin"):
        out = tmp_path / "out.bin"
        out.unlink(missing_ok=True)
        rc, stdout, err = run_tool(f"--graph={tiny_model}", *ONE_RUN, f"--input_layer={name}",
                                   f"--input_layer_shape={shape}",
                                   f"--input_layer_value_files={value_file}",
                                   f"--output_filepath={out}")
        assert rc == 0, err
        assert f"INFO: Input value files: [{value_file}]" in stdout
        assert f"INFO: File path to export outputs layer to: [{out}]" in stdout
        # Raw bytes of every output in the interpreter's order, no header: the host's exactly.
        assert out.read_bytes() == b"".join(np.asarray(o).tobytes() for o in host)


def test_a_value_file_of_the_wrong_size_is_fatal(tiny_model, tmp_path):
    name, shape, x, _ = _io(tiny_model)
    x.reshape(-1)[:10].tofile(tmp_path / "short.bin")
    rc, out, err = run_tool(f"--graph={tiny_model}", *ONE_RUN, f"--input_layer={name}",
                            f"--input_layer_shape={shape}",
                            f"--input_layer_value_files={name}:{tmp_path}/short.bin")
    assert rc == -6  # TFLITE_LOG(FATAL): abort(), which a device shell reports as exit 134
    assert (f"FATAL: The size of {tmp_path}/short.bin is 40 bytes. It should be {x.nbytes} "
            "bytes.") in err
    assert "Benchmarking failed." not in err  # abort() leaves no status to report
    rc, out, err = run_tool(f"--graph={tiny_model}", *ONE_RUN, f"--input_layer={name}",
                            f"--input_layer_shape={shape}",
                            f"--input_layer_value_files={name}:{tmp_path}/none.bin")
    assert rc == -6 and f"FATAL: Failed to read the input_layer_value_file:{tmp_path}/none.bin" in err


def test_value_file_names_must_be_input_layers(tiny_model, tmp_path):
    name, shape, x, _ = _io(tiny_model)
    x.tofile(tmp_path / "in.bin")
    rc, out, err = run_tool(f"--graph={tiny_model}", *ONE_RUN, f"--input_layer={name}",
                            f"--input_layer_shape={shape}",
                            f"--input_layer_value_files=other:{tmp_path}/in.bin")
    assert rc == -6
    assert f"FATAL: Cannot find the corresponding input_layer name(other) in --input_layer as {name}" in err
    rc, out, err = run_tool(f"--graph={tiny_model}", *ONE_RUN, f"--input_layer={name}",
                            f"--input_layer_shape={shape}",
                            f"--input_layer_value_files={name}:x:{tmp_path}/in.bin")
    assert rc == 1
    assert f"ERROR: {name}:x:{tmp_path}/in.bin contains more than one delimiter." in err
    assert "ERROR: Benchmarking failed." in err
    # Parsed before anything else: no model is loaded for it.
    assert "Loaded model" not in out


def test_xnnpack_force_fp16_changes_the_numbers_allow_fp16_does_not(tiny_model, tmp_path):
    import numpy as np

    name, shape, x, host = _io(tiny_model)
    x.tofile(tmp_path / "in.bin")
    feed = [f"--input_layer={name}", f"--input_layer_shape={shape}",
            f"--input_layer_value_files={name}:{tmp_path}/in.bin"]
    results = {}
    for label, flags in (("fp16", ["--use_xnnpack=true", "--xnnpack_force_fp16=true"]),
                         ("allow", ["--allow_fp16=true"])):
        out = tmp_path / f"{label}.bin"
        rc, stdout, err = run_tool(f"--graph={tiny_model}", *ONE_RUN, *feed, *flags,
                                   f"--output_filepath={out}")
        assert rc == 0, err
        assert ".cc:" not in stdout + err  # the CompiledModel runtime's own log stays out
        results[label] = (np.frombuffer(out.read_bytes(), dtype=np.float32), stdout)
    reference = np.asarray(host[0], dtype=np.float32).reshape(-1)
    fp16, stdout = results["fp16"]
    assert "INFO: XNNPack FP16 inference enabled." in stdout
    difference = float(np.max(np.abs(fp16 - reference)))
    assert 0 < difference < 1e-2 * float(np.max(np.abs(reference)))  # fp16 for real, and close
    # --allow_fp16 reaches only NNAPI (the interpreter's fp32->fp16 relaxation): on the CPU the
    # numbers stay fp32's, as on a phone.
    assert np.array_equal(results["allow"][0], reference)
