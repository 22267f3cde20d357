"""The optimization pipeline: model -> (prune -> fine-tune)* -> sparsify -> quantize -> .tflite,
then parity and accuracy, each variant a content-addressed artifact with its metadata.

    baseline torch model (trained, random-init or user weights)
      -> structured pruning, `steps` times, fine-tuning after each step   harness.optimize.prune / finetune
      -> unstructured magnitude pruning                                   harness.optimize.prune
      -> lottery-ticket rewind + retrain                                  harness.optimize.prune / finetune
      -> conversion and quantization, parity vs the torch model           harness.optimize.quantize
      -> accuracy of the .tflite with LiteRT on the held-out split        harness.optimize.evaluate

A `.tflite` source skips the torch stages: it is its own baseline and only quantization applies.
"""
from __future__ import annotations

import copy
import math
import importlib.metadata
import shutil
import time
import warnings
from dataclasses import asdict, is_dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.optimize.artifacts import Artifact, get_or_build, module_source_sha256, write_artifact
from harness.errors import UserError
from harness.progress import Line, Reporter, Task, as_reporter
from harness.optimize.variants import VariantSpec

RECIPE_FORMAT = 2
# Code whose edits change what a variant is; their source is part of the cache key.
PIPELINE_MODULES = (
    "harness.optimize.pipeline", "harness.optimize.prune", "harness.optimize.finetune",
    "harness.optimize.quantize", "harness.optimize.convert", "harness.optimize.evaluate",
)
_LIBRARIES = ("torch", "torchvision", "torch-pruning", "litert-torch", "ai-edge-litert",
              "ai-edge-quantizer", "numpy", "scikit-learn")
CALIBRATION_SAMPLES = 128
# How a source that is not a .tflite became the fp32 .tflite its variants start from.
EXPORTED_BY = {"keras": "Keras model.export(format='litert'), torch backend, parity-checked",
               "savedmodel": "TensorFlow TFLiteConverter (fp32)"}


def variant_recipe(source, data, spec: VariantSpec, seed: int = 0) -> dict:
    """Everything that decides the variant's bytes and figures; its hash is the cache key."""
    return {
        "format": RECIPE_FORMAT,
        "model": source.fingerprint(),
        "data": data.fingerprint(),
        "variant": spec.to_dict(),
        "seed": seed,
        "code": {m: module_source_sha256(m) for m in PIPELINE_MODULES},
        "versions": {lib: _version(lib) for lib in _LIBRARIES},
    }


def _version(library: str) -> str | None:
    try:
        return importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        return None


def model_label(source) -> str:
    """A short name for artifact files and reports (`resnet50`, `mymodels.net:build` -> `net-build`)."""
    name = source.name.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".tflite", ".keras", ".pt2", ".pt", ".pth"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if source.kind == "factory":
        module, _, factory = name.partition(":")
        return f"{module.rsplit('.', 1)[-1]}-{factory}"
    return name


