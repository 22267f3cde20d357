"""Memory readings, the way `tflite/profiling/memory_info.cc` and `memory_usage_monitor.cc` take them.

The real tool's footprint is `getrusage(RUSAGE_SELF).ru_maxrss` (KB): the process's peak resident
set size, i.e. VmHWM in /proc/self/status. "delta from the start of the tool" is the difference of
two such readings. The periodic monitor samples the same value on a thread; the end-of-run block
reads /proc/self/statm (pages -> MB, truncated, like `GetRssStats`).
"""
import os
import resource
import threading
from dataclasses import dataclass


def max_rss_kb() -> int:
    # On Linux ru_maxrss is in kilobytes.
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


@dataclass(frozen=True)
class RssStatusMb:
    vm_rss_mb: int
    anon_mb: int
    file_and_shmem_mb: int


def rss_status_mb() -> RssStatusMb:
    """`GetRssStats`: statm's resident and shared pages, each shifted to whole MB."""
    with open("/proc/self/statm") as statm:
        fields = statm.read().split()
    page_bytes = os.sysconf("SC_PAGE_SIZE")
    rss_mb = int(fields[1]) * page_bytes >> 20
    shared_mb = int(fields[2]) * page_bytes >> 20
    return RssStatusMb(rss_mb, rss_mb - shared_mb, shared_mb)


class PeakMemoryMonitor:
    """A thread that samples the footprint every `interval_ms` (first sample at start, last at stop)."""

    def __init__(self, interval_ms: int):
        self._interval_s = interval_ms / 1000.0
        self._stop = threading.Event()
        self._peak_kb = 0
        self._thread = threading.Thread(target=self._sample, name="memory-monitor", daemon=True)

    def _sample(self) -> None:
        while True:
            self._peak_kb = max(self._peak_kb, max_rss_kb())
            if self._stop.is_set():
                break
            self._stop.wait(self._interval_s)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak_mb(self) -> float:
        # peak_mem_footprint_bytes_ / 1024 / 1024 as a float, from kilobytes.
        return self._peak_kb * 1024 / 1024.0 / 1024.0
