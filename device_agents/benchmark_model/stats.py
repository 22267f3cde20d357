"""`tsl::Stat` / `StatWithPercentiles<int64_t>` (xla/tsl/util/stats_calculator.h), value for value.

Integer microseconds in; the text is what `OutputToStream` writes, including its integer
truncations (population variance and std are held as int64) and `avg` printed as a C++ double.
"""
import math
from dataclasses import dataclass, field

from device_agents.benchmark_model.flags import cpp_double


@dataclass
class Stat:
    values_us: list[int] = field(default_factory=list)
    squared_sum: float = 0.0

    def update(self, value_us: int) -> None:
        self.values_us.append(int(value_us))
        self.squared_sum += float(value_us) * value_us

    @property
    def count(self) -> int:
        return len(self.values_us)

    def empty(self) -> bool:
        return not self.values_us

    @property
    def first(self) -> int:
        return self.values_us[0] if self.values_us else 0

    @property
    def newest(self) -> int:
        return self.values_us[-1] if self.values_us else 0

    @property
    def min(self) -> int:
        return min(self.values_us)

    @property
    def max(self) -> int:
        return max(self.values_us)

    @property
    def sum(self) -> int:
        return sum(self.values_us)

    def all_same(self) -> bool:
        return self.empty() or self.min == self.max

    def avg(self) -> float:
        # Empty: numeric_limits<int64_t>::quiet_NaN() is 0, so the real avg() is 0.
        return 0.0 if self.empty() else self.sum / self.count

    def variance(self) -> int:
        # ValueType variance(): the double is truncated to int64.
        if self.all_same():
            return 0
        return int(self.squared_sum / self.count - self.avg() * self.avg())

    def std_deviation(self) -> int:
        return 0 if self.all_same() else int(math.sqrt(self.variance()))

    def text(self) -> str:
        if self.empty():
            return "count=0"
        if self.all_same():
            suffix = "(all same)" if self.count > 1 else ""
            return f"count={self.count} curr={self.newest}{suffix}"
        return (f"count={self.count} first={self.first} curr={self.newest} min={self.min} "
                f"max={self.max} avg={cpp_double(self.avg())} std={self.std_deviation()}")


@dataclass
class StatWithPercentiles(Stat):
    def percentile(self, percent: int) -> int:
        # std::nth_element at index size*percent/100 == that element of the sorted values.
        ordered = sorted(self.values_us)
        if percent == 100:
            return self.values_us[-1]
        return ordered[len(ordered) * percent // 100]

    def text(self) -> str:
        base = Stat.text(self)
        if self.empty():
            # numeric_limits<int64_t>::quiet_NaN() is 0, so the real tool prints zeros here.
            return base + " p5=0 median=0 p95=0"
        return (f"{base} p5={self.percentile(5)} median={self.percentile(50)} "
                f"p95={self.percentile(95)}")
