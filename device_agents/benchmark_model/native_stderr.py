"""Capturing what the native LiteRT library writes to file descriptor 2.

The runtime logs its own lines (`INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`, errors
from kernels' Prepare) straight to fd 2. The tool captures them around each native call and
re-emits them in order with its own lines, so a reader sees the same sequence as on a phone.
"""
import os
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Captured:
    text: str = ""
    lines: list[str] = field(default_factory=list)


@contextmanager
def capture_native_stderr():
    captured = Captured()
    sys.stderr.flush()
    saved_fd = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            _flush_c_streams()  # what the library buffered belongs to the capture too
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", "replace")
            captured.lines = [line for line in captured.text.splitlines() if line.strip()]


def _flush_c_streams() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass
