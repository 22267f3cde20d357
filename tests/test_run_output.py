"""The run's own log file and what reaches the terminal (harness.run_log, harness.progress)."""
from __future__ import annotations

import io
import os
import sys
import warnings

import pytest

from harness.errors import DeviceError, UserError
from harness.progress import PlainReporter, Reporter, as_reporter
from harness.run_log import LOG_NAME, run_output
from models.errors import ModelInputError


def _third_party_noise() -> None:
    """What torch, absl and the quantizer do: C-level writes to fds 1 and 2, Python writes to
    sys.stderr, a warning."""
    os.write(2, b"I0000 00:00:1796200911.475396 port.cc:153] oneDNN custom operations are on.\n")
    os.write(1, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
    print("fine-tune:  40%|####      | 4/10", file=sys.stderr)
    warnings.warn("Calling register_constant() on Enum subclasses is deprecated")


def test_third_party_output_goes_to_the_runs_log_and_bench_to_the_terminal(tmp_path, capfd):
    terminal = io.StringIO()
    with run_output(tmp_path, terminal=terminal) as out:
        out.reporter("devices: VIRT0001")
        _third_party_noise()
        out.reporter.run_started("run-1")
        with out.reporter.task("VIRT0001", total=2, unit="launches") as task:
            task.advance(note="baseline timing #0: 0.033 ms avg")
    shown = terminal.getvalue()
    assert "devices: VIRT0001" in shown and "0.033 ms avg (1/2 launches" in shown
    assert "oneDNN" not in shown and "XNNPACK" not in shown and "register_constant" not in shown
    captured = capfd.readouterr()  # nothing leaked past the redirection either
    assert "oneDNN" not in captured.err + captured.out and "40%" not in captured.err
    log = (tmp_path / "run-1" / LOG_NAME).read_text()
    for text in ("oneDNN custom operations", "XNNPACK delegate", "4/10",
                 "bench: devices: VIRT0001", "bench: VIRT0001: baseline timing #0"):
        assert text in log
    assert out.log_path == tmp_path / "run-1" / LOG_NAME
    assert [p.name for p in tmp_path.iterdir()] == ["run-1"]  # no temporary file left
    os.write(2, b"after the block\n")  # the fds are back
    assert "after the block" in capfd.readouterr().err


def test_verbose_leaves_third_party_output_on_the_terminal(tmp_path, capfd):
    terminal = io.StringIO()
    with run_output(tmp_path, verbose=True, terminal=terminal) as out:
        out.reporter.run_started("run-2")
        os.write(2, b"oneDNN custom operations are on\n")
        out.reporter("bench line")
    assert "oneDNN" in capfd.readouterr().err and "bench line" in terminal.getvalue()
    assert "bench: bench line" in (tmp_path / "run-2" / LOG_NAME).read_text()


def test_bad_input_leaves_nothing_and_a_failure_keeps_its_log(tmp_path):
    with pytest.raises(UserError):
        with run_output(tmp_path / "reports", terminal=io.StringIO()):
            os.write(2, b"noise\n")
            raise UserError("--model nope: unknown")
    assert list(tmp_path.iterdir()) == []  # not even the reports dir it made
    with pytest.raises(DeviceError) as failed:
        with run_output(tmp_path, terminal=io.StringIO()):
            os.write(2, b"converter said why\n")
            raise DeviceError("device VIRT0001 not found")
    [kept] = tmp_path.iterdir()
    assert failed.value.bench_log == kept and "converter said why" in kept.read_text()


def test_a_bad_model_is_bad_input_too_and_leaves_nothing(tmp_path):
    # models raises its own error class (it imports nothing of harness); harness.errors.BAD_INPUT
    # makes it bad input here as well.
    with pytest.raises(ModelInputError):
        with run_output(tmp_path / "reports", terminal=io.StringIO()):
            raise ModelInputError("unknown model 'nope'")
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_reports_dir_is_bad_input(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="--reports-dir .*file/reports.*writable"):
        with run_output(tmp_path / "file" / "reports", terminal=io.StringIO()):
            pass


def test_reporters_count_and_the_library_default_takes_any_callable():
    lines = []
    reporter = as_reporter(lines.append)
    with reporter.task("fine-tuning", total=3, unit="epochs") as task:
        task.advance(note="epoch 1/3: val top-1 97.5%")
    assert lines == ["fine-tuning: epoch 1/3: val top-1 97.5%"]
    assert as_reporter(reporter) is reporter and isinstance(as_reporter(None), Reporter)
    stream = io.StringIO()
    plain = PlainReporter(stream)
    with plain.task("push VIRT0001", total=4_000_000, unit="bytes") as push:
        push.update(2_000_000)
        push.note("model.tflite")
    assert "push VIRT0001: model.tflite (2.0/4.0 MB, ETA 0:0" in stream.getvalue()
