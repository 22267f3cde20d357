"""`tflite.tools.benchmark.BenchmarkResult` (tflite/tools/benchmark/proto/benchmark_result.proto),
encoded by hand in the protobuf wire format so the tool needs no generated code.

BenchmarkResult{2 latency_metrics, 3 memory_metrics, 4 misc_metrics};
LatencyMetrics{1 avg_ms .. 10 average_warm_up_ms: float}; MemoryMetrics{1 init_footprint_kb,
2 overall_footprint_kb: int64, 3 peak_mem_mb: float}; MiscMetrics{1 model_size_mb: float,
2 num_runs, 3 num_warmup_runs: int32, 4 model_throughput_in_mb_per_sec: float}.
"""
import struct
from dataclasses import dataclass


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 -> two's complement, ten bytes
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _float_field(number: int, value: float) -> bytes:
    return _varint(number << 3 | 5) + struct.pack("<f", value)


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3 | 0) + _varint(int(value))


def _message_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


@dataclass(frozen=True)
class BenchmarkResultRecord:
    avg_ms: float
    min_ms: float
    max_ms: float
    stddev_ms: float
    median_ms: float
    p5_ms: float
    p95_ms: float
    init_ms: float
    first_inference_ms: float
    average_warm_up_ms: float
    init_footprint_kb: int
    overall_footprint_kb: int
    peak_mem_mb: float  # <= 0: not measured, field left out
    model_size_mb: float
    num_runs: int
    num_warmup_runs: int
    model_throughput_in_mb_per_sec: float

    def encode(self) -> bytes:
        latency = b"".join(_float_field(n, v) for n, v in enumerate([
            self.avg_ms, self.min_ms, self.max_ms, self.stddev_ms, self.median_ms, self.p5_ms,
            self.p95_ms, self.init_ms, self.first_inference_ms, self.average_warm_up_ms], start=1))
        memory = _int_field(1, self.init_footprint_kb) + _int_field(2, self.overall_footprint_kb)
        if self.peak_mem_mb > 0:
            memory += _float_field(3, self.peak_mem_mb)
        misc = (_float_field(1, self.model_size_mb) + _int_field(2, self.num_runs)
                + _int_field(3, self.num_warmup_runs)
                + _float_field(4, self.model_throughput_in_mb_per_sec))
        return _message_field(2, latency) + _message_field(3, memory) + _message_field(4, misc)
