"""The two benchmark_model flavours bench drives (filled in by harness.benchmark.tool)."""
from __future__ import annotations

from enum import Enum


class Flavour(str, Enum):
    """Which tool a benchmark_model binary is: the classic TFLite interpreter tool
    (`tflite/tools/benchmark:benchmark_model`) or LiteRT's CompiledModel tool
    (`litert/tools:benchmark_model`, class BenchmarkLiteRtModel)."""

    TFLITE = "tflite"
    LITERT = "litert"

    def __str__(self) -> str:
        return self.value
