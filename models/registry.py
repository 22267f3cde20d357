"""Model name -> how to build it. Importing this module stays cheap: torch loads on first build.

`resolve_model` turns whatever the user typed after --model (a built-in name, `pkg.mod:factory`,
a TorchScript / torch.export file or a .tflite) into a `ModelSource`: its input shape, class
count and a fingerprint of everything that decides the model, so the artifact cache can key on it.
"""

from __future__ import annotations

import copy
import importlib.metadata
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models import user_models
from models.errors import ModelInputError
from models.inputs import InputSpec
from models.hashing import module_source_sha256, sha256_file
from models.torchvision_models import IMAGENET_INPUT_SHAPE, IMAGENET_NUM_CLASSES, TORCHVISION_ARCHITECTURES

if TYPE_CHECKING:
    from torch import nn



DIGITS_MODEL_NAME = "digits_cnn"
BUILTIN_MODEL_NAMES: tuple[str, ...] = (DIGITS_MODEL_NAME, *TORCHVISION_ARCHITECTURES)
MODEL_KINDS = ("builtin", "torchvision", "factory", "torchscript", "export", "tflite", "keras", "savedmodel")
_DIGITS_INPUT_SHAPE = (1, 1, 8, 8)
_DIGITS_NUM_CLASSES = 10
_DIGITS_DEFAULT_EPOCHS = 20
_EARLY_EPOCHS = 1  # "early-training" weights for lottery-ticket rewinding
_OTHER_MODEL_FORMS = "module.path:factory, a TorchScript (.pt) / torch.export (.pt2) file, or a .tflite file"


def builtin_model_descriptions() -> dict[str, str]:
    """Built-in name -> one line for help texts and `bench models`."""
    return {
        DIGITS_MODEL_NAME: "2-conv CNN (32/64 channels) on scikit-learn's 8x8 handwritten digits (10 classes, ~99% top-1)",
        **{name: arch.description for name, arch in TORCHVISION_ARCHITECTURES.items()},
    }


