"""One timer for the benchmark scripts: a .tflite on this host's LiteRT interpreter, fed one
real sample (a float batch, quantized for int8 inputs, or an InputBatch of token inputs)."""
from __future__ import annotations

import time
from pathlib import Path


def invoke_timer(path: Path, sample, runs: int, threads: int):
    """A function that times `runs` invokes and returns their mean in ms (after one warm-up)."""
    from ai_edge_litert.interpreter import Interpreter

    from harness.optimize.convert import set_inputs

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    set_inputs(interpreter, sample)
    interpreter.invoke()  # warm-up

    def one_round() -> float:
        started = time.perf_counter()
        for _ in range(runs):
            interpreter.invoke()
        return (time.perf_counter() - started) / runs * 1000.0

    return one_round
