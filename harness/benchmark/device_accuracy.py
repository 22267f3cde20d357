"""Accuracy on the device: the phone's own outputs for real samples, judged against the host.

The classic `benchmark_model` reads a model input from a file (`--input_layer`,
`--input_layer_shape`, `--input_layer_value_files`: raw bytes, exactly the tensor's size) and
writes the outputs of its last invocation (`--output_filepath`: every output tensor's raw bytes,
in the interpreter's output order, no header). So the tool bench already pushes can say what a
delegate computes on the phone, sample by sample:

1. on the host (`plan_device_accuracy`): the first N evaluation samples in the model's input
   layout, dtype and quantization, one file per launch (content-addressed, so pushed once per
   device); the host LiteRT CPU outputs of the same file on the same inputs; the labels and the
   torch baseline's top-1;
2. on the device (harness.benchmark.runner): one launch per file (`--num_runs=1`, no warm-up),
   the output file pulled;
3. here again (`decode_outputs`, `judge`): the outputs decoded with the output tensors' dtype,
   shape and quantization, and judged against the labels (top-1/top-5 on the device), the host
   run (max abs and relative difference, cosine similarity, top-1 agreement) and the baseline.

A launch carries one sample, or a batch where the model's batch dimension can be resized and
computes the same as sample by sample on the host.
"""
from __future__ import annotations

