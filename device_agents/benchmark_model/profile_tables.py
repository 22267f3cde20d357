"""The op-profiling tables: `tensorflow::StatsCalculator` (stats_calculator.cc) as configured by
ProfileSummaryDefaultFormatter (run order: all rows; top by time: 10 rows; summary by node type;
no memory table), and its short summary (`Timings (microseconds): ...`, `N nodes observed`).
"""
from dataclasses import dataclass, field

from device_agents.benchmark_model.stats import Stat

TIME_LIMIT_ROWS = 10


@dataclass
class NodeDetail:
    name: str
    type: str
    run_order: int
    elapsed_us: Stat = field(default_factory=Stat)
    mem_used_bytes: Stat = field(default_factory=Stat)
    times_called: int = 0


@dataclass
class StatsCalculator:
    details: dict[str, NodeDetail] = field(default_factory=dict)
    run_total_us: Stat = field(default_factory=Stat)
    memory_bytes: Stat = field(default_factory=Stat)
    format_as_csv: bool = False

    def add_node_stats(self, name: str, node_type: str, run_order: int, elapsed_us: int,
                       mem_used_bytes: int) -> None:
        detail = self.details.get(name)
        if detail is None:
            detail = self.details[name] = NodeDetail(name, node_type, run_order)
        detail.elapsed_us.update(elapsed_us)
        detail.mem_used_bytes.update(mem_used_bytes)
        detail.times_called += 1

    @property
    def num_runs(self) -> int:
        return self.run_total_us.count

    # -- text ------------------------------------------------------------------------------
    @staticmethod
    def _field(width: int, value) -> str:
        text = f"{value:.3f}" if isinstance(value, float) else str(value)
        return "\t" + text.rjust(width)

    def _header(self, title: str) -> str:
        line = f"============================== {title} ==============================\n"
        if self.format_as_csv:
            return line + "node type, first, avg_ms, %, cdf%, mem KB, times called, name"
        return (line + self._field(24, "[node type]") + self._field(9, "[first]")
                + self._field(9, "[avg ms]") + self._field(8, "[%]") + self._field(8, "[cdf%]")
                + self._field(10, "[mem KB]") + self._field(9, "[times called]") + "\t[Name]")

    def _row(self, detail: NodeDetail, cumulative_us: float) -> str:
        total = self.run_total_us.sum or 1
        first_ms = detail.elapsed_us.first / 1000.0
        avg_ms = detail.elapsed_us.avg() / 1000.0
        percentage = detail.elapsed_us.sum * 100.0 / total
        cdf = cumulative_us * 100.0 / total
        mem_kb = detail.mem_used_bytes.newest / 1000.0
        times_called = detail.times_called // max(self.num_runs, 1)
        if self.format_as_csv:
            name = detail.name.replace(",", "\t")
            return (f"{detail.type}, {first_ms:g}, {avg_ms:g}, {percentage:g}%, {cdf:g}%, "
                    f"{mem_kb:g}, {times_called}, {name}")
        return (self._field(24, detail.type) + self._field(9, first_ms) + self._field(9, avg_ms)
                + self._field(7, percentage) + "%" + self._field(7, cdf) + "%"
                + self._field(10, mem_kb) + self._field(9, times_called) + "\t" + detail.name)

    def _by_metric(self, title: str, ordered: list[NodeDetail], limit: int) -> str:
        lines = [self._header(title)]
        cumulative_us = 0.0
        for number, detail in enumerate(ordered, start=1):
            if limit > 0 and number > limit:
                break
            cumulative_us += detail.elapsed_us.sum
            lines.append(self._row(detail, cumulative_us))
        return "\n".join(lines) + "\n\n"

    def _by_node_type(self) -> str:
        runs = max(self.num_runs, 1)
        count: dict[str, int] = {}
        time_us: dict[str, int] = {}
        memory: dict[str, int] = {}
        called: dict[str, int] = {}
        accumulated_us = 0
        for detail in self.details.values():
            per_run_us = detail.elapsed_us.sum // runs
            accumulated_us += per_run_us
            count[detail.type] = count.get(detail.type, 0) + 1
            time_us[detail.type] = time_us.get(detail.type, 0) + per_run_us
            memory[detail.type] = memory.get(detail.type, 0) + detail.mem_used_bytes.newest
            called[detail.type] = called.get(detail.type, 0) + detail.times_called // runs
        lines = [f"Number of nodes executed: {len(self.details)}",
                 "============================== Summary by node type =============================="]
        if self.format_as_csv:
            lines.append("node type, count, avg_ms, avg %, cdf %, mem KB, times called")
        else:
            lines.append(self._field(24, "[Node type]") + self._field(9, "[count]")
                         + self._field(10, "[avg ms]") + self._field(11, "[avg %]")
                         + self._field(11, "[cdf %]") + self._field(10, "[mem KB]")
                         + self._field(10, "[times called]"))
        cdf = 0.0
        # priority_queue<pair<time, pair<type, mem>>>: largest time first, then type descending.
        for node_type in sorted(time_us, key=lambda t: (time_us[t], t), reverse=True):
            percentage = time_us[node_type] / float(accumulated_us or 1) * 100.0
            cdf += percentage
            ms = time_us[node_type] / 1000.0
            kb = memory[node_type] / 1000.0
            if self.format_as_csv:
                lines.append(f"{node_type}, {count[node_type]}, {ms:g}, {percentage:g}%, {cdf:g}%, "
                             f"{kb:g}, {called[node_type]}")
            else:
                lines.append(self._field(24, node_type) + self._field(9, count[node_type])
                             + self._field(10, ms) + self._field(10, percentage) + "%"
                             + self._field(10, cdf) + "%" + self._field(10, kb)
                             + self._field(9, called[node_type]))
        return "\n".join(lines) + "\n\n"

    def output_string(self) -> str:
        details = list(self.details.values())
        by_order = sorted(details, key=lambda d: d.run_order)
        by_time = sorted(details, key=lambda d: (-d.elapsed_us.avg(), d.run_order))
        return (self._by_metric("Run Order", by_order, 0)
                + self._by_metric("Top by Computation Time", by_time, TIME_LIMIT_ROWS)
                + self._by_node_type())

    def short_summary(self) -> str:
        return (f"Timings (microseconds): {self.run_total_us.text()}\n"
                f"Memory (bytes): {self.memory_bytes.text()}\n"
                f"{len(self.details)} nodes observed\n")

    def report(self) -> str:
        """GenerateReport() for a single (primary) subgraph."""
        return self.output_string() + self.short_summary() + "\n"
