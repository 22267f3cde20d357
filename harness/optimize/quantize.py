"""Quantized .tflite variants: fp32, fp16 weights, dynamic-range int8, full-integer int8.

How each mode is made (all by library code, no hand-written quantization):
- fp32: litert-torch convert, with the strict parity check of harness.optimize.convert (1e-4 relative).
- fp16, dynamic_int8, int8: ai-edge-quantizer recipes applied to that parity-checked fp32
  .tflite (the same path serves third-party .tflite files, NHWC included):
    fp16          float_casting, 16-bit float weights, explicit dequantize (float compute)
    dynamic_int8  recipe.dynamic_wi8_afp32: int8 channelwise weights, activations quantized at run time
    int8          recipe.static_wi8_ai8: int8 weights and activations, calibrated on real samples
                  (min/max ranges, see _calibrate);
                  int8 I/O, or (default) float I/O by leaving the graph INPUT/OUTPUT unquantized,
                  which makes the quantizer insert QUANTIZE/DEQUANTIZE at the edges.
litert-torch's PT2E quantizer (torchao prepare_pt2e/convert_pt2e + convert(quant_config=...)) was
tried too: it works, but only calibrates with batch-1 torch forwards, always produces int8 I/O
and cannot quantize an existing .tflite, so one ai-edge-quantizer path serves every mode instead.
Every result carries parity figures against the fp32 .tflite on real samples.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import warnings
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.optimize.convert import convert_to_tflite, parity_figures
from harness.errors import UserError
from harness.optimize.evaluate import tflite_predict, to_model_layout
# The modes and their rules are written once, with the variant specs; QUANT_MODES is re-exported.
from harness.optimize.variants import QUANT_MODES, check_knob, int8_io_allowed  # noqa: F401

if TYPE_CHECKING:
    from torch import nn

# Enough samples for stable min/max ranges on small nets; more only slows calibration down.
CALIBRATION_MAX_SAMPLES = 128
# Parity is measured on this many samples when the caller gives no parity_inputs.
PARITY_DEFAULT_SAMPLES = 32
_FP32_METHOD = "litert-torch convert (fp32, parity-checked)"


@dataclass
class QuantizedResult:
    """One quantized .tflite: how it was made, how close it stays to fp32, how big it is."""

    path: Path
    mode: str
    method: str
    parity: dict  # harness.optimize.convert.parity_figures of this model vs the fp32 reference
    size_bytes: int
    zip_bytes: int  # deflate-compressed size: what sparsity (zeroed weights) buys in download size

    def to_dict(self) -> dict[str, Any]:
        """json-able form."""
        return {**asdict(self), "path": str(self.path)}


def zip_size(path: Path) -> int:
    """Size in bytes of the file deflate-compressed at the highest level."""
    return len(zlib.compress(Path(path).read_bytes(), 9))


def quantize_torch(
    model: "nn.Module",
    mode: str,
    calibration: np.ndarray,
    out_path: Path,
    *,
    int8_io: bool = False,
    fp32_reference: Path | None = None,
    parity_inputs: np.ndarray | None = None,
    model_name: str = "model",
) -> QuantizedResult:
    """Convert `model` to a `mode` .tflite at `out_path`.

    `calibration`: real NCHW float32 samples (N, C, H, W); fp32 conversion checks parity against
    torch on them (or on `parity_inputs`), int8 calibrates activation ranges on them.
    `fp32_reference`: an already converted, parity-checked fp32 .tflite of this same model, reused
    instead of converting again. Raises harness.optimize.convert.ParityError when the fp32 conversion
    changes the model's maths, UserError for an unknown mode.
    """
    _check_mode(mode, int8_io)
    out_path = Path(out_path)
    checks = _parity_samples(calibration, parity_inputs)
    if mode == "fp32":
        report = convert_to_tflite(model, checks, out_path, model_name)
        parity = {
            "sample_count": report.sample_count,
            "max_abs_diff": report.max_abs_diff,
            "cosine_similarity": report.cosine_similarity,
            "output_scale": report.output_scale,
            "relative_diff": report.relative_diff,
            "reference": "pytorch",
        }
        return _result(out_path, mode, _FP32_METHOD, parity)
    if fp32_reference is not None:
        return quantize_tflite(fp32_reference, mode, calibration, out_path, int8_io=int8_io, parity_inputs=checks)
    with tempfile.TemporaryDirectory(prefix="bench-fp32-") as scratch:
        reference = Path(scratch) / f"{model_name}-fp32.tflite"
        convert_to_tflite(model, checks, reference, model_name)
        result = quantize_tflite(reference, mode, calibration, out_path, int8_io=int8_io, parity_inputs=checks)
    return result


def quantize_tflite(
    tflite_path: Path,
    mode: str,
    calibration: np.ndarray,
    out_path: Path,
    *,
    int8_io: bool = False,
    parity_inputs: np.ndarray | None = None,
) -> QuantizedResult:
    """Quantize an existing fp32 .tflite (any layout; NCHW `calibration` is transposed to fit)
    with an ai-edge-quantizer recipe. fp32 copies the file unchanged."""
    _check_mode(mode, int8_io)
    tflite_path, out_path = Path(tflite_path), Path(out_path)
    if not tflite_path.is_file():
        raise UserError(f"{tflite_path}: no such .tflite file; pass the path of an existing model")
    checks = _parity_samples(calibration, parity_inputs)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "fp32":
        if tflite_path.resolve() != out_path.resolve():
            shutil.copyfile(tflite_path, out_path)
        method = "unchanged fp32 .tflite"
    else:
        with tempfile.TemporaryDirectory() as scratch:
            # Third-party files (MediaPipe's, for one) often carry no signature; calibration
            # feeds inputs by signature, so give the copy it works on the default one.
            prepared = Path(scratch) / tflite_path.name
            prepared = with_default_signature(tflite_path, prepared)
            prepared = fp16_weights_as_fp32(prepared, Path(scratch) / f"fp32-{tflite_path.name}")
            method = _quantize_with_recipe(prepared, mode, calibration, out_path, int8_io)
    _check_runs(out_path, checks[:1], mode)
    parity = parity_figures(tflite_predict(tflite_path, checks), tflite_predict(out_path, checks))
    parity["reference"] = "fp32 tflite"
    return _result(out_path, mode, method, parity)


def with_default_signature(tflite_path: Path, out_path: Path) -> Path:
    """`tflite_path` itself when it has a signature; else a copy at `out_path` whose
    `serving_default` signature maps subgraph 0's inputs and outputs by their tensor names."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(tflite_path))
    if model.signatureDefs:
        return tflite_path
    graph = model.subgraphs[0]

    def tensor_maps(indices):
        maps = []
        for index in indices:
            entry = schema.TensorMapT()
            name = graph.tensors[index].name
            entry.name = name.decode() if isinstance(name, bytes) else name
            entry.tensorIndex = int(index)
            maps.append(entry)
        return maps

    signature = schema.SignatureDefT()
    signature.signatureKey = "serving_default"
    signature.subgraphIndex = 0
    signature.inputs = tensor_maps(graph.inputs)
    signature.outputs = tensor_maps(graph.outputs)
    model.signatureDefs = [signature]
    flatbuffer_utils.write_model(model, str(out_path))
    return out_path