@dataclass
class ModelSource:
    """A model the pipeline can load, convert, prune and fingerprint, whatever its origin."""

    name: str  # "digits_cnn", "resnet50", "pkg.mod:factory", "path/to/model.tflite", "model.pt2"
    kind: str  # one of MODEL_KINDS
    # One inference, batch 1: NCHW for torch models; for a .tflite its own input shape (may be NHWC).
    input_shape: tuple[int, ...]
    num_classes: int | None  # width of the (1, K) output; None when the output is not a class vector
    tflite_path: Path | None = None  # kind "tflite": the file, benchmarked as is
    input_layout: str = "NCHW"  # "NCHW" | "NHWC" | "other"; NHWC only for third-party .tflite files
    weights_path: Path | None = None  # a state dict that replaces random init / training
    model_path: Path | None = None  # kind "torchscript" / "export": the saved file
    train_epochs: int | None = None  # digits_cnn: epochs of its deterministic training
    # Several or non-float inputs (models.inputs), in the order forward takes them; empty: one
    # float32 input of input_shape. Factories are then called by name and give their first tensor.
    inputs: tuple[InputSpec, ...] = ()
    keras_version: str | None = None  # kind "keras" / "savedmodel": the Keras / TensorFlow that exported tflite_path

    @property
    def is_tflite_file(self) -> bool:
        """Measured and quantized as a .tflite, with no PyTorch model to prune (Keras files are
        exported to one first)."""
        return self.kind in ("tflite", "keras", "savedmodel")

    @property
    def input_specs(self) -> tuple[InputSpec, ...]:
        """Every input, the plain image input included (named `input`)."""
        return self.inputs or (InputSpec("input", "float32", tuple(self.input_shape)),)

    def example_inputs(self, seed: int = 0) -> tuple:
        """One sample as torch tensors: zeros for one float input, else generated tokens."""
        import torch

        from models.inputs import example_inputs

        return example_inputs(self.inputs, seed) if self.inputs else (torch.zeros(self.input_shape),)

    def load_torch(self, seed: int = 0, *, trained: bool = True) -> "nn.Module":
        """A fresh nn.Module in eval mode (callers may prune it freely).

        digits_cnn: trained deterministically from `seed` (trained once per process, then copied);
        torchvision and factories: random init from `seed` unless weights were given;
        saved files: a torch.export program as saved, TorchScript turned into one (so it
        converts); both run as frozen in the saved mode. ModelInputError for a .tflite.
        trained=False: the same model early in training, what lottery-ticket rewinding goes back
        to: digits_cnn after its first epoch (same seed); torchvision and factory models at their
        seeded initialisation (bench does not train them), never the given weights.
        """
        if self.is_tflite_file:
            raise ModelInputError(
                f"model {self.name!r} is a {'Keras' if self.kind == 'keras' else '.tflite'} file with no PyTorch model; it can be benchmarked and "
                "quantized, but pruning and fine-tuning need a PyTorch model"
            )
        if self.kind == "builtin":
            epochs = (self.train_epochs or _DIGITS_DEFAULT_EPOCHS) if trained else _EARLY_EPOCHS
            model = _digits_model(seed, epochs, self.weights_path if trained else None)
        elif self.kind == "torchvision":
            from models.torchvision_models import build_torchvision

            model = build_torchvision(self.name, num_classes=self.num_classes or IMAGENET_NUM_CLASSES, seed=seed)
        elif self.kind == "factory":
            model = user_models.build_factory_model(self.name, seed=seed)
            if self.inputs:
                if self.weights_path is not None and trained:
                    _load_weights_into(model, self.name, self.weights_path)
                return user_models.named_inputs_model(model, [spec.name for spec in self.inputs]).eval()
        elif self.kind == "torchscript":
            return user_models.load_torchscript(self.model_path, self.input_shape)
        elif self.kind == "export":
            return user_models.load_exported(self.model_path)
        else:
            raise ValueError(f"unknown model kind {self.kind!r}")
        if self.weights_path is not None and self.kind != "builtin" and trained:
            _load_weights_into(model, self.name, self.weights_path)
        return model.eval()

    def rewind_point(self, seed: int = 0) -> str:
        """Where a lottery ticket's weights go back to: what load_torch(trained=False) gives."""
        if self.kind == "builtin":
            return (f"after epoch {_EARLY_EPOCHS} of {self.train_epochs or _DIGITS_DEFAULT_EPOCHS} "
                    f"of its training (seed {seed})")
        return f"its initialisation (seed {seed}; bench does not train {self.kind} models)"

    @property
    def original_training_epochs(self) -> int | None:
        """How long bench trained the baseline: a lottery ticket retrains as long by default.
        None where bench did not train it (random init or the user's weights)."""
        if self.kind == "builtin" and self.weights_path is None:
            return self.train_epochs or _DIGITS_DEFAULT_EPOCHS
        return None

    def fingerprint(self, seed: int = 0) -> dict[str, Any]:
        """Everything that decides the model's weights and graph, JSON-able; cheap (no torch).

        The seed is included only where it decides the weights (training or random init), so
        a .tflite or a state dict is not rebuilt per seed.
        """
        document: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "input_shape": list(self.input_shape),
            "input_layout": self.input_layout,
            "num_classes": self.num_classes,
        }
        if self.inputs:
            document["inputs"] = [spec.to_dict() for spec in self.inputs]
        if self.weights_path is not None:
            document["weights_sha256"] = sha256_file(self.weights_path)
        seeded = self.weights_path is None and self.kind in ("builtin", "torchvision", "factory")
        if seeded:
            document["seed"] = seed
        if self.kind == "builtin":
            document["builder_source_sha256"] = module_source_sha256("models.digits")
            if self.weights_path is None:
                document["train_epochs"] = self.train_epochs or _DIGITS_DEFAULT_EPOCHS
        elif self.kind == "torchvision":
            document["builder_source_sha256"] = module_source_sha256("models.torchvision_models")
            document["torchvision_version"] = importlib.metadata.version("torchvision")
        elif self.kind == "factory":
            # Only the file that defines the factory: edits to modules it imports are not seen.
            source_file = user_models.factory_source_file(self.name)
            document["builder_source_sha256"] = sha256_file(source_file) if source_file else None
        elif self.kind in ("torchscript", "export"):
            document["model_sha256"] = sha256_file(self.model_path)
        elif self.kind == "tflite":
            document["model_sha256"] = sha256_file(self.tflite_path)
        elif self.kind == "keras":
            document["model_sha256"] = sha256_file(self.model_path)
            document["keras_version"] = self.keras_version
        elif self.kind == "savedmodel":
            from models.tensorflow_models import saved_model_sha256

            document["model_sha256"] = saved_model_sha256(self.model_path)
            document["tensorflow_version"] = self.keras_version
        return document


