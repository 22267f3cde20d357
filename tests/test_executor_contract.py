"""The contract every executor must pass (harness.executor): a new one (Ray's, a lab's) gets a
subclass of ExecutorContract with its own `make`, and nothing else changes for the run, resume
and confirm paths that use it."""
from __future__ import annotations

import threading
import time

import pytest

from harness.executor import Executor, ThreadExecutor, local_executor


class ExecutorContract:
    """Template tests; subclasses set `make` to build the executor under test."""

    make: type[Executor]

    def test_results_come_back_in_the_items_order(self):
        assert self.make().map(lambda n: n * 2, [3, 1, 2]) == [6, 2, 4]
        assert self.make().map(lambda n: n, []) == []

    def test_all_items_run_at_once(self):
        # Each item waits for all the others to have started: a serial executor would deadlock
        # (the barrier's timeout turns that into a failure instead).
        items = 4
        barrier = threading.Barrier(items, timeout=10)
        assert self.make().map(lambda n: barrier.wait() >= 0 and n, list(range(items))) == [
            0, 1, 2, 3]

    def test_the_first_failing_items_error_is_raised_after_every_item_ended(self):
        ended = []

        def work(n):
            if n == 2:
                raise ValueError("device 2 broke")
            time.sleep(0.2)  # still running when item 2 fails: the caller waits for it
            ended.append(n)
            return n

        with pytest.raises(ValueError, match="device 2 broke"):
            self.make().map(work, [1, 2, 3])
        assert sorted(ended) == [1, 3]

    def test_it_says_what_it_is(self):
        assert isinstance(self.make().name, str) and self.make().name


class TestThreadExecutor(ExecutorContract):
    make = ThreadExecutor


def test_the_local_executor_is_the_thread_executor():
    assert isinstance(local_executor(), ThreadExecutor)
