"""What bench tells the user while it works: lines, and tasks with progress (done/total, ETA).

The library reports through a `Reporter`: `log("...")` for a line, `log.task(...)` for anything
long (building a variant, fine-tuning epochs, pushes in bytes, launches per device). Which view
the user gets is the CLI's choice:

- `Reporter`: the library's default; lines (and task notes, as lines) go to one callable, so any
  `log=print` or `log=lines.append` keeps working;
- `PlainReporter`: a line per event with `done/total` and an ETA, for logs and pipes (CI);
- `RichReporter`: live bars on a terminal (rich), lines printed above them.

Every reporter may also copy each line, with a time stamp, into the run's log file.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Callable, TextIO

Line = Callable[[str], None]


class Task:
    """One long piece of work. `note` says what just happened (an epoch's accuracy, a launch's
    latency); `advance` counts toward `total` (None: no known end)."""

    def __init__(self, reporter: "Reporter", description: str, total: float | None, unit: str):
        self.reporter, self.description, self.total, self.unit = reporter, description, total, unit
        self.done = 0.0
        self.started = time.monotonic()
        self.finished = False

    def advance(self, steps: float = 1, note: str | None = None) -> None:
        self.done += steps
        if note is not None:
            self.note(note)
        self.reporter._task_changed(self)

    def update(self, done: float) -> None:
        """Set the count (e.g. bytes sent so far) without a note."""
        self.done = done
        self.reporter._task_changed(self)

    def note(self, text: str) -> None:
        self.reporter._task_note(self, text)

    def finish(self, note: str | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        self.reporter._task_finished(self, note)

    def __enter__(self) -> "Task":
        return self

    def __exit__(self, *_exc) -> None:
        self.finish()

    # -- what views show ---------------------------------------------------------------------
    def count_text(self) -> str:
        if self.total is None:
            return ""
        if self.unit == "bytes":
            return f"{self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB"
        return f"{self.done:g}/{self.total:g}" + (f" {self.unit}" if self.unit else "")

    def eta_s(self) -> float | None:
        """Seconds left at the pace so far (None before the first step or without a total)."""
        if self.total is None or self.done <= 0:
            return None
        elapsed = time.monotonic() - self.started
        return max(0.0, elapsed / self.done * (self.total - self.done))

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


class Reporter:
    """Lines to one callable; a task's notes become lines (`<task> <note>`), nothing else."""

    def __init__(self, line: Line = lambda _m: None, log_file: TextIO | None = None):
        self._line = line
        self._log_file = log_file
        self._lock = threading.Lock()
        self.run_id: str | None = None

    def __call__(self, message: str) -> None:
        self.line(message)

    def line(self, message: str) -> None:
        self._to_log_file(message)
        self._show_line(message)

    def task(self, description: str, total: float | None = None, unit: str = "") -> Task:
        return Task(self, description, total, unit)

    def run_started(self, run_id: str) -> None:
        """The run has its id (where its log and report go)."""
        self.run_id = run_id

    # -- hooks the views override ------------------------------------------------------------
    def _show_line(self, message: str) -> None:
        self._line(message)

    def _task_note(self, task: Task, text: str) -> None:
        self.line(f"{task.description}: {text}")

    def _task_changed(self, task: Task) -> None:
        pass

    def _task_finished(self, task: Task, note: str | None) -> None:
        if note:
            self._task_note(task, note)

    def _to_log_file(self, message: str) -> None:
        if self._log_file is None:
            return
        stamp = datetime.now().strftime("%H:%M:%S.%f")[:-3]
        with self._lock:
            self._log_file.write(f"{stamp} bench: {message}\n")
            self._log_file.flush()


def as_reporter(log: Line | Reporter | None) -> Reporter:
    """The library's entry points accept a plain callable or a Reporter."""
    if isinstance(log, Reporter):
        return log
    return Reporter(log or (lambda _m: None))


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    return f"ETA {seconds // 60}:{seconds % 60:02d}"


class PlainReporter(Reporter):
    """A line per event, for pipes and CI logs: notes carry `done/total` and the ETA."""

    def __init__(self, stream: TextIO, log_file: TextIO | None = None, indent: str = "  "):
        super().__init__(lambda m: None, log_file)
        self._stream, self._indent = stream, indent

    def _show_line(self, message: str) -> None:
        with self._lock:
            self._stream.write(f"{self._indent}{message}\n")
            self._stream.flush()

    def _task_note(self, task: Task, text: str) -> None:
        where = ", ".join(part for part in (task.count_text(), format_eta(task.eta_s())) if part)
        self.line(f"{task.description}: {text}" + (f" ({where})" if where else ""))


class RichReporter(Reporter):
    """Live progress bars on a terminal; lines and finished tasks printed above them."""

    def __init__(self, stream: TextIO, log_file: TextIO | None = None):
        from rich.console import Console
        from rich.progress import (BarColumn, Progress, SpinnerColumn, TextColumn,
                                   TimeElapsedColumn)

        super().__init__(lambda m: None, log_file)
        self.console = Console(file=stream, highlight=False, soft_wrap=True)
        # Third-party output goes to the run's log file, not through rich: no redirect of
        # sys.stdout/sys.stderr here (rich would otherwise print them above the bars).
        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=24),
            TextColumn("{task.fields[count]}"), TextColumn("{task.fields[eta]}"),
            TimeElapsedColumn(), TextColumn("{task.fields[note]}", markup=False),
            console=self.console, transient=True, redirect_stdout=False, redirect_stderr=False)
        self._ids: dict[int, int] = {}

    def __enter__(self) -> "RichReporter":
        self.progress.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.progress.stop()

    def task(self, description: str, total: float | None = None, unit: str = "") -> Task:
        task = super().task(description, total, unit)
        self._ids[id(task)] = self.progress.add_task(
            description, total=total, count=task.count_text(), eta="", note="")
        return task

    def _show_line(self, message: str) -> None:
        self.console.print(f"  {message}", markup=False)

    def _task_note(self, task: Task, text: str) -> None:
        self._to_log_file(f"{task.description}: {text}")
        if (task_id := self._ids.get(id(task))) is not None:
            self.progress.update(task_id, note=text)

    def _task_changed(self, task: Task) -> None:
        if (task_id := self._ids.get(id(task))) is not None:
            self.progress.update(task_id, completed=task.done, count=task.count_text(),
                                 eta=format_eta(task.eta_s()))

    def _task_finished(self, task: Task, note: str | None) -> None:
        task_id = self._ids.pop(id(task), None)
        if task_id is not None:
            self.progress.remove_task(task_id)
        if note:
            self.line(f"{task.description}: {note}")