def resolve_model(
    name: str,
    *,
    weights: Path | None = None,
    input_shape: tuple[int, ...] | None = None,
    inputs: tuple[InputSpec, ...] = (),
) -> ModelSource:
    """What --model names, checked: ModelInputError (one line naming the input and the fix) for unknown
    names, missing files, bad factory paths, shapes the model rejects and weights that don't fit.

    Built-in names resolve without torch (unless weights need checking); user models are loaded
    once here and run on zeros, which checks the input shape and finds the class count.
    """
    if input_shape is not None:
        input_shape = _checked_shape(name, input_shape)
    inputs = tuple(inputs or ())
    if inputs and input_shape is not None:
        raise ModelInputError("give the input shape once: --input NAME:DTYPE:SHAPE already has it; drop --input-shape")
    if inputs and (name == DIGITS_MODEL_NAME or name in TORCHVISION_ARCHITECTURES):
        raise ModelInputError(f"{name} takes one float image; drop --input")
    weights = Path(weights) if weights is not None else None
    suffix = Path(name).suffix.lower()
    if name == DIGITS_MODEL_NAME:
        return _resolve_digits(input_shape, weights)
    if name in TORCHVISION_ARCHITECTURES:
        return _resolve_torchvision(name, input_shape, weights)
    if suffix in user_models.TFLITE_SUFFIXES:
        return _resolve_tflite(name, input_shape, weights, inputs)
    if suffix in user_models.KERAS_SUFFIXES + user_models.KERAS2_SUFFIXES:
        return _resolve_keras(name, input_shape, weights, inputs)
    from models.tensorflow_models import is_saved_model

    if is_saved_model(Path(name).expanduser()):
        return _resolve_saved_model(name, input_shape, weights, inputs)
    if suffix in user_models.EXPORT_SUFFIXES + user_models.TORCHSCRIPT_SUFFIXES:
        return _resolve_saved_torch(name, input_shape, weights)
    if inputs and suffix in user_models.EXPORT_SUFFIXES + user_models.TORCHSCRIPT_SUFFIXES:
        raise ModelInputError(f"--input applies to factories, .tflite and Keras models; {name!r} records "
                              "its one input: drop --input")
    if ":" in name and not Path(name).exists():
        return _resolve_factory(name, input_shape, weights, inputs)
    if "/" in name or suffix:
        raise ModelInputError(f"model {name!r} is not a file bench can load; give a built-in name, {_OTHER_MODEL_FORMS}")
    raise ModelInputError(f"unknown model {name!r}; known models: {', '.join(BUILTIN_MODEL_NAMES)}; or give {_OTHER_MODEL_FORMS}")


def parse_input_shape(text: str) -> tuple[int, ...]:
    """--input-shape "1,3,224,224" (or "1x3x224x224") -> (1, 3, 224, 224); ModelInputError otherwise."""
    parts = [part.strip() for part in text.replace("x", ",").split(",")]
    try:
        shape = tuple(int(part) for part in parts)
    except ValueError:
        raise ModelInputError(f"bad --input-shape {text!r}; write it as N,C,H,W, e.g. 1,3,224,224") from None
    return _checked_shape("--input-shape", shape)


# ---------------------------------------------------------------- resolving each kind


def _resolve_digits(input_shape: tuple[int, ...] | None, weights: Path | None) -> ModelSource:
    if input_shape is not None and input_shape != _DIGITS_INPUT_SHAPE:
        raise ModelInputError(
            f"digits_cnn takes input shape {user_models.format_shape(_DIGITS_INPUT_SHAPE)}, "
            f"not {user_models.format_shape(input_shape)}; drop --input-shape"
        )
    if weights is not None:
        from models.digits import DigitsCNN

        _load_weights_into(DigitsCNN(), DIGITS_MODEL_NAME, weights)
    return ModelSource(
        name=DIGITS_MODEL_NAME,
        kind="builtin",
        input_shape=_DIGITS_INPUT_SHAPE,
        num_classes=_DIGITS_NUM_CLASSES,
        weights_path=weights,
        train_epochs=_DIGITS_DEFAULT_EPOCHS,
    )


