"""PyTorch -> .tflite with litert-torch, then a parity check of the .tflite against torch.

The parity check runs both on real inputs, so a conversion that silently changes the maths
(a bad lowering, a wrong layout) fails here instead of producing fast but wrong benchmarks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.errors import BenchError

if TYPE_CHECKING:  # torch is imported only when a conversion really runs
    from torch import nn

# fp32 -> fp32 conversion should only reorder float operations: 1e-4 of the output scale is
# orders of magnitude above that noise and far below any real conversion bug.
FP32_RELATIVE_TOLERANCE = 1e-4
# Guards the relative figure against models whose outputs are all (near) zero.
_OUTPUT_SCALE_FLOOR = 1e-12


class ParityError(BenchError):
    """The .tflite's outputs do not match the PyTorch model's on the same inputs."""


@dataclass(frozen=True)
class ConversionReport:
    model_name: str
    sample_count: int
    max_abs_diff: float
    cosine_similarity: float  # the minimum over samples: the worst sample, not the average
    output_scale: float  # max abs torch output: what max_abs_diff is relative to
    relative_diff: float  # max_abs_diff / output_scale
    convert_seconds: float


def tflite_outputs(tflite_path: Path, inputs: np.ndarray, *, num_threads: int = 1) -> np.ndarray:
    """Run the .tflite with the LiteRT interpreter on each input (batch 1); stack the outputs.

    `inputs` is (N, *input_shape[1:]) in the model's own layout; float inputs are quantized with the
    model's input scale/zero point when it expects int8/uint8 and quantized outputs are dequantized,
    so callers always compare float numbers.
    """
    from ai_edge_litert.interpreter import Interpreter

    # One thread by default: parity figures must not depend on how many cores the host has free.
    interpreter = Interpreter(model_path=str(tflite_path), num_threads=num_threads)
    interpreter.allocate_tensors()
    output_detail = interpreter.get_output_details()[0]
    outputs = []
    for index in range(len(inputs)):
        set_inputs(interpreter, inputs[index:index + 1])
        interpreter.invoke()
        outputs.append(to_float(interpreter.get_tensor(output_detail["index"]), output_detail))
    return np.concatenate(outputs, axis=0)


def set_inputs(interpreter, batch) -> None:
    """One sample (a batch of 1: an array, or an InputBatch of several inputs) into the
    interpreter's input tensors, matched by position as benchmark_model matches its layers."""
    from models.inputs import feed_arrays

    details = interpreter.get_input_details()
    arrays = feed_arrays(batch)
    if len(arrays) != len(details):
        raise ValueError(f"the model has {len(details)} inputs, the samples {len(arrays)}")
    for detail, array in zip(details, arrays):
        interpreter.set_tensor(detail["index"], to_input_dtype(array, detail))


def convert_to_tflite(
    model: "nn.Module",
    sample_inputs: np.ndarray,
    out_path: Path,
    model_name: str = "model",
    relative_tolerance: float = FP32_RELATIVE_TOLERANCE,
) -> ConversionReport:
    """Convert `model` (traced with batch 1) to `out_path`, then check parity on `sample_inputs`.

    `sample_inputs` is (N, *input_shape[1:]) float32 real data; N >= 1. Raises ParityError (and
    removes `out_path`) when max_abs_diff / output_scale exceeds `relative_tolerance`.
    """
    import litert_torch
    import torch

    if len(sample_inputs) == 0:
        raise ValueError("convert_to_tflite needs at least one sample input")
    out_path = Path(out_path)
    model = model.eval()
    started = time.perf_counter()
    from models.inputs import torch_inputs

    with litert_progress_hidden():
        edge_model = litert_torch.convert(model, torch_inputs(sample_inputs[:1]))
        edge_model.export(str(out_path))
    convert_seconds = time.perf_counter() - started

    with torch.no_grad():
        torch_out = model(*torch_inputs(sample_inputs))
    torch_out = torch_out.numpy().reshape(len(sample_inputs), -1)
    tflite_out = tflite_outputs(out_path, sample_inputs).reshape(len(sample_inputs), -1)

    report = _parity_report(model_name, torch_out, tflite_out, convert_seconds)
    if report.relative_diff > relative_tolerance:
        out_path.unlink(missing_ok=True)
        raise ParityError(
            f"{model_name}: .tflite outputs differ from PyTorch on {report.sample_count} inputs: "
            f"max_abs_diff={report.max_abs_diff:.3g} is {report.relative_diff:.3g} of output_scale="
            f"{report.output_scale:.3g} (tolerance {relative_tolerance:.3g}), "
            f"min cosine_similarity={report.cosine_similarity:.6f}"
        )
    return report


