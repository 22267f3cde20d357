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
from typing import Callable, Iterator

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
