"""The one error hierarchy of bench. Only ``harness.cli`` turns these into messages and exit codes."""


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
