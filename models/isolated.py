"""Run one call in a spawned process of its own, for libraries that must not load in bench's.

TensorFlow, once loaded in a process, breaks torch's side of it: a later import of torch's
triton (litert-torch's conversion, torch.compile) crashes the process with a segmentation fault,
and litert-torch's MLIR verification fails on models it converts otherwise (seen with
tensorflow-cpu 2.21.0, torch 2.14.1, triton 3.8.0, litert-torch 0.10.0). TensorFlow comes in
with SavedModels, and with Keras 3 wherever TensorFlow is installed (its legacy .h5 reader
imports it). So those conversions run here, and a crash there is one line, not the run's end.
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
from typing import Any, Callable

from models.errors import ModelInputError


def call_in_own_process(function: Callable[..., Any], *args: Any, what: str) -> Any:
    """`function(*args)` in a spawned process (function and arguments picklable); its
    exceptions come back as raised there; a process that dies is ModelInputError naming `what`."""
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(function, *args).result()
        except concurrent.futures.process.BrokenProcessPool:
            raise ModelInputError(f"{what} crashed (its process died); convert the model to a .tflite in an "
                                  "environment of its own and give bench the .tflite") from None