def fp16_weights_as_fp32(tflite_path: Path, out_path: Path) -> Path:
    """`tflite_path` itself unless it stores weights as fp16 behind DEQUANTIZE ops (as MediaPipe's
    models do); then a copy at `out_path` with those weights as fp32 constants and the DEQUANTIZE
    ops gone, which the quantizer's recipes expect (the values are the same numbers)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(tflite_path))
    changed = False
    for graph_index, graph in enumerate(model.subgraphs):
        kept_ops, dropped_tensors = [], set()
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            source = graph.tensors[op.inputs[0]] if len(op.inputs) == 1 else None
            data = model.buffers[source.buffer].data if source is not None else None
            if (builtin == schema.BuiltinOperator.DEQUANTIZE and source.type == schema.TensorType.FLOAT16
                    and data is not None and len(data)):
                values = np.frombuffer(bytes(bytearray(data)), dtype=np.float16).astype(np.float32)
                buffer = schema.BufferT()
                buffer.data = np.frombuffer(values.tobytes(), dtype=np.uint8)
                model.buffers.append(buffer)
                graph.tensors[op.outputs[0]].buffer = len(model.buffers) - 1
                model.buffers[source.buffer].data = None  # the fp16 copy is no longer read
                dropped_tensors.add(op.inputs[0])
                continue
            kept_ops.append(op)
        if not dropped_tensors:
            continue
        changed = True
        graph.operators = kept_ops
        # Drop the orphaned fp16 tensors and renumber every reference to the others.
        new_index = {}
        kept_tensors = []
        for index, tensor in enumerate(graph.tensors):
            if index not in dropped_tensors:
                new_index[index] = len(kept_tensors)
                kept_tensors.append(tensor)
        graph.tensors = kept_tensors
        remap = lambda indices: [new_index[i] if i >= 0 else i for i in indices]  # noqa: E731
        for op in graph.operators:
            op.inputs, op.outputs = remap(op.inputs), remap(op.outputs)
            if op.intermediates is not None and len(op.intermediates):
                op.intermediates = remap(op.intermediates)
        graph.inputs, graph.outputs = remap(graph.inputs), remap(graph.outputs)
        for signature in model.signatureDefs or []:
            if signature.subgraphIndex == graph_index:
                for entry in list(signature.inputs or []) + list(signature.outputs or []):
                    entry.tensorIndex = new_index[entry.tensorIndex]
    if not changed:
        return tflite_path
    flatbuffer_utils.write_model(model, str(out_path))
    return out_path


def _check_runs(path: Path, sample: np.ndarray, mode: str) -> None:
    """A quantized file LiteRT cannot prepare is a quantizer failure, said in one line."""
    try:
        tflite_predict(path, sample)
    except UserError:
        raise
    except Exception as error:  # LiteRT raises RuntimeError with the kernel's own message
        path.unlink(missing_ok=True)
        raise UserError(f"{path.name}: the {mode} model ai-edge-quantizer made does not run in "
                        f"LiteRT: {_one_line(error)}") from error


def _quantize_with_recipe(
    tflite_path: Path, mode: str, calibration: np.ndarray, out_path: Path, int8_io: bool
) -> str:
    from ai_edge_quantizer import quantizer, recipe

    if mode == "fp16":
        quant_recipe = [
            {
                "regex": ".*",
                "operation": "*",
                "algorithm_key": "float_casting",
                "op_config": {
                    "weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT"},
                    "compute_precision": "FLOAT",
                    "explicit_dequantize": True,
                },
            }
        ]
        method = "ai-edge-quantizer float_casting (fp16 weights, float compute)"
    elif mode == "dynamic_int8":
        quant_recipe = recipe.dynamic_wi8_afp32()
        method = "ai-edge-quantizer recipe dynamic_wi8_afp32"
    else:
        quant_recipe = list(recipe.static_wi8_ai8())
        method = "ai-edge-quantizer recipe static_wi8_ai8"
        if int8_io:
            method += " (int8 I/O)"
        else:
            # Graph inputs/outputs left float: the quantizer adds QUANTIZE/DEQUANTIZE at the edges.
            quant_recipe += [
                {"regex": ".*", "operation": "INPUT", "algorithm_key": "no_quantize"},
                {"regex": ".*", "operation": "OUTPUT", "algorithm_key": "no_quantize"},
            ]
            method += " (float I/O)"

    engine = quantizer.Quantizer(str(tflite_path), quant_recipe)
    calibration_result = None
    if engine.need_calibration:
        calibration_result = _calibrate(quant_recipe, tflite_path, calibration)
    try:
        quantized = engine.quantize(calibration_result, enable_progress_report=False)
    except Exception as error:  # the quantizer raises plain ValueError/RuntimeError for unsupported graphs
        raise UserError(f"{tflite_path}: ai-edge-quantizer cannot make {mode}: {_one_line(error)}") from error
    out_path.unlink(missing_ok=True)
    quantized.export_model(str(out_path), overwrite=True)
    return method


def _calibrate(quant_recipe: list, tflite_path: Path, calibration: np.ndarray) -> dict:
    """Activation ranges (min/max over all samples) from real samples, one at a time.

    Quantizer.calibrate merges samples with a moving average, which shrinks ranges towards the
    typical sample: on digits_cnn it clipped the logits by 40% of their scale. The library's own
    Calibrator with its min_max_update keeps the true extremes (max error 0.2 instead of 5.7).
    """
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import calibrator, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    interpreter = Interpreter(model_path=str(tflite_path))
    signatures = interpreter.get_signature_list()
    if not signatures:
        raise UserError(f"{tflite_path}: has no signature, which int8 calibration needs; re-export it with one")
    signature_key, signature = next(iter(signatures.items()))
    from models.inputs import InputBatch, feed_arrays

    if isinstance(calibration, InputBatch):
        feed = {signature_key: _signature_feed(interpreter, signature_key, signature,
                                               calibration[:CALIBRATION_MAX_SAMPLES], feed_arrays)}
    else:
        if len(signature["inputs"]) != 1:
            raise UserError(f"{tflite_path}: has {len(signature['inputs'])} inputs; give one --input NAME:DTYPE:SHAPE for each")
        shape = tuple(interpreter.get_input_details()[0]["shape"])
        samples = to_model_layout(np.asarray(calibration[:CALIBRATION_MAX_SAMPLES], dtype=np.float32), shape, str(tflite_path))
        feed = {signature_key: [{signature["inputs"][0]: sample[None, ...]} for sample in samples]}
    # The calibrator's progress bar and its debug-mode interpreter warning are noise in bench's output.
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        manager = recipe_manager.RecipeManager()
        manager.load_quantization_recipe(quant_recipe)
        engine = calibrator.Calibrator(
            tflite_path.read_bytes(), num_threads=2, qsv_update_func=qsv_utils.min_max_update
        )
        engine.calibrate(feed, manager)
        return engine.get_model_qsvs()


def _signature_feed(interpreter, signature_key: str, signature: dict, samples, feed_arrays) -> list[dict]:
    """Calibration samples of several inputs, keyed by the signature's input names: the
    signature's inputs are matched to the graph's input tensors (the samples' order) by index."""
    runner_inputs = interpreter.get_signature_runner(signature_key).get_input_details()
    by_tensor = {detail["index"]: name for name, detail in runner_inputs.items()}
    names = [by_tensor[detail["index"]] for detail in interpreter.get_input_details()]
    feed = []
    for index in range(len(samples)):
        arrays = feed_arrays(samples[index:index + 1])
        feed.append({name: array.astype(runner_inputs[name]["dtype"]) for name, array in zip(names, arrays)})
    return feed


def _parity_samples(calibration, parity_inputs):
    from models.inputs import InputBatch

    if calibration is None or len(calibration) == 0:
        raise UserError("quantization needs real calibration samples; the dataset gave none")
    chosen = parity_inputs if parity_inputs is not None else calibration[:PARITY_DEFAULT_SAMPLES]
    if isinstance(chosen, InputBatch):
        return chosen
    return np.ascontiguousarray(chosen, dtype=np.float32)


def _check_mode(mode: str, int8_io: bool) -> None:
    check_knob("quant", mode, "quantization mode")
    if int8_io and not int8_io_allowed(mode):
        raise UserError(f"int8 I/O needs full-integer quantization (mode int8), not {mode!r}")


def _result(path: Path, mode: str, method: str, parity: dict) -> QuantizedResult:
    return QuantizedResult(
        path=path,
        mode=mode,
        method=method,
        parity=parity,
        size_bytes=path.stat().st_size,
        zip_bytes=zip_size(path),
    )


def _one_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text[:300] or type(error).__name__