class Pipeline:
    """Builds variants of one model on one dataset; remembers the baseline between variants."""

    def __init__(self, source, data, cache_dir: Path, *, seed: int = 0,
                 log: Line | Reporter | None = None):
        self.source, self.data, self.cache_dir, self.seed = source, data, Path(cache_dir), seed
        self.log = as_reporter(log)
        self._task: Task | None = None  # the variant being built: its stages are notes on it
        self._baseline_model = None
        self._torch_models: dict[VariantSpec, tuple[Any, dict]] = {}  # see _torch_stage
        self._baseline_artifact: Artifact | None = None
        self._baseline_predictions: np.ndarray | None = None

    # -- public ------------------------------------------------------------------------------
    def build(self, spec: VariantSpec) -> Artifact:
        if self.source.is_tflite_file and spec.needs_torch_changes:
            raise UserError(f"--variant {spec.name}: {self.source.name} is a .tflite file, so only "
                            "quant= variants apply (pruning and fine-tuning need the torch model)")
        if spec.is_baseline and self._baseline_artifact is not None:
            return self._baseline_artifact
        # Every variant names the baseline as its parent and is compared with it.
        baseline = None if spec.is_baseline else self.build(VariantSpec())
        recipe = variant_recipe(self.source, self.data, spec, self.seed)
        artifact = get_or_build(recipe, self.cache_dir,
                                lambda directory, key: self._build_tracked(directory, key, spec,
                                                                           recipe, baseline))
        how = "cached" if artifact.cached else f"built in {artifact.metadata.get('build_seconds', 0):.1f} s"
        self.log(f"artifact {artifact.name}: {artifact.size_bytes} bytes"
                 f"{_accuracy_text(artifact.metadata)}, {how}")
        if spec.is_baseline:
            self._baseline_artifact = artifact
        return artifact

    def build_all(self, specs: list[VariantSpec]) -> list[Artifact]:
        """Each spec's artifact; a lottery ticket's twin (the same pruning and retraining without
        the rewind) is built after it, so the two stand side by side."""
        wanted = list(specs)
        for spec in specs:
            if spec.lt and not self.source.is_tflite_file:
                twin = ticket_twin(spec, self.lottery_epochs(spec))
                if twin not in wanted:
                    wanted.insert(wanted.index(spec) + 1, twin)
        return [self.build(spec) for spec in wanted]

    # -- stages ------------------------------------------------------------------------------
    def _build_tracked(self, directory: Path, key: str, spec: VariantSpec, recipe: dict,
                       baseline: Artifact | None) -> None:
        """Build one variant as a task the user sees, each stage a note on it."""
        with self.log.task(f"build {model_label(self.source)}-{spec.name}") as self._task:
            try:
                self._build_into(directory, key, spec, recipe, baseline)
            finally:
                self._task = None

    def _stage(self, text: str) -> None:
        if self._task is not None:
            self._task.note(text)

    def _build_into(self, directory: Path, key: str, spec: VariantSpec, recipe: dict,
                    baseline: Artifact | None) -> None:
        started = time.perf_counter()
        label = model_label(self.source)
        out_path = directory / f"{label}-{spec.name}.tflite"
        metadata: dict[str, Any] = {
            "recipe": recipe, "recipe_key": key, "variant": spec.name,
            "parent": baseline.sha256 if baseline else None,
            "parent_name": baseline.name if baseline else None,
            "knobs": spec.to_dict(),
        }
        if self.source.is_tflite_file:
            self._quantize_existing(spec, out_path, metadata)
        else:
            model = self._torch_stage(spec, metadata)
            self._convert(model, spec, out_path, metadata)
        if self.source.inputs:  # what benchmark_model is told of them (--input_layer_value_range)
            metadata["inputs"] = tflite_inputs(out_path, self.source.inputs)
        self._verify_accuracy(out_path, spec, baseline, metadata)
        metadata["build_seconds"] = time.perf_counter() - started
        write_artifact(directory, name=f"{label}-{spec.name}", model_name=label,
                       variant=spec.name, tflite_path=out_path, metadata=metadata)

    def torch_baseline_top1(self, samples: int) -> np.ndarray | None:
        """The torch baseline's top-1 on the first `samples` test samples (None for a .tflite
        given as the model: there is no torch model)."""
        if self.source.is_tflite_file:
            return None
        import torch

        from models.inputs import torch_inputs

        with torch.no_grad():
            return self.baseline_model()(*torch_inputs(self.data.x_test[:samples])).argmax(1).numpy()

    def baseline_model(self):
        if self._baseline_model is None:
            self._stage(f"loading {self.source.name}"
                        + (" (training it)" if getattr(self.source, "train_epochs", None) else ""))
            self._baseline_model = self.source.load_torch(self.seed).eval()
        return self._baseline_model

    def _torch_stage(self, spec: VariantSpec, metadata: dict):
        """The pruned / fine-tuned torch model of `spec`, made once per process: variants that
        differ only in quantization (`pruned50-ft10` and `pruned50-ft10-int8`) share it, as
        they would share the same weights anyway (the stage is deterministic per seed)."""
        key = spec.torch_stage
        if key not in self._torch_models:
            stage_metadata: dict[str, Any] = {}
            model = self._optimize_torch(spec, stage_metadata)
            self._torch_models[key] = (model, stage_metadata)
        model, stage_metadata = self._torch_models[key]
        metadata.update(copy.deepcopy(stage_metadata))
        return copy.deepcopy(model)

    def _optimize_torch(self, spec: VariantSpec, metadata: dict):
        import torch

        from harness.optimize.attention import heads_per_layer
        from harness.optimize.finetune import FineTuneSettings, fine_tune, torch_top1
        from harness.optimize.profile import count_params_macs
        from harness.optimize.prune import (PruneSettings, masks_held, rewind_weights,
                                            sparsity_masks, structured_prune, unstructured_prune)

        baseline = self.baseline_model()
        model = copy.deepcopy(baseline)
        example = self.source.example_inputs(self.seed)
        example = example if len(example) > 1 else example[0]
        params, macs = count_params_macs(model, example)
        metadata["baseline_params"], metadata["baseline_macs"] = params, macs
        teacher = baseline if spec.kd else None
        early_state = copy.deepcopy(self._early_state()) if spec.lt else None
        evaluate = self._torch_evaluator(torch_top1)

        def tune(m, epochs: float, what: str) -> dict | None:
            if epochs <= 0:
                return None
            if self.data.x_train is None and teacher is None:
                raise UserError(f"--variant {spec.name}: fine-tuning needs labelled training data "
                                f"(--data DIR) or kd=1 to learn from the unpruned model")
            metric = "top-1" if self.data.y_test is not None else "agreement"
            with self.log.task(f"  {what}", total=math.ceil(epochs), unit="epochs") as task:
                report = fine_tune(
                    m, self.data, FineTuneSettings(epochs=epochs, lr=spec.lr, distill=spec.kd,
                                                   seed=self.seed), teacher=teacher,
                    on_epoch=lambda epoch, total, val: task.advance(
                        note=f"epoch {epoch}/{total}: val {metric} {val:.1%}"))
            return _plain(report)

        if spec.structured:
            per_step = spec.ft / spec.steps
            self._stage(f"pruning {_structured_words(spec)} ({spec.importance}, "
                        f"{spec.steps} step{'s' if spec.steps > 1 else ''})")
            report_before = {"params": params, "macs": macs}
            report = structured_prune(
                model, example,
                PruneSettings(ratio=spec.prune, importance=spec.importance, scope=spec.scope,
                              round_to=spec.round_to, iterative_steps=spec.steps, seed=self.seed,
                              heads=spec.heads, head_dim=spec.head_dim, mlp=spec.mlp),
                calibration=self._calibration_batches() if spec.importance == "taylor" else None,
                fine_tune_step=(lambda m: tune(m, per_step, "fine-tuning after the pruning step")) if per_step > 0 and not spec.lt else None,
                evaluate=evaluate, model_name=self.source.name,
                on_step=lambda step: self._stage(_prune_step_note(spec, step, report_before)))
            metadata["prune"] = _plain(report)
        if spec.sparsity is not None:
            metadata["sparsity"] = unstructured_prune(model, spec.sparsity)
        if spec.lt:
            # The ticket: the pruned structure and the sparsity mask, with the surviving weights
            # rewound, retrained with the mask held (Frankle & Carbin's rewinding).
            masks = sparsity_masks(model) if spec.sparsity is not None else None
            rewind_weights(model, early_state, masks)
            epochs = self.lottery_epochs(spec)
            with masks_held(model, masks):
                metadata["fine_tune"] = tune(model, epochs, "retraining the lottery ticket "
                                             + ("(mask held)" if masks else "(pruned structure)"))
            metadata["lottery_ticket"] = {
                "rewind_point": self.source.rewind_point(self.seed), "retrain_epochs": epochs,
                "mask_held": masks is not None,
                "compared_with": ticket_twin(spec, epochs).name}
            if spec.sparsity is not None:
                metadata["sparsity"] = _sparsity_of(model)
        elif spec.ft > 0 and not spec.structured:
            metadata["fine_tune"] = tune(model, spec.ft, "fine-tuning")
        if spec.sparsity is not None and spec.ft > 0 and not spec.lt:
            # Fine-tuning moves pruned weights off zero; sparsify again so the sparsity holds.
            metadata["sparsity"] = unstructured_prune(model, spec.sparsity)
        params, macs = count_params_macs(model, example)
        metadata["params"], metadata["macs"] = params, macs
        heads = heads_per_layer(model)
        if heads:  # a transformer: what heads= left in each attention layer
            metadata["heads_per_layer"] = [row["heads"] for row in heads]
        if evaluate is not None:
            metadata["torch_accuracy"] = evaluate(model)
        return model.eval()

    def lottery_epochs(self, spec: VariantSpec) -> float:
        """A ticket's retraining: ft= when given, else as long as the baseline's own training."""
        epochs = spec.ft or self.source.original_training_epochs
        if not epochs:
            raise UserError(f"--variant {spec.name}: a lottery ticket retrains its rewound weights, and "
                            f"bench did not train {self.source.name}; add ft=EPOCHS")
        return float(epochs)

    def _early_state(self) -> dict:
        """Early-training weights for lottery-ticket rewinding (see ModelSource.load_torch)."""
        return self.source.load_torch(self.seed, trained=False).state_dict()

    def _torch_evaluator(self, torch_top1):
        data = self.data
        if data.y_test is not None:
            return lambda m: torch_top1(m, data.x_test, data.y_test)
        baseline_pred = self._torch_baseline_predictions()
        return lambda m: torch_top1(m, data.x_test, baseline_pred)  # agreement with the baseline

    def _torch_baseline_predictions(self) -> np.ndarray:
        return self.torch_baseline_top1(len(self.data.x_test))

    def _calibration_batches(self, batch_size: int = 32, batches: int = 4):
        import torch

        x = self.data.x_train if self.data.x_train is not None else self.data.x_test
        y = self.data.y_train if self.data.y_train is not None else None
        if y is None:  # no labels: the unpruned model's own decisions on these samples
            from models.inputs import torch_inputs

            with torch.no_grad():
                y = self.baseline_model()(*torch_inputs(x[:batch_size * batches])).argmax(1).numpy()
        from models.inputs import torch_inputs

        out = []
        for i in range(batches):
            xb = torch_inputs(x[i * batch_size:(i + 1) * batch_size])
            xb = xb if len(xb) > 1 else xb[0]
            if len(x[i * batch_size:(i + 1) * batch_size]) == 0:
                break
            yb = torch.from_numpy(np.asarray(y[i * batch_size:(i + 1) * batch_size])).long()
            out.append((xb, yb))
        return out

    def _calibration_inputs(self) -> np.ndarray:
        x = self.data.x_train if self.data.x_train is not None else self.data.x_test
        rng = np.random.default_rng(self.seed)
        index = rng.permutation(len(x))[:CALIBRATION_SAMPLES]
        return x[np.sort(index)]

    def _convert(self, model, spec: VariantSpec, out_path: Path, metadata: dict) -> None:
        from harness.optimize.quantize import quantize_torch, zip_size

        self._stage(_convert_note(spec))
        with warnings.catch_warnings():
            # ai-edge-quantizer's calibration keeps all tensors on purpose; its warning says so.
            warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
            result = quantize_torch(model, spec.quant, self._calibration_inputs(), out_path,
                                    int8_io=spec.io == "int8", parity_inputs=self.data.x_test[:64])
        metadata["quantization"] = {"mode": result.mode, "method": result.method}
        metadata["parity"] = result.parity
        metadata["size_bytes"] = out_path.stat().st_size
        metadata["zip_bytes"] = zip_size(out_path)

    def _quantize_existing(self, spec: VariantSpec, out_path: Path, metadata: dict) -> None:
        from harness.optimize.quantize import quantize_tflite, zip_size

        if spec.quant == "fp32":
            shutil.copyfile(self.source.tflite_path, out_path)
            metadata["quantization"] = {"mode": "fp32", "method": EXPORTED_BY.get(self.source.kind,
                                                                                "the given .tflite, unchanged")}
        elif self.source.kind == "savedmodel" and spec.quant == "int8":
            self._saved_model_int8(spec, out_path, metadata)
        else:
            self._stage(_convert_note(spec))
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
                result = quantize_tflite(self.source.tflite_path, spec.quant,
                                         self._calibration_inputs(), out_path,
                                         int8_io=spec.io == "int8",
                                         parity_inputs=self.data.x_test[:64])
            metadata["quantization"] = {"mode": result.mode, "method": result.method}
            metadata["parity"] = result.parity
        metadata["size_bytes"] = out_path.stat().st_size
        metadata["zip_bytes"] = zip_size(out_path)

    def _saved_model_int8(self, spec: VariantSpec, out_path: Path, metadata: dict) -> None:
        """TensorFlow's own full-integer path: TFLiteConverter with a representative dataset."""
        from harness.optimize.convert import parity_figures
        from harness.optimize.evaluate import tflite_predict, to_model_layout
        from models.tensorflow_models import convert_saved_model

        self._stage("converting with TFLiteConverter, int8 from a representative dataset of up to "
                    f"{CALIBRATION_SAMPLES} samples, checking parity")
        samples = to_model_layout(self._calibration_inputs(), self.source.input_shape, self.source.name)
        method, _ = convert_saved_model(self.source.model_path, out_path, calibration=samples,
                                        int8_io=spec.io == "int8")
        checks = self.data.x_test[:64]
        parity = parity_figures(tflite_predict(self.source.tflite_path, checks), tflite_predict(out_path, checks))
        metadata["quantization"] = {"mode": "int8", "method": method}
        metadata["parity"] = {**parity, "reference": "fp32 tflite"}

    def _verify_accuracy(self, path: Path, spec: VariantSpec, baseline: Artifact | None,
                         metadata: dict) -> None:
        from harness.optimize.evaluate import TensorAllocationError, evaluate_tflite, tflite_predict

        baseline_pred = None
        self._stage(f"accuracy of the .tflite on {len(self.data.x_test)} {self.data.name} samples")
        try:
            if baseline is not None:
                if self._baseline_predictions is None:
                    self._baseline_predictions = tflite_predict(baseline.path,
                                                                self.data.x_test).argmax(1)
                baseline_pred = self._baseline_predictions
            report = evaluate_tflite(path, self.data, baseline_predictions=baseline_pred)
        except TensorAllocationError as exc:
            if not self.source.is_tflite_file:
                raise  # bench converted it: its own fault, not the user's model
            # A given .tflite that no runtime can allocate: built without accuracy; each
            # device's benchmark_model then records its own failure for it.
            metadata["accuracy"] = {"error": str(exc), "dataset": self.data.name}
            self.log(f"{spec.name}: accuracy not measured: {exc}")
            return
        if baseline is None:
            self._baseline_predictions = np.asarray(report.predictions)
        accuracy = {k: v for k, v in _plain(report).items() if k != "predictions"}
        accuracy["dataset"] = self.data.name
        if baseline is not None:
            accuracy["baseline_top1"] = (baseline.metadata.get("accuracy") or {}).get("top1")
        metadata["accuracy"] = accuracy


