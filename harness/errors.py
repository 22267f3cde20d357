"""The one error hierarchy of bench. Only ``harness.cli`` turns these into messages and exit codes.

Bad input has two classes because the dependency between the packages goes one way: `harness`
imports `models`, `models` imports nothing of `harness`. So `models` raises its own
`models.errors.ModelInputError` (a bad model name/file, weights or data), harness code raises
`UserError`, and `BAD_INPUT` below is the one place that says both mean "bad input: one line,
exit 2". Catch `BAD_INPUT`, not `UserError`, wherever model or data loading can be underneath.
"""

from models.errors import ModelInputError


class BenchError(Exception):
    """Base of every error bench raises on purpose."""


class UserError(BenchError):
    """Bad input (flag, file, config): one line naming the input and the fix; exit 2."""


class StorageError(BenchError):
    """The results store or the reports dir could not be written (disk full, read-only, I/O
    error): one line naming the path, what was kept and how to finish; exit 1."""


class DeviceError(BenchError):
    """The device or its link failed (not found, offline, push failed): retried, then recorded."""


class BenchmarkError(BenchError):
    """benchmark_model itself failed (crash, error exit, timeout): recorded with the output tail."""

    def __init__(self, message: str, output_tail: str = "", exit_status: int | None = None):
        super().__init__(message)
        self.output_tail = output_tail
        self.exit_status = exit_status


# Every error that means "the user gave bad input" (see the module docstring): for `except`.
BAD_INPUT: tuple[type[Exception], ...] = (UserError, ModelInputError)
