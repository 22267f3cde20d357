"""Issue 9, point 6: bad input is one line and exit 2, and nothing is half-made.

Command-line numbers (inf, nan, overflow), tag names, `bench parse` on huge or endless input
with bounded memory, and a .tflite that loads but cannot allocate its tensors, run on a real
virtual lab. Nothing is mocked."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.benchmark import LogLimits, parse_log, parse_log_file
from harness.errors import UserError
from harness.results.store import Store

SAMPLES_DIR = Path(__file__).parent / "data" / "benchmark_samples"
# `bench parse` of any input must stay about this small (the interpreter and imports are ~40 MB).
MAX_PARSE_RSS_BYTES = 100 * 2**20


def bench_in_process(monkeypatch, capsys, *args: str) -> tuple[int, list[str]]:
    """bench's real main() with `args`, in this process: exit code and stderr lines."""
    from harness.cli import main

    monkeypatch.setattr(sys, "argv", ["bench", *args])
    with pytest.raises(SystemExit) as info:
        main()
    return info.value.code, capsys.readouterr().err.splitlines()


# -- command-line numbers -----------------------------------------------------------------------
@pytest.mark.parametrize("args, line", [
    (("run", "--min-secs", "inf"), "error: --min-secs inf: must be a finite number >= 0"),
    (("run", "--max-secs", "nan"), "error: --max-secs nan: must be a finite number > 0"),
    (("run", "--max-secs", "1e999"), "error: --max-secs 1e999: must be a finite number > 0"),
    (("run", "--num-runs", "2147483648"), "error: --num-runs 2147483648: must be an integer >= 1"),
    (("run", "--warmup-runs", "-1"), "error: --warmup-runs -1: must be an integer >= 0"),
    (("run", "--trials", "1e3"), "error: --trials 1e3: must be an integer >= 1"),
    (("run", "--threads", "2", "--threads", "0"), "error: --threads 0: must be an integer >= 1"),
    (("run", "--devices", ""), 'error: --devices "": must be a non-empty string'),
    (("run", "--confirm-trials", "99999999999999999999"), "error: --confirm-trials 9999"),
    (("optimize", "digits_cnn", "--seed", "-1"), "error: --seed -1: must be an integer >= 0"),
    (("analyze", "digits_cnn", "--ratio", "nan"), "error: --ratio nan: must be a finite number"),
    (("compare", "a", "b", "--threshold", "inf"), "error: --threshold inf: must be a finite"),
    (("compare", "a", "b", "--threshold", "*gpu*=nan"), "error: --threshold *gpu*=nan: must be"),
    (("lab", "up", "--virtual", "1e9"), "error: --virtual 1e9: must be an integer >= 1"),
    (("lab", "fault", "x", "temperature_c=inf"), "error: fault value inf: must be a finite number"),
    (("run", "--no-such-flag"), "error: No such option"),
])
def test_bad_numbers_are_refused_in_one_line_with_exit_2(monkeypatch, capsys, tmp_path, args, line):
    monkeypatch.chdir(tmp_path)
    code, lines = bench_in_process(monkeypatch, capsys, *args)
    assert code == 2 and len(lines) == 1 and lines[0].startswith(line), lines
    assert not (tmp_path / "reports").exists()


def test_a_bad_number_through_the_real_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--min-secs", "-inf"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["error: --min-secs -inf: must be a finite number >= 0"]


# -- tag names ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["", "a b", "tag:x", "a,b", "_lead", ".hidden", "x" * 65,
                                  "new\nline", "ümlaut", "a/b", "$(x)"])
def test_tag_names_outside_the_safe_set_are_refused(monkeypatch, capsys, tmp_path, name):
    db = tmp_path / "bench.db"
    store = Store(db)
    store.start_run("20260101-000000-abcd", "2026-01-01T00:00:00.000+00:00", "0.1", "h", {})
    store.close()
    code, lines = bench_in_process(monkeypatch, capsys, "tag", "20260101-000000-abcd", name,
                                   "--store", str(db))
    assert code == 2 and len(lines) == 1 and "letters, digits" in lines[0], lines
    assert Store(db).tags_by_run() == {}


def test_a_safe_tag_name_is_stored(monkeypatch, capsys, tmp_path):
    db = tmp_path / "bench.db"
    store = Store(db)
    store.start_run("20260101-000000-abcd", "2026-01-01T00:00:00.000+00:00", "0.1", "h", {})
    store.close()
    monkeypatch.setattr(sys, "argv", ["bench", "tag", "20260101-000000-abcd", "Release_1.4-rc2",
                                      "--store", str(db)])
    from harness.cli import main

    main()  # returns: exit 0
    assert capsys.readouterr().err == ""
    assert Store(db).tags_by_run() == {"20260101-000000-abcd": ["Release_1.4-rc2"]}


# -- bench parse: a stream with bounded memory ----------------------------------------------------
# Runs `bench parse` as its only child and prints the child's peak RSS. Linux counts the RSS of
# the process that spawned a child into the child's peak (fork/vfork, then exec): spawned from
# this test process (torch and all loaded), bench would seem as big as pytest.
_PEAK_RSS_OF_CHILD = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(code)\n")


def parse_with_peak_rss(args: list[str], stdin=None) -> tuple[int, list[str], int]:
    """`bench parse ARGS` as a child: exit code, stderr lines and its peak RSS in bytes."""
    proc = subprocess.run([sys.executable, "-c", _PEAK_RSS_OF_CHILD,
                           sys.executable, "-m", "harness", "parse", *args],
                          stdin=stdin, capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stderr.splitlines(), int(proc.stdout) * 1024


def test_parse_of_dev_zero_stops_at_the_line_limit_in_bounded_memory():
    code, lines, rss = parse_with_peak_rss(["/dev/zero"])
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: /dev/zero: line 1 is longer than 1 MiB")
    assert rss < MAX_PARSE_RSS_BYTES


def test_parse_of_a_1_gib_file_is_refused_by_its_size(tmp_path):
    sparse = tmp_path / "huge.log"
    with open(sparse, "wb") as f:  # sparse: a 1 GiB file that takes no disk
        f.truncate(2**30)
    code, lines, rss = parse_with_peak_rss([str(sparse)])
    assert code == 2 and len(lines) == 1 and "1.0 GiB, over bench parse's limit" in lines[0]
    assert rss < MAX_PARSE_RSS_BYTES


def test_parse_of_a_1_gib_stream_stops_at_the_size_limit_in_bounded_memory():
    # 1 GiB of (blank) 1 MiB lines through a pipe: no size to check up front, so the parser
    # reads line by line and stops at its limit.
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys\nline = b' ' * (2**20 - 1) + b'\\n'\ntry:\n"
         "    for _ in range(1024): sys.stdout.buffer.write(line)\n"
         "except BrokenPipeError:\n    pass\n"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        code, lines, rss = parse_with_peak_rss(["/dev/stdin"], stdin=writer.stdout)
    finally:
        writer.stdout.close()
        writer.wait(timeout=120)
    assert code == 2 and len(lines) == 1, lines
    assert "more than 256 MiB of text, over bench parse's limit" in lines[0]
    assert rss < MAX_PARSE_RSS_BYTES


@pytest.mark.parametrize("text, limits, words", [
    ("INFO: STARTING!\n" * 6, LogLimits(max_runs=5), "more than 5 benchmark runs"),
    ("Operator-wise Profiling Info for Regular Benchmark Runs:\n"
     "============================== Run Order ==============================\n"
     + "CONV_2D\t0.1\t0.2\t1.0%\t1.0%\t0\t1\t[op]\n" * 11, LogLimits(max_rows=10),
     "more than 10 op profiling rows"),
    ("INFO: STARTING!\n" * 100, LogLimits(max_bytes=1000),
     "1,600 bytes, over bench parse's limit of 1,000 bytes"),
])
def test_what_the_parser_keeps_is_bounded(tmp_path, text, limits, words):
    log = tmp_path / "x.log"
    log.write_text(text)
    with pytest.raises(UserError, match=words):
        parse_log_file(log, limits)
    parse_log_file(log)  # within the default limits


def test_streamed_parse_equals_parsing_the_whole_text(tmp_path):
    for sample in sorted(SAMPLES_DIR.glob("*.txt")):
        text = sample.read_text().split("\n", 1)[1]
        # CRLF and lone-CR line ends, as pasted from other systems, split the same way too.
        for variant in (text, text.replace("\n", "\r\n"), text.replace("\n", "\r")):
            log = tmp_path / "x.log"
            log.write_bytes(variant.encode())
            assert parse_log_file(log) == parse_log(variant), sample.name


# -- a .tflite that loads but cannot allocate its tensors ---------------------------------------
def unallocatable_tflite(path: Path) -> Path:
    """A real LiteRT flatbuffer: image (1,8,8,3) -> FULLY_CONNECTED -> scores (1,4), whose weight
    matrix is 4 x 191 where the 192 input values need 4 x 192. The interpreter loads it; its
    AllocateTensors (the op's Prepare) fails."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    def tensor(name, shape, buffer):
        t = schema.TensorT()
        t.name, t.shape, t.type, t.buffer = name, list(shape), schema.TensorType.FLOAT32, buffer
        return t

    model = schema.ModelT()
    model.version = 3
    weights = schema.BufferT()
    weights.data = list(np.full((4, 191), 0.01, np.float32).tobytes())
    model.buffers = [schema.BufferT(), schema.BufferT(), weights, schema.BufferT()]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.FULLY_CONNECTED
    code.version = 1
    model.operatorCodes = [code]
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, -1], [2]
    op.builtinOptionsType = schema.BuiltinOptions.FullyConnectedOptions
    op.builtinOptions = schema.FullyConnectedOptionsT()
    graph = schema.SubGraphT()
    graph.tensors = [tensor("image", (1, 8, 8, 3), 1), tensor("w", (4, 191), 2),
                     tensor("scores", (1, 4), 3)]
    graph.inputs, graph.outputs, graph.operators = [0], [2], [op]
    model.subgraphs = [graph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))
    return path


def test_the_model_loads_but_fails_at_allocation(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(unallocatable_tflite(tmp_path / "m.tflite")))
    assert list(interpreter.get_input_details()[0]["shape"]) == [1, 8, 8, 3]
    with pytest.raises(RuntimeError):
        interpreter.allocate_tensors()


@pytest.fixture(scope="module")
def lab():
    from harness.targets.adb.virtual_lab import lab_down, lab_up

    state = lab_up(1)
    yield state
    lab_down()


@pytest.mark.slow
def test_allocation_failure_is_a_recorded_benchmark_failure_not_an_internal_error(
        lab, tmp_path, monkeypatch, capsys):
    """Through bench's real main() (in this process, to spare a second interpreter start)."""
    from harness.cli import main

    model = unallocatable_tflite(tmp_path / "shape_mismatch.tflite")
    db = tmp_path / "bench.db"
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [
        "bench", "run", "--devices", lab.devices[0].serial, "--model", str(model),
        "--no-peak-memory", "--num-runs", "2", "--warmup-runs", "1", "--min-secs", "0",
        "--max-secs", "20", "--store", str(db), "--reports-dir", str(tmp_path / "reports")])
    with pytest.raises(SystemExit) as info:
        main()
    out, err = capsys.readouterr()
    assert info.value.code == 1, err[-3000:]  # a failed launch, not bad input nor a bug
    assert "internal error" not in err and "Traceback" not in err
    store = Store(db)
    (run,) = store.runs()
    assert run["status"] == "failed"
    (m,) = store.measurements(run["run_id"])
    assert (m.status, m.failure_kind) == ("failed", "benchmark")
    assert m.error.endswith(": Failed to allocate tensors!")  # benchmark_model's own words
    assert "Failed to allocate tensors!" in m.output_tail
    (artifact,) = store.artifacts([m.artifact_sha256])
    assert "cannot allocate the tensors" in artifact["metadata"]["accuracy"]["error"]
    assert "Failed to allocate tensors!" in out  # the run's summary names the failure