def _resolve_torchvision(name: str, input_shape: tuple[int, ...] | None, weights: Path | None) -> ModelSource:
    shape = input_shape or IMAGENET_INPUT_SHAPE
    if len(shape) != 4 or shape[1] != 3:
        raise ModelInputError(
            f"{name} takes an RGB image input N,3,H,W, not {user_models.format_shape(shape)}; fix --input-shape"
        )
    num_classes = IMAGENET_NUM_CLASSES
    if weights is not None:
        from models.torchvision_models import build_torchvision, classes_in_state_dict, load_state_dict_strictly, read_state_dict

        state_dict = read_state_dict(weights)
        num_classes = classes_in_state_dict(name, state_dict)
        load_state_dict_strictly(build_torchvision(name, num_classes=num_classes), state_dict, name, weights)
    return ModelSource(name=name, kind="torchvision", input_shape=shape, num_classes=num_classes, weights_path=weights)


def _resolve_tflite(name: str, input_shape: tuple[int, ...] | None, weights: Path | None,
                    inputs: tuple[InputSpec, ...] = ()) -> ModelSource:
    path = _existing_file(name)
    if weights is not None:
        raise ModelInputError(f"--weights does not apply to the .tflite model {name!r}; its weights are inside it")
    own = user_models.tflite_input_specs(path)
    if inputs or len(own) > 1 or own[0].is_integer:
        specs = user_models.matched_tflite_inputs(name, own, inputs)
        signature = user_models.inspect_tflite(path, several=True)
        return ModelSource(name=name, kind="tflite", input_shape=specs[0].shape,
                           num_classes=signature.num_classes, tflite_path=path,
                           input_layout="other", inputs=specs)
    signature = user_models.inspect_tflite(path)
    if input_shape is not None and input_shape != signature.input_shape:
        raise ModelInputError(
            f"{name!r} has a fixed input shape {user_models.format_shape(signature.input_shape)}, "
            f"not {user_models.format_shape(input_shape)}; drop --input-shape"
        )
    return ModelSource(
        name=name,
        kind="tflite",
        input_shape=signature.input_shape,
        num_classes=signature.num_classes,
        tflite_path=path,
        input_layout=signature.input_layout,
    )


def _resolve_keras(name: str, input_shape: tuple[int, ...] | None, weights: Path | None,
                   inputs: tuple[InputSpec, ...] = ()) -> ModelSource:
    """A Keras 3 file: exported to .tflite by Keras itself (torch backend), then measured and
    quantized like any .tflite (pruning and fine-tuning need a PyTorch model)."""
    import atexit
    import shutil
    import tempfile

    path = _existing_file(name)
    if weights is not None:
        raise ModelInputError(f"--weights does not apply to the Keras model {name!r}; its weights are inside it")
    scratch = Path(tempfile.mkdtemp(prefix="bench-keras-"))
    atexit.register(shutil.rmtree, scratch, True)
    exported, version = user_models.export_keras(path, scratch)
    as_tflite = _resolve_tflite(str(exported), input_shape, None, inputs)
    return ModelSource(name=name, kind="keras", input_shape=as_tflite.input_shape,
                       num_classes=as_tflite.num_classes, tflite_path=exported,
                       input_layout=as_tflite.input_layout, model_path=path, inputs=as_tflite.inputs,
                       keras_version=version)


def _resolve_saved_model(name: str, input_shape: tuple[int, ...] | None, weights: Path | None,
                         inputs: tuple[InputSpec, ...] = ()) -> ModelSource:
    """A TensorFlow SavedModel: converted by TFLiteConverter (the tensorflow extra), then
    measured as a .tflite; its int8 variants use the converter's representative dataset."""
    import atexit
    import shutil
    import tempfile

    from models.tensorflow_models import convert_saved_model

    path = Path(name).expanduser().resolve()
    if weights is not None:
        raise ModelInputError(f"--weights does not apply to the SavedModel {name!r}; its weights are inside it")
    scratch = Path(tempfile.mkdtemp(prefix="bench-savedmodel-"))
    atexit.register(shutil.rmtree, scratch, True)
    exported = scratch / "model.tflite"
    _, tensorflow_version = convert_saved_model(path, exported)
    as_tflite = _resolve_tflite(str(exported), input_shape, None, inputs)
    return ModelSource(name=name, kind="savedmodel", input_shape=as_tflite.input_shape,
                       num_classes=as_tflite.num_classes, tflite_path=exported,
                       input_layout=as_tflite.input_layout, model_path=path, inputs=as_tflite.inputs,
                       keras_version=tensorflow_version)


