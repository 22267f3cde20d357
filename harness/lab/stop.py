"""Ctrl-C during device work: the first one stops the work cleanly, a second one at once.

Python delivers SIGINT to the main thread only, which during device work just waits for the
device threads. So the first Ctrl-C does not raise: it sets a stop event, the device threads
start no new launch and abandon the launch in progress (its adb stream is closed, so the device
kills the benchmark, as adbd does), then return; the caller stores what finished and marks the
run interrupted. A second Ctrl-C raises KeyboardInterrupt in the main thread at once; the device
threads are daemons, so the process exits without waiting for a device that does not answer.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

STOP_MESSAGE = ("interrupted: no new launch starts, the launches in progress are being killed; "
                "Ctrl-C again to quit at once")


@contextmanager
def stop_on_sigint(stop: threading.Event, log: Callable[[str], None] = lambda _m: None
                   ) -> Iterator[threading.Event]:
    """Within the block, the first SIGINT sets `stop` (and says so through `log`), a second one
    raises KeyboardInterrupt. The previous handler is back afterwards. Off the main thread,
    where Python cannot take signals, it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(_signum, _frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        log(STOP_MESSAGE)

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield stop
    finally:
        # None: a handler not set from Python; the default is the nearest equivalent.
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


def run_per_device(work: Callable[[T], R], items: Sequence[T], name: str = "device") -> list[R]:
    """`work(item)` for every item at once, one daemon thread each; the results in order, or
    the first item's exception re-raised. The wait can be interrupted (KeyboardInterrupt), and
    threads still running then do not hold up the process's exit, as a pool's would."""
    results: list = [None] * len(items)
    errors: list[BaseException | None] = [None] * len(items)

    def run(index: int, item: T) -> None:
        try:
            results[index] = work(item)
        except BaseException as exc:  # re-raised in the caller's thread below
            errors[index] = exc

    threads = [threading.Thread(target=run, args=(i, item), name=f"{name}-{i}", daemon=True)
               for i, item in enumerate(items)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for error in errors:
        if error is not None:
            raise error
    return results
