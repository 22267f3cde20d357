"""The tool's two loggers, as in the real binary.

- Tool lines (`tflite/tools/logging.h`): `INFO: ` / `WARN: ` go to stdout, `ERROR: ` to stderr.
- TFLite core ("runtime") lines (`minimal_logging_default.cc`): every severity goes to stderr
  (`INFO: Initialized TensorFlow Lite runtime.`, `VERBOSE: Replacing ...`, `ERROR: Node number ...`).
Every line is flushed at once: the virtual device streams it over adb while the run goes on.
"""
import os
import sys


def _write(stream, text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


def info(message: str) -> None:
    _write(sys.stdout, f"INFO: {message}")


def warn(message: str) -> None:
    _write(sys.stdout, f"WARN: {message}")


def error(message: str) -> None:
    # Keep stdout ordered before the error when both streams end up in one pipe.
    sys.stdout.flush()
    _write(sys.stderr, f"ERROR: {message}")


def fatal(message: str) -> None:
    """TFLITE_LOG(FATAL) / TFLITE_TOOLS_CHECK: `FATAL: ` on stderr, then std::abort() (SIGABRT,
    which a shell reports as exit 134); no `Benchmarking failed.` follows."""
    sys.stdout.flush()
    _write(sys.stderr, f"FATAL: {message}")
    os.abort()


def runtime(severity: str, message: str) -> None:
    """A line from the TFLite core logger (severity INFO, VERBOSE, WARNING or ERROR)."""
    sys.stdout.flush()
    _write(sys.stderr, f"{severity}: {message}")


def raw_stderr(text: str) -> None:
    """Text the native library printed itself (already formatted, maybe several lines)."""
    if not text:
        return
    sys.stdout.flush()
    sys.stderr.write(text if text.endswith("\n") else text + "\n")
    sys.stderr.flush()