def _resolve_saved_torch(name: str, input_shape: tuple[int, ...] | None, weights: Path | None) -> ModelSource:
    path = _existing_file(name)
    if weights is not None:
        raise ModelInputError(f"--weights does not apply to the saved model {name!r}; its weights are inside it")
    if path.suffix.lower() in user_models.EXPORT_SUFFIXES:
        kind = "export"
        shape = input_shape or user_models.exported_input_shape(path)
        model = user_models.load_exported(path)
    else:
        kind = "torchscript"
        shape = input_shape
        user_models.load_torchscript(path)  # a bad file fails here, before asking for a shape
        if shape is None:
            raise ModelInputError(f"model {name!r} does not record its input shape; give it with --input-shape N,C,H,W")
        model = user_models.load_torchscript(path, shape)
    if shape is None:
        raise ModelInputError(f"model {name!r} does not record its input shape; give it with --input-shape N,C,H,W")
    num_classes = user_models.probe_num_classes(model, shape, name)
    return ModelSource(
        name=name, kind=kind, input_shape=shape, num_classes=num_classes, model_path=path, input_layout=_layout_of(shape)
    )


def _resolve_factory(name: str, input_shape: tuple[int, ...] | None, weights: Path | None,
                     inputs: tuple[InputSpec, ...] = ()) -> ModelSource:
    inputs = inputs or (user_models.declared_inputs(name) if input_shape is None else ())
    if inputs:
        model = user_models.build_factory_model(name)
        if weights is not None:
            _load_weights_into(model, name, weights)
        specs, num_classes = user_models.checked_token_inputs(model, name, inputs)
        return ModelSource(name=name, kind="factory", input_shape=specs[0].shape, num_classes=num_classes,
                           weights_path=weights, input_layout="other", inputs=specs)
    shape = input_shape or user_models.declared_input_shape(name)
    if shape is None:
        raise ModelInputError(
            f"model {name!r} does not declare its input shape; give --input-shape N,C,H,W "
            "(or set INPUT_SHAPE in its module)"
        )
    shape = _checked_shape(name, shape)
    model = user_models.build_factory_model(name)
    if weights is not None:
        _load_weights_into(model, name, weights)
    num_classes = user_models.probe_num_classes(model, shape, name)
    return ModelSource(
        name=name, kind="factory", input_shape=shape, num_classes=num_classes, weights_path=weights, input_layout=_layout_of(shape)
    )


# ---------------------------------------------------------------- helpers


def _checked_shape(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(int(size) for size in shape)
    if not shape or any(size <= 0 for size in shape) or shape[0] != 1:
        raise ModelInputError(
            f"input shape {user_models.format_shape(shape)} for {name!r} is not one batch-1 input of positive sizes; "
            "write it as 1,C,H,W"
        )
    return shape


def _layout_of(shape: tuple[int, ...]) -> str:
    # Torch models take NCHW; anything not 4-D is not an image input.
    return "NCHW" if len(shape) == 4 else "other"


def _existing_file(name: str) -> Path:
    path = Path(name).expanduser()
    if not path.is_file():
        raise ModelInputError(f"model file {name!r} not found; check the path")
    return path.resolve()


def _load_weights_into(model: "nn.Module", model_name: str, weights: Path) -> None:
    from models.torchvision_models import load_state_dict_strictly, read_state_dict

    load_state_dict_strictly(model, read_state_dict(weights), model_name, weights)


# digits_cnn trains in seconds, but a pipeline loads the baseline several times (baseline, each
# variant, the distillation teacher): train once per (seed, epochs) per process, hand out copies.
_TRAINED_DIGITS: dict[tuple[int, int], Any] = {}
_TRAINED_DIGITS_LOCK = threading.Lock()


def _digits_model(seed: int, epochs: int, weights: Path | None) -> "nn.Module":
    from models.digits import DigitsCNN, train_digits_cnn

    if weights is not None:
        model = DigitsCNN()
        _load_weights_into(model, DIGITS_MODEL_NAME, weights)
        return model.eval()
    with _TRAINED_DIGITS_LOCK:
        trained = _TRAINED_DIGITS.get((seed, epochs))
        if trained is None:
            trained, _ = train_digits_cnn(seed=seed, epochs=epochs)
            _TRAINED_DIGITS[(seed, epochs)] = trained
    return copy.deepcopy(trained).eval()