def parity_figures(reference: np.ndarray, candidate: np.ndarray) -> dict:
    """How far `candidate` outputs are from `reference` outputs (both (N, ...), same inputs).

    max_abs_diff, cosine_similarity (the worst sample), output_scale (max abs reference output),
    relative_diff (max_abs_diff / output_scale) and top1_agreement (share of samples whose argmax
    is the same: what a quantized classifier keeps of its reference's decisions).
    """
    reference = reference.reshape(len(reference), -1).astype(np.float64)
    candidate = candidate.reshape(len(candidate), -1).astype(np.float64)
    max_abs_diff = float(np.max(np.abs(reference - candidate)))
    output_scale = float(np.max(np.abs(reference)))
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1)
    dots = np.sum(reference * candidate, axis=1)
    # Two all-zero vectors are identical: count them as similarity 1, not 0/0.
    cosines = np.where(norms > 0, dots / np.maximum(norms, _OUTPUT_SCALE_FLOOR), 1.0)
    return {
        "sample_count": len(reference),
        "max_abs_diff": max_abs_diff,
        "cosine_similarity": float(np.min(cosines)),
        "output_scale": output_scale,
        "relative_diff": max_abs_diff / max(output_scale, _OUTPUT_SCALE_FLOOR),
        "top1_agreement": float(np.mean(reference.argmax(axis=1) == candidate.argmax(axis=1))),
    }


def _parity_report(
    model_name: str, torch_out: np.ndarray, tflite_out: np.ndarray, convert_seconds: float
) -> ConversionReport:
    figures = parity_figures(torch_out, tflite_out)
    return ConversionReport(
        model_name=model_name,
        sample_count=figures["sample_count"],
        max_abs_diff=figures["max_abs_diff"],
        cosine_similarity=figures["cosine_similarity"],
        output_scale=figures["output_scale"],
        relative_diff=figures["relative_diff"],
        convert_seconds=convert_seconds,
    )


def to_input_dtype(batch: np.ndarray, detail: dict) -> np.ndarray:
    """Float data -> the input tensor's dtype; int8/uint8 with the tensor's own scale/zero point."""
    dtype = detail["dtype"]
    if np.asarray(batch).dtype.kind in "iu" and np.dtype(dtype).kind in "iu":
        return np.asarray(batch).astype(dtype)  # token ids and masks: values, not quantized floats
    if dtype in (np.int8, np.uint8):
        scale, zero_point = detail["quantization"]
        info = np.iinfo(dtype)
        quantized = np.round(batch / scale) + zero_point
        return np.clip(quantized, info.min, info.max).astype(dtype)
    return batch.astype(dtype)


def to_float(values: np.ndarray, detail: dict) -> np.ndarray:
    """A tensor's values as float32; int8/uint8 dequantized with its own scale/zero point."""
    if detail["dtype"] in (np.int8, np.uint8):
        scale, zero_point = detail["quantization"]
        return (values.astype(np.float32) - zero_point) * scale
    return values.astype(np.float32)


@contextmanager
def litert_progress_hidden() -> Iterator[None]:
    """litert-torch prints a progress tree to stdout; bench's own output must stay readable."""
    variable = "LITERT_TORCH_SHOW_PROGRESS"
    previous = os.environ.get(variable)
    os.environ[variable] = "n"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = previous
