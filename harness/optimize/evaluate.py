"""Accuracy of a .tflite on a dataset's held-out split, measured with the LiteRT interpreter.

Datasets hold NCHW float images (the PyTorch layout); a .tflite may want NHWC (most third-party
models) and may want int8/uint8 inputs. tflite_predict bridges both from the model's own input
tensor, so every variant of a model is scored on exactly the same images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.optimize.convert import set_inputs, to_float, to_input_dtype
from harness.errors import BenchError, UserError

if TYPE_CHECKING:
    from models.datasets import EvalData

# top-5 only means something when there are clearly more than 5 classes to choose from.
TOP5_MIN_CLASSES = 10


class TensorAllocationError(BenchError):
    """The .tflite loads but the LiteRT interpreter cannot allocate its tensors (a shape an op
    rejects, an op this runtime cannot prepare): nothing can run it, benchmark_model included."""


@dataclass
class AccuracyReport:
    """top1/top5 against labels (None without labels or, for top5, under 10 classes);
    agreement: share of samples whose top-1 equals the baseline's (None without a baseline)."""

    n: int
    top1: float | None
    top5: float | None
    agreement: float | None
    predictions: np.ndarray = field(repr=False)  # top-1 class per sample; not serialized

    def to_dict(self) -> dict[str, Any]:
        """json-able figures, without the per-sample predictions."""
        return {"n": self.n, "top1": self.top1, "top5": self.top5, "agreement": self.agreement}


def to_model_layout(x_nchw: np.ndarray, input_shape: tuple[int, ...], model: str = "model") -> np.ndarray:
    """NCHW samples -> the layout of a model input of `input_shape` (batch first).

    Same shape: used as is. Otherwise, when NHWC (channels last) gives the model's shape, the
    samples are transposed. Anything else is a UserError naming both shapes.
    """
    sample_shape = tuple(int(d) for d in x_nchw.shape[1:])
    wanted = tuple(int(d) for d in input_shape[1:])
    if sample_shape == wanted:
        return x_nchw
    if x_nchw.ndim == 4 and (sample_shape[1], sample_shape[2], sample_shape[0]) == wanted:
        return np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))
    raise UserError(
        f"{model}: input tensor shape {tuple(input_shape)} fits neither NCHW nor NHWC data of shape "
        f"(N, {', '.join(map(str, sample_shape))}); use a dataset of the model's input size"
    )


def tflite_predict(path: Path, x_nchw: np.ndarray, *, num_threads: int = 2) -> np.ndarray:
    """Scores (N, outputs) float32 of the .tflite's first output for NCHW float samples `x_nchw`.

    One sample per invoke (batch 1, as converted). NHWC models get transposed samples; int8/uint8
    inputs are quantized and outputs dequantized with the model's own scale and zero point.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
    try:
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        why = " ".join(str(exc).split())  # the runtime's lines, run together on one
        raise TensorAllocationError(f"LiteRT cannot allocate the tensors of {Path(path).name} "
                                    f"({why})") from None
    input_details = interpreter.get_input_details()
    output_detail = interpreter.get_output_details()[0]
    from models.inputs import InputBatch

    if isinstance(x_nchw, InputBatch) or len(input_details) > 1:
        if not isinstance(x_nchw, InputBatch) or len(x_nchw.names) != len(input_details):
            raise UserError(f"{path}: has {len(input_details)} inputs; give one --input NAME:DTYPE:SHAPE for each")
        scores = []
        for index in range(len(x_nchw)):
            set_inputs(interpreter, x_nchw[index:index + 1])
            interpreter.invoke()
            scores.append(to_float(interpreter.get_tensor(output_detail["index"]), output_detail).reshape(-1))
        return np.stack(scores).astype(np.float32)
    input_detail = input_details[0]
    samples = to_model_layout(np.asarray(x_nchw, dtype=np.float32), tuple(input_detail["shape"]), str(path))
    scores = []
    for sample in samples:
        interpreter.set_tensor(input_detail["index"], to_input_dtype(sample[None, ...], input_detail))
        interpreter.invoke()
        scores.append(to_float(interpreter.get_tensor(output_detail["index"]), output_detail).reshape(-1))
    return np.stack(scores).astype(np.float32)


def accuracy_report(
    scores: np.ndarray, labels: np.ndarray | None, baseline_predictions: np.ndarray | None = None
) -> AccuracyReport:
    """Figures from (N, classes) scores; shared by .tflite and PyTorch evaluation."""
    predictions = np.argmax(scores, axis=1)
    top1 = top5 = agreement = None
    if labels is not None:
        labels = np.asarray(labels)
        top1 = float(np.mean(predictions == labels))
        if scores.shape[1] >= TOP5_MIN_CLASSES:
            best5 = np.argsort(-scores, axis=1)[:, :5]
            top5 = float(np.mean(np.any(best5 == labels[:, None], axis=1)))
    if baseline_predictions is not None:
        baseline_predictions = np.asarray(baseline_predictions)
        if len(baseline_predictions) != len(predictions):
            raise ValueError(
                f"baseline has {len(baseline_predictions)} predictions for {len(predictions)} samples"
            )
        agreement = float(np.mean(predictions == baseline_predictions))
    return AccuracyReport(n=len(predictions), top1=top1, top5=top5, agreement=agreement, predictions=predictions)


def evaluate_tflite(
    path: Path, data: "EvalData", *, baseline_predictions: np.ndarray | None = None, num_threads: int = 2
) -> AccuracyReport:
    """top-1 (and top-5 with >= 10 classes) of the .tflite on data.x_test / data.y_test; agreement
    with `baseline_predictions` (the fp32 model's top-1 on the same samples) when given. Without
    labels (y_test None) agreement is the only accuracy figure."""
    scores = tflite_predict(path, data.x_test, num_threads=num_threads)
    return accuracy_report(scores, data.y_test, baseline_predictions)