import hashlib
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Flagged when one sample's outputs point elsewhere than the host's (besides a top-1 agreement
# below [run] accuracy_min_agreement): a fully delegated graph that mis-computes.
MIN_COSINE = 0.99
SAMPLES_DIR = "samples"   # under the run's remote dir: the sample files, named by content
OUTPUTS_DIR = "outputs"   # the files the launches write, removed before each launch
# The most samples one launch carries where the model takes a batch: the phone holds a batch's
# activations at once, and one crash loses all of them.
MAX_BATCH = 32


@dataclass
class OutputSpec:
    dtype: str
    shape: tuple[int, ...]
    scale: float = 0.0
    zero_point: int = 0

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass
class SampleLaunch:
    """One launch's input file: the samples it holds (their indices among the N)."""

    samples: list[int]
    local: Path
    sha256: str
    remote: str


@dataclass
class AccuracyPlan:
    """What the device is asked for one artifact, and what the host answered to the same."""

    artifact_sha256: str
    variant: str
    input_name: str
    input_shape: tuple[int, ...]     # as the launches give it (--input_layer_shape)
    outputs: list[OutputSpec]        # in the interpreter's output order, at input_shape
    launches: list[SampleLaunch]
    host_scores: np.ndarray          # (N, classes): the host LiteRT CPU run's first output
    labels: np.ndarray | None
    baseline_predictions: np.ndarray | None  # the torch baseline's top-1 (None without torch)
    unavailable: str | None = None   # why this artifact cannot be judged on a device

    @property
    def samples(self) -> int:
        return sum(len(launch.samples) for launch in self.launches)

    @property
    def output_bytes(self) -> int:
        return sum(o.nbytes for o in self.outputs)


def escape_layer_name(name: str) -> str:
    """A name or path as --input_layer_value_files needs it: `:` written `::`
    (SplitInputLayerNameAndValueFile); `,` separates items, so it cannot be in either."""
    return name.replace(":", "::")


def sample_flags(plan: AccuracyPlan, launch: SampleLaunch, output_remote: str) -> list[str]:
    """The flags that feed one launch its samples and have it write its outputs."""
    shape = ",".join(str(d) for d in plan.input_shape)
    return [f"--input_layer={plan.input_name}", f"--input_layer_shape={shape}",
            "--input_layer_value_files="
            f"{escape_layer_name(plan.input_name)}:{escape_layer_name(launch.remote)}",
            f"--output_filepath={output_remote}"]


def output_remote_path(remote_dir: str, plan: AccuracyPlan, delegate: str | None,
                       launch_index: int) -> str:
    return (f"{remote_dir}/{OUTPUTS_DIR}/{plan.artifact_sha256[:16]}-{delegate or 'default'}-"
            f"{launch_index}.bin")


def removing_then(command: str, output_remote: str) -> str:
    """The launch's shell command, after removing an output file an earlier launch left: a
    missing output must not be read as a stale one."""
    return f"rm -f {shlex.quote(output_remote)}; {command}"


# -- on the host ---------------------------------------------------------------------------------
def plan_device_accuracy(artifact, x_nchw: np.ndarray, labels: np.ndarray | None,
                         baseline_predictions: np.ndarray | None, samples: int,
                         cache_dir: Path, remote_dir: str, per_sample: bool = False) -> AccuracyPlan:
    """The plan for one artifact over the first `samples` of `x_nchw`: all of them in one
    launch where the model's batch dimension resizes to N and the host computes the same that
    way, else (and with `per_sample`) one launch per sample."""
    from ai_edge_litert.interpreter import Interpreter

    from harness.optimize.convert import to_input_dtype
    from harness.optimize.evaluate import to_model_layout

    from models.inputs import InputBatch

    if isinstance(x_nchw, InputBatch):  # token models: host accuracy only, said per variant
        plan = AccuracyPlan(artifact.sha256, artifact.variant, "", (), [], [], np.zeros((0, 0)), None, None)
        plan.unavailable = (f"the model has {len(x_nchw.names)} inputs ({', '.join(x_nchw.names)}); accuracy on "
                            "the device reads one input file per launch, so it is judged on the host only")
        return plan
    x = np.asarray(x_nchw[:samples], dtype=np.float32)
    n = len(x)
    labels = None if labels is None else np.asarray(labels[:n])
    baseline_predictions = (None if baseline_predictions is None
                            else np.asarray(baseline_predictions[:n]))
    plan = AccuracyPlan(artifact.sha256, artifact.variant, "", (), [], [], np.zeros((0, 0)),
                        labels, baseline_predictions)
    if n == 0:
        plan.unavailable = "the evaluation data has no test samples"
        return plan
    try:
        interpreter = Interpreter(model_path=str(artifact.path))
        inputs = interpreter.get_input_details()
    except (RuntimeError, ValueError) as exc:
        plan.unavailable = f"LiteRT on the host cannot load it ({' '.join(str(exc).split())})"
        return plan
    if len(inputs) != 1:
        plan.unavailable = f"the model has {len(inputs)} inputs; accuracy needs one image input"
        return plan
    detail = inputs[0]
    if "," in detail["name"]:
        plan.unavailable = (f"its input is named {detail['name']!r}: benchmark_model's "
                            "--input_layer cannot name a tensor with a comma")
        return plan
    one_shape = tuple(int(d) for d in detail["shape"])
    data = to_input_dtype(to_model_layout(x, one_shape, artifact.variant), detail)
    try:
        outputs = _host_outputs(str(artifact.path), data, 1)
    except (RuntimeError, ValueError) as exc:  # a given .tflite the host cannot allocate
        plan.unavailable = (f"LiteRT on the host cannot run it, so nothing to judge the device "
                            f"by ({' '.join(str(exc).split())})")
        return plan
    batch = 1
    size = batch_size(n)
    if not per_sample and size > 1 and one_shape and one_shape[0] == 1:
        batched = _same_when_batched(str(artifact.path), data, outputs, size)
        if batched is not None:
            batch, outputs = size, batched
    folder = Path(cache_dir) / "device-samples"
    folder.mkdir(parents=True, exist_ok=True)
    plan.launches = [_sample_file(data[start:start + batch], list(range(start, start + batch)),
                                  folder, remote_dir) for start in range(0, n, batch)]
    plan.input_name = detail["name"]
    plan.input_shape = (batch,) + one_shape[1:] if batch > 1 else one_shape
    plan.outputs = _output_specs(interpreter, outputs[0])
    plan.host_scores = np.concatenate([dequantize(launch[0], plan.outputs[0]).reshape(
        batch, -1) for launch in outputs])
    return plan


def batch_size(n: int) -> int:
    """Samples per launch where the model takes a batch: the largest divisor of N up to
    MAX_BATCH (every launch then has one input shape); 1 when only 1 divides."""
    return next((d for d in range(min(n, MAX_BATCH), 1, -1) if n % d == 0), 1)


def _sample_file(data: np.ndarray, samples: list[int], folder: Path,
                 remote_dir: str) -> SampleLaunch:
    """The launch's input file, named by its content (the same samples in the same dtype are
    one file, pushed once per device)."""
    raw = np.ascontiguousarray(data).tobytes()
    sha = hashlib.sha256(raw).hexdigest()
    local = folder / f"{sha[:32]}.bin"
    if not local.exists() or local.stat().st_size != len(raw):
        staged = local.with_name(f".{local.name}.{os.getpid()}.tmp")
        staged.write_bytes(raw)
        os.replace(staged, local)
    return SampleLaunch(samples, local, sha, f"{remote_dir}/{SAMPLES_DIR}/{sha[:32]}.bin")


def _host_outputs(path: str, data: np.ndarray, batch: int) -> list[list[np.ndarray]]:
    """The host LiteRT CPU run (the runtime's default XNNPACK, as the device's default): per
    launch of `batch` samples, every output tensor's raw values in output order."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    detail = interpreter.get_input_details()[0]
    if batch > 1:
        interpreter.resize_tensor_input(detail["index"], [batch] + list(data.shape[1:]))
    interpreter.allocate_tensors()
    results = []
    for start in range(0, len(data), batch):
        chunk = data[start:start + batch]
        if len(chunk) < batch:
            break
        interpreter.set_tensor(detail["index"], chunk)
        interpreter.invoke()
        results.append([np.array(interpreter.get_tensor(o["index"]))
                        for o in interpreter.get_output_details()])
    return results


def _same_when_batched(path: str, data: np.ndarray, per_sample: list, batch: int) -> list | None:
    """The host outputs of the samples `batch` at a time, where the model resizes to that
    batch and computes the same (every output within 1e-5 relative of sample by sample); else
    None. Models converted with a batch of 1 often hold reshapes that do not follow (XNNPACK
    then refuses to reshape)."""
    try:
        batched = _host_outputs(path, data, batch)
    except (RuntimeError, ValueError):
        return None
    for i in range(len(per_sample[0])):
        one = np.concatenate([launch[i] for launch in per_sample]).astype(np.float64)
        together = np.concatenate([launch[i] for launch in batched]).astype(np.float64)
        if together.shape != one.shape:
            return None
        scale = max(float(np.max(np.abs(one))), 1e-12)
        if float(np.max(np.abs(together - one))) / scale > 1e-5:
            return None
    return batched


def _output_specs(interpreter, one_launch: list[np.ndarray]) -> list[OutputSpec]:
    """The output tensors in the interpreter's order, with the shapes the host's run of one
    launch gave them (a batch's, where the launch carries one)."""
    specs = []
    for o, values in zip(interpreter.get_output_details(), one_launch):
        scale, zero_point = o.get("quantization", (0.0, 0))
        specs.append(OutputSpec(np.dtype(values.dtype).name, tuple(int(d) for d in values.shape),
                                float(scale), int(zero_point)))
    return specs


def dequantize(values: np.ndarray, spec: OutputSpec) -> np.ndarray:
    from harness.optimize.convert import to_float

    return to_float(values, {"dtype": np.dtype(spec.dtype),
                             "quantization": (spec.scale, spec.zero_point)})


# -- what the device wrote -------------------------------------------------------------------------
class OutputFileError(Exception):
    """The output file of a launch is missing or is not what the model's outputs make."""


def decode_outputs(raw: bytes | None, plan: AccuracyPlan, launch: SampleLaunch) -> np.ndarray:
    """The launch's first output, dequantized, one row per sample; OutputFileError naming
    what is wrong with the file."""
    expected = plan.output_bytes
    if raw is None:
        raise OutputFileError("no output file (benchmark_model wrote none)")
    if len(raw) != expected:
        shown = f"more than {expected}" if len(raw) > expected else str(len(raw))
        raise OutputFileError(f"output file of {shown} bytes, expected {expected} "
                              f"({' + '.join(str(o.nbytes) for o in plan.outputs)} for "
                              f"{len(plan.outputs)} output tensor(s))")
    first = plan.outputs[0]
    values = np.frombuffer(raw[:first.nbytes], dtype=np.dtype(first.dtype))
    return dequantize(values, first).reshape(len(launch.samples), -1)


# -- judging -------------------------------------------------------------------------------------
@dataclass
class DeviceAccuracy:
    """The figures of one (variant, device, delegate); None where nothing says."""

    samples: int = 0                       # judged
    samples_failed: int = 0
    device_top1: float | None = None
    device_top5: float | None = None
    host_top1: float | None = None         # the host LiteRT run, on the same samples
    host_agreement: float | None = None    # share of samples with the host's top-1
    host_max_abs_diff: float | None = None
    host_max_rel_diff: float | None = None  # max abs diff / the host's largest output
    host_cosine_min: float | None = None   # the least similar sample
    baseline_agreement: float | None = None  # with the torch baseline's top-1
    flag: str | None = None                # why the delegate is flagged, or None
    failures: list[dict] = field(default_factory=list)  # {"samples": [...], "error"} per launch


def judge(plan: AccuracyPlan, device_scores: dict[int, np.ndarray],
          failures: list[dict], min_agreement: float,
          min_cosine: float = MIN_COSINE) -> DeviceAccuracy:
    """Figures over the samples the device answered (`device_scores`: sample index -> row)."""
    from harness.optimize.convert import parity_figures
    from harness.optimize.evaluate import TOP5_MIN_CLASSES

    result = DeviceAccuracy(samples=len(device_scores),
                            samples_failed=sum(len(f["samples"]) for f in failures),
                            failures=failures)
    if not device_scores:
        return result
    index = np.array(sorted(device_scores))
    device = np.stack([device_scores[i] for i in index]).astype(np.float64)
    host = plan.host_scores[index].astype(np.float64)
    device_pred = device.argmax(axis=1)
    if plan.labels is not None:
        labels = plan.labels[index]
        result.device_top1 = float(np.mean(device_pred == labels))
        result.host_top1 = float(np.mean(host.argmax(axis=1) == labels))
        if device.shape[1] >= TOP5_MIN_CLASSES:
            best5 = np.argsort(-device, axis=1)[:, :5]
            result.device_top5 = float(np.mean(np.any(best5 == labels[:, None], axis=1)))
    parity = parity_figures(host, device)
    result.host_agreement = parity["top1_agreement"]
    result.host_max_abs_diff = parity["max_abs_diff"]
    result.host_max_rel_diff = parity["relative_diff"]
    result.host_cosine_min = parity["cosine_similarity"]
    if plan.baseline_predictions is not None:
        result.baseline_agreement = float(np.mean(device_pred == plan.baseline_predictions[index]))
    reasons = []
    if result.host_agreement < min_agreement:
        reasons.append(f"top-1 agrees with the host on {result.host_agreement:.0%} of samples "
                       f"(< {min_agreement:.0%})")
    if result.host_cosine_min < min_cosine:
        reasons.append(f"a sample's outputs have cosine {result.host_cosine_min:.3f} to the "
                       f"host's (< {min_cosine:g})")
    result.flag = "; ".join(reasons) or None
    return result