def tflite_inputs(path: Path, specs) -> list[dict]:
    """The model's inputs as the .tflite names them (benchmark_model's --input_layer names),
    in its input order, with the dtypes, shapes and value ranges of the source's specs."""
    from models.user_models import tflite_input_specs

    own = tflite_input_specs(path)
    return [{**spec.to_dict(), "name": tensor.name, "source_name": spec.name}
            for tensor, spec in zip(own, specs)]


def _structured_words(spec: VariantSpec) -> str:
    words = [f"{value:.0%} of {what}" for value, what in
             ((spec.prune, "channels"), (spec.heads, "attention heads"),
              (spec.head_dim, "each head's dimensions"), (spec.mlp, "MLP hidden channels"))
             if value is not None]
    return ", ".join(words)


def ticket_twin(spec: VariantSpec, epochs: float) -> VariantSpec:
    """What a lottery ticket is judged against: the same recipe without the rewind, fine-tuned
    for the epochs the ticket retrains."""
    return replace(spec, lt=False, ft=float(epochs))


def _sparsity_of(model) -> dict:
    from harness.optimize.prune import sparsity_masks

    masks = sparsity_masks(model).values()
    total = sum(int(m.numel()) for m in masks)
    kept = sum(int(m.sum()) for m in masks)
    return {"sparsity": (total - kept) / total, "zeros": total - kept, "params": total}


def _accuracy_text(metadata: dict) -> str:
    accuracy = metadata.get("accuracy") or {}
    if accuracy.get("top1") is not None:
        return f", top-1 {accuracy['top1']:.1%}"
    if accuracy.get("agreement") is not None:
        return f", agreement with the baseline {accuracy['agreement']:.1%}"
    return ""


def _convert_note(spec: VariantSpec) -> str:
    if spec.quant in ("int8", "dynamic_int8"):
        return (f"converting to .tflite, quantizing {spec.quant} (calibrated on up to "
                f"{CALIBRATION_SAMPLES} samples), checking parity")
    return f"converting to .tflite ({spec.quant}), checking parity"


def _prune_step_note(spec: VariantSpec, step: dict, before: dict) -> str:
    accuracy = step.get("accuracy_after_prune")
    return (f"pruning step {step['step']}/{step['steps']}: params {before['params']} -> "
            f"{step['params']}, MACs {before['macs']} -> {step['macs']}"
            + (f", accuracy before fine-tuning {accuracy:.1%}" if accuracy is not None else ""))


def _plain(obj) -> dict:
    """A dataclass report as JSON-able data."""
    if obj is None:
        return None
    data = asdict(obj) if is_dataclass(obj) else dict(obj)
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in data.items()}
