"""The run's own log file, `reports/<run-id>/bench.log`, and a terminal free of other people's noise.

torch, TensorFlow/LiteRT (absl, oneDNN), the converter and the quantizer write to file
descriptors 1 and 2 from C++ and Python alike. Within `run_output`, both descriptors point at
the log file, so all of that lands there, while bench speaks to the terminal through a copy of
the original stderr (the reporter) and prints its tables after the block. With `verbose`,
nothing is redirected: the third-party output shows on the terminal as it comes, and the log
file keeps bench's own lines.

The file is written under a hidden temporary name in the reports dir and becomes
`<run-id>/bench.log` once the run has its id; a run refused before that (bad input) leaves
nothing behind, and any other failure keeps its log for the error message to point at.
"""
from __future__ import annotations

import ctypes
import os
import sys
import tempfile
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator, TextIO

from harness.errors import BAD_INPUT, UserError
from harness.progress import PlainReporter, Reporter, RichReporter

LOG_NAME = "bench.log"


class RunOutput:
    """The reporter bench speaks through, and where its log file ends up."""

    def __init__(self, reporter: Reporter, reports_dir: Path):
        self.reporter, self.reports_dir = reporter, reports_dir
        self.log_path: Path | None = None  # where the log is once the block has ended

    def final_path(self, failed: bool) -> Path | None:
        if self.reporter.run_id:
            return self.reports_dir / self.reporter.run_id / LOG_NAME
        if failed:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            return self.reports_dir / f"failed-{stamp}-{os.getpid()}.log"
        return None


@contextmanager
def run_output(reports_dir: Path, *, verbose: bool = False, quiet: bool = False,
               terminal: TextIO | None = None) -> Iterator[RunOutput]:
    """Within the block, fds 1 and 2 write to the run's log (unless `verbose`); the reporter
    writes to the terminal (a live view on a tty, plain lines otherwise; nothing if `quiet`)."""
    reports_dir = Path(reports_dir)
    made_dir = not reports_dir.exists()  # removed again if the block leaves nothing in it
    try:
        reports_dir.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=".bench-", suffix=".log", dir=reports_dir)
    except OSError as exc:
        raise UserError(f"--reports-dir {reports_dir}: cannot write there "
                        f"({exc.strerror or exc}); give a writable directory") from None
    os.close(fd)
    temp_path = Path(temp_name)
    log_file = open(temp_path, "a", encoding="utf-8", errors="replace")
    saved = {} if verbose else _redirect_std_fds(temp_path)
    own_terminal = terminal is None and bool(saved)
    terminal = terminal or _terminal(saved)
    reporter = _reporter(terminal, log_file, verbose=verbose, quiet=quiet)
    out = RunOutput(reporter, reports_dir)
    try:
        if isinstance(reporter, RichReporter):
            with reporter:
                yield out
        else:
            yield out
    except BAD_INPUT:  # bad input, a model's too: kept only when the run had begun (in the store)
        out.log_path = out.final_path(failed=False)
        raise
    except BaseException as exc:
        out.log_path = out.final_path(failed=True)
        exc.bench_log = out.log_path  # the CLI's one-line error points at it
        raise
    else:
        out.log_path = out.final_path(failed=False)
    finally:
        _restore_std_fds(saved)
        if own_terminal:
            terminal.close()
        log_file.close()
        _place_log(temp_path, out.log_path)
        if made_dir and out.log_path is None:
            try:
                reports_dir.rmdir()  # only if empty: whatever else came there stays
            except OSError:
                pass


def _reporter(terminal: TextIO, log_file: TextIO, *, verbose: bool, quiet: bool) -> Reporter:
    if quiet:
        return Reporter(lambda _m: None, log_file)
    if terminal.isatty() and not verbose and os.environ.get("TERM") != "dumb":
        return RichReporter(terminal, log_file)
    return PlainReporter(terminal, log_file)


def _terminal(saved: dict) -> TextIO:
    """Bench's own voice: the stderr the process started with."""
    if 2 not in saved:
        return sys.stderr
    return os.fdopen(os.dup(saved[2]), "w", buffering=1, encoding="utf-8", errors="replace")


def _redirect_std_fds(path: Path) -> dict:
    """Point fds 1 and 2 at `path` (appending), and sys.stdout/sys.stderr too (they need not
    be on those fds: a test runner's capture, a wrapper); returns what to put back."""
    _flush_all()
    target = os.open(path, os.O_WRONLY | os.O_APPEND)
    saved: dict = {}
    try:
        for fd in (1, 2):
            saved[fd] = os.dup(fd)
            os.dup2(target, fd)
    finally:
        os.close(target)
    saved["streams"] = (sys.stdout, sys.stderr)
    log_stream = open(path, "a", buffering=1, encoding="utf-8", errors="replace")
    sys.stdout = sys.stderr = log_stream
    return saved


def _restore_std_fds(saved: dict) -> None:
    if not saved:
        return
    _flush_all()
    log_stream = sys.stderr
    sys.stdout, sys.stderr = saved.pop("streams")
    if log_stream not in (sys.stdout, sys.stderr):
        log_stream.close()
    for fd, original in saved.items():
        os.dup2(original, fd)
        os.close(original)


def _flush_all() -> None:
    """Python's and C's buffered output goes where it was written for, before fds move."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


def _place_log(temp_path: Path, final: Path | None) -> None:
    try:
        if final is None:
            temp_path.unlink(missing_ok=True)
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp_path, final)
    except OSError:
        pass  # a log that cannot be kept must not hide the run's own outcome
