"""Where per-device work runs: the executor seam.

A run, a resume and a `--confirm` each hand one piece of work per device to an executor and get
the results back in the devices' order. The executor runs each device's work on a thread of
this process (`ThreadExecutor`), on one host and on a cluster alike: a device's work is control
(its lock, gates, retries, quarantine, and each sample stored before its next launch), which
stays with the controller and its store; on a cluster what travels to the device's own host is
each device operation, through the Target seam (harness.targets.cluster). Another executor
(a process pool, a remote scheduler) must pass tests/test_executor_contract.py:

- all items run at once (a slow device never holds up another's start);
- results come back in the order of the items;
- the first failing item's exception is raised in the caller, after every item has ended;
- the caller's wait can be interrupted (KeyboardInterrupt: a second Ctrl-C), and work still
  running then does not hold up the process's exit.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Executor(ABC):
    """Runs `work(item)` for every item at once; see the module's contract."""

    name: str = "executor"

    @abstractmethod
    def map(self, work: Callable[[T], R], items: Sequence[T], label: str = "device") -> list[R]:
        """The results in the items' order, or the first failing item's exception."""


class ThreadExecutor(Executor):
    """One daemon thread per item in this process: devices reached through adb servers this
    host can connect to (its own, or a lab config's)."""

    name = "threads"

    def map(self, work: Callable[[T], R], items: Sequence[T], label: str = "device") -> list[R]:
        results: list = [None] * len(items)
        errors: list[BaseException | None] = [None] * len(items)

        def run(index: int, item: T) -> None:
            try:
                results[index] = work(item)
            except BaseException as exc:  # re-raised in the caller's thread below
                errors[index] = exc

        # Daemons, not a pool: a device that never answers must not keep the process alive
        # after a second Ctrl-C has given up on it.
        threads = [threading.Thread(target=run, args=(i, item), name=f"{label}-{i}", daemon=True)
                   for i, item in enumerate(items)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for error in errors:
            if error is not None:
                raise error
        return results


def local_executor() -> Executor:
    """The executor of a run on this host (the default everywhere)."""
    return ThreadExecutor()