# -- a lab of many hosts ------------------------------------------------------------------------
@pytest.mark.parametrize("address, line", [
    ("nohostport", "error: --cluster nohostport: give the head's HOST:PORT"),
    ("127.0.0.1:{free}", "error: --cluster 127.0.0.1:{free}: nothing answers there"),
])
def test_a_cluster_that_is_not_there_is_one_line_and_leaves_nothing(monkeypatch, capsys,
                                                                    tmp_path, address, line):
    pytest.importorskip("ray")
    from tests.virtual_lab_fixtures import free_port

    free = free_port()  # nothing listens on it
    monkeypatch.chdir(tmp_path)
    code, lines = bench_in_process(monkeypatch, capsys, "run", "--cluster",
                                   address.format(free=free), "--variant", "baseline")
    assert code == 2 and len(lines) == 1 and lines[0].startswith(line.format(free=free)), lines
    assert list(tmp_path.iterdir()) == []


def test_lab_join_names_a_bad_address_or_name_in_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, lines = bench_in_process(monkeypatch, capsys, "lab", "join", "--address", "head")
    assert code == 2 and lines == ["error: --address head: give the head's HOST:PORT (as `ray "
                                   "start --head --port PORT` printed), e.g. 10.0.0.5:6379"]
    code, lines = bench_in_process(monkeypatch, capsys, "lab", "join", "--address", "h:1",
                                   "--name", "a b")
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: --name 'a b'"), lines
