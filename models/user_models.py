"""Models the user brings: a `module.path:factory`, a TorchScript file, a torch.export (.pt2) file,
or an existing .tflite. Every failure is a one-line ModelInputError naming the input and the fix.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.errors import ModelInputError
from models.inputs import InputSpec, example_inputs

if TYPE_CHECKING:  # torch loads only when a user model is really loaded
    from torch import nn

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".jit", ".torchscript")
EXPORT_SUFFIXES = (".pt2",)
TFLITE_SUFFIXES = (".tflite",)
KERAS_SUFFIXES = (".keras",)
KERAS2_SUFFIXES = (".h5", ".hdf5")  # Keras 2 files: Keras 3 loads them (legacy H5 format)
# benchmark_model's own range for integer inputs without --input_layer_value_range
# (GetDataRangesForType: int32/int64 [0, 99]); a .tflite's ids get it unless --input says better.
TOOL_DEFAULT_INT_RANGE = (0, 99)
# A factory module may declare its inputs, as --input texts, under this name.
DECLARED_INPUTS_NAME = "INPUTS"
# Names a factory module may use to declare its input shape, so --input-shape can be left out.
DECLARED_INPUT_SHAPE_NAMES = ("input_shape", "INPUT_SHAPE")
# Channel counts that mark the channel axis of an image tensor.
_IMAGE_CHANNEL_COUNTS = (1, 3, 4)
_ERROR_REASON_CHARS = 200


def first_line(error: BaseException) -> str:
    """An exception squeezed into one short line for a ModelInputError message."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line[:_ERROR_REASON_CHARS]


# ---------------------------------------------------------------- factories: "pkg.mod:factory"


def split_factory_path(factory_path: str) -> tuple[str, str]:
    """"pkg.mod:make_model" -> ("pkg.mod", "make_model"); ModelInputError when either half is missing."""
    module_name, _, attribute = factory_path.partition(":")
    if not module_name or not attribute or not all(part.isidentifier() for part in module_name.split(".") + attribute.split(".")):
        raise ModelInputError(
            f"bad model factory {factory_path!r}; write it as module.path:function (a function returning an nn.Module)"
        )
    return module_name, attribute


def import_factory(factory_path: str) -> Callable[..., Any]:
    """Import the module and return the factory callable it names."""
    module_name, attribute = split_factory_path(factory_path)
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ModelInputError(
            f"cannot import {module_name!r} for model {factory_path!r} ({first_line(error)}); "
            "put its folder on PYTHONPATH or install it"
        ) from None
    except Exception as error:  # the user's module raised while importing
        raise ModelInputError(f"importing {module_name!r} for model {factory_path!r} failed: {first_line(error)}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ModelInputError(f"module {module_name!r} has no {attribute!r}; model {factory_path!r} names a missing factory")
        target = getattr(target, part)
    if not callable(target):
        raise ModelInputError(f"{factory_path!r} is a {type(target).__name__}, not a function returning an nn.Module")
    return target


def factory_source_file(factory_path: str) -> Path | None:
    """The file that defines the factory's module: part of the fingerprint, so edits rebuild."""
    module = sys.modules.get(split_factory_path(factory_path)[0])
    origin = getattr(module, "__file__", None)
    return Path(origin) if origin else None


def declared_input_shape(factory_path: str) -> tuple[int, ...] | None:
    """The input shape the factory (attribute) or its module (INPUT_SHAPE) declares, if any."""
    factory = import_factory(factory_path)
    module = sys.modules[split_factory_path(factory_path)[0]]
    for holder in (factory, module):
        for name in DECLARED_INPUT_SHAPE_NAMES:
            shape = getattr(holder, name, None)
            if shape is not None:
                return tuple(int(size) for size in shape)
    return None


def build_factory_model(factory_path: str, *, seed: int = 0) -> "nn.Module":
    """Call the factory with the torch RNG seeded (so random init is reproducible); eval mode."""
    import torch
    from torch import nn

    factory = import_factory(factory_path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = factory()
        except Exception as error:
            raise ModelInputError(f"model factory {factory_path!r} raised: {first_line(error)}") from None
    if not isinstance(model, nn.Module):
        raise ModelInputError(f"model factory {factory_path!r} returned a {type(model).__name__}, not a torch nn.Module")
    return model.eval()


def declared_inputs(factory_path: str) -> tuple[InputSpec, ...]:
    """The inputs the factory's module declares (INPUTS = ["input_ids:int64:1,128", ...])."""
    from models.inputs import parse_inputs

    factory = import_factory(factory_path)
    module = sys.modules[split_factory_path(factory_path)[0]]
    texts = getattr(factory, DECLARED_INPUTS_NAME, None) or getattr(module, DECLARED_INPUTS_NAME, None)
    return parse_inputs(texts) if texts else ()


@functools.cache
def _named_inputs_class() -> type:
    import torch
    from torch import nn

    class NamedInputs(nn.Module):
        """Calls the model with its inputs by name (forward(input_ids=..., attention_mask=...))
        and gives its first tensor: a transformers model's logits, out of its ModelOutput."""

        def __init__(self, model: nn.Module, names: list[str]) -> None:
            super().__init__()
            self.model = model
            self.input_names = list(names)

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            output = self.model(**dict(zip(self.input_names, inputs)))
            return first_tensor(output)

    return NamedInputs


def named_inputs_model(model: "nn.Module", names: list[str]) -> "nn.Module":
    return _named_inputs_class()(model, names)


def first_tensor(output: Any):
    """The first tensor in a model's output: itself, or the first of a tuple / dict / ModelOutput."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    values = output.values() if isinstance(output, dict) else output if isinstance(output, (list, tuple)) else ()
    for value in values:
        found = first_tensor(value)
        if found is not None:
            return found
    return None


def checked_token_inputs(model: "nn.Module", model_name: str,
                         specs: tuple[InputSpec, ...]) -> tuple[tuple[InputSpec, ...], int | None]:
    """The --input specs checked against the model, with every integer input's value range
    filled, and the model's class count. ModelInputError names the input and what the model
    expects: a name forward does not take, a float fed to an embedding, shapes it rejects.

    An id input without a range gets the vocabulary of the nn.Embedding it feeds (0..N-1);
    masks are generated as ones then padding and need none."""
    import inspect

    import torch
    from torch import nn

    parameters = inspect.signature(model.forward).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    accepted = [n for n, p in parameters.items() if p.kind not in (inspect.Parameter.VAR_POSITIONAL,
                                                                      inspect.Parameter.VAR_KEYWORD)]
    for spec in specs:
        # Strict even where forward takes **kwargs (transformers' do): a misspelt input would
        # be swallowed there and the model would run without it.
        if spec.name not in accepted and (not takes_any or accepted):
            raise ModelInputError(f"model {model_name!r} has no input {spec.name!r}; its forward takes "
                                  f"{', '.join(accepted[:8]) or 'no named inputs'}; fix --input {spec.text()}")
    wrapped = named_inputs_model(model, [spec.name for spec in specs]).eval()
    probe = tuple(torch.zeros(spec.shape, dtype=getattr(torch, spec.dtype)) for spec in specs)
    fed: dict[int, "nn.Embedding"] = {}

    def seen(module, args):
        if args and isinstance(args[0], torch.Tensor):
            fed.setdefault(id(args[0]), module)

    hooks = [m.register_forward_pre_hook(seen) for m in model.modules() if isinstance(m, nn.Embedding)]
    try:
        with torch.no_grad():
            wrapped(*probe)
    except Exception as error:
        for spec, tensor in zip(specs, probe):
            if id(tensor) in fed and not spec.is_integer:
                raise ModelInputError(
                    f"model {model_name!r}: input {spec.name} feeds an embedding of "
                    f"{fed[id(tensor)].num_embeddings} entries, so it takes token ids, not {spec.dtype}; "
                    f"write --input {spec.name}:int64:{','.join(map(str, spec.shape))}") from None
        raise ModelInputError(f"model {model_name!r} rejects inputs {' '.join(s.text() for s in specs)} "
                              f"({first_line(error)}); give each input as the model takes it") from None
    finally:
        for hook in hooks:
            hook.remove()
    filled = []
    for spec, tensor in zip(specs, probe):
        embedding = fed.get(id(tensor))
        if embedding is not None and spec.value_range is not None and (
                spec.value_range[0] < 0 or spec.value_range[1] >= embedding.num_embeddings):
            raise ModelInputError(
                f"model {model_name!r}: input {spec.name} feeds an embedding of {embedding.num_embeddings} entries, "
                f"so its values are 0..{embedding.num_embeddings - 1}, not {spec.value_range[0]}..{spec.value_range[1]}; "
                f"write --input {spec.name}:{spec.dtype}:{','.join(map(str, spec.shape))}:0,{embedding.num_embeddings - 1}")
        if spec.is_integer and spec.value_range is None and not spec.is_mask:
            if embedding is None:
                raise ModelInputError(f"model {model_name!r}: integer input {spec.name} feeds no embedding, so its "
                                      f"values are unknown; give them as --input {spec.text()}:LOW,HIGH")
            spec = InputSpec(spec.name, spec.dtype, spec.shape, (0, int(embedding.num_embeddings) - 1))
        filled.append(spec)
    filled = tuple(filled)
    try:
        with torch.no_grad():
            output = wrapped(*example_inputs(filled))
    except Exception as error:
        raise ModelInputError(f"model {model_name!r} rejects inputs {' '.join(s.text() for s in filled)} "
                              f"({first_line(error)}); give each input as the model takes it") from None
    if output is None:
        raise ModelInputError(f"model {model_name!r} returns no tensor; return its logits")
    return filled, int(output.shape[1]) if output.ndim == 2 else None


# ---------------------------------------------------------------- saved torch files


def load_torchscript(path: Path, input_shape: tuple[int, ...] | None = None) -> "nn.Module":
    """A TorchScript file saved with torch.jit.save, in eval mode.

    With `input_shape`, the ScriptModule is turned into a torch.export program (torch's
    TS2EPConverter) and wrapped like a .pt2: litert-torch and torch-pruning work on exported /
    eager graphs and refuse ScriptModules. ModelInputError when that conversion fails.
    """
    import warnings

    import torch

    with warnings.catch_warnings():
        # torch 2.9+ marks TorchScript deprecated; loading existing files is exactly what users need.
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        try:
            scripted = torch.jit.load(str(path), map_location="cpu")
        except Exception as error:
            raise ModelInputError(
                f"{str(path)!r} is not a TorchScript file ({first_line(error)}); "
                "for a state dict use a built-in architecture with --weights PATH"
            ) from None
    scripted = scripted.eval()
    if input_shape is None:
        return scripted
    from torch._export.converter import TS2EPConverter

    try:
        with torch.no_grad():
            program = TS2EPConverter(scripted, (torch.zeros(input_shape),)).convert()
    except Exception as error:
        raise ModelInputError(
            f"TorchScript model {str(path)!r} cannot be turned into a torch.export program at input shape "
            f"{format_shape(input_shape)} ({first_line(error)}); check --input-shape or save it with torch.export.save"
        ) from None
    return _exported_model_class()(program.module(), input_shape[0]).eval()


@functools.cache
def _exported_model_class() -> type:
    """An nn.Module class wrapping an ExportedProgram's module (built once; torch loads lazily).

    ep.module() refuses .eval()/.train(): the program is frozen in the mode it was exported in.
    The wrapper records the flag without touching the graph, so callers treat every model alike.
    A program exported with a static batch of 1 guards against other batch sizes; the wrapper
    runs a larger batch one sample at a time, so evaluation and parity checks can batch freely.
    """
    import torch
    from torch import nn

    class ExportedModel(nn.Module):
        def __init__(self, graph_module: nn.Module, static_batch: int | None) -> None:
            super().__init__()
            self.graph_module = graph_module
            self.static_batch = static_batch

        def forward(self, *inputs: Any) -> Any:
            batch = inputs[0].shape[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            if len(inputs) == 1 and self.static_batch == 1 and batch not in (None, 1):
                return torch.cat([self.graph_module(sample[None]) for sample in inputs[0]])
            return self.graph_module(*inputs)

        def train(self, mode: bool = True) -> "ExportedModel":
            self.training = mode
            return self

    return ExportedModel


def _load_exported_program(path: Path) -> Any:
    import torch

    try:
        return torch.export.load(str(path))
    except Exception as error:
        raise ModelInputError(f"{str(path)!r} is not a torch.export file ({first_line(error)}); save one with torch.export.save") from None


def load_exported(path: Path) -> "nn.Module":
    """A torch.export (.pt2) program as an nn.Module that accepts .eval()."""
    program = _load_exported_program(path)
    shape = _program_input_shape(program)
    return _exported_model_class()(program.module(), shape[0] if shape else None).eval()


def exported_input_shape(path: Path) -> tuple[int, ...] | None:
    """The shape of the program's one user input, or None when it is dynamic or there are several."""
    return _program_input_shape(_load_exported_program(path))


def _program_input_shape(program: Any) -> tuple[int, ...] | None:
    user_inputs = list(program.graph_signature.user_inputs)
    if len(user_inputs) != 1:
        return None
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name == user_inputs[0]:
            value = node.meta.get("val")
            shape = getattr(value, "shape", None)
            if shape is None or not all(isinstance(size, int) for size in shape):
                return None  # symbolic (dynamic) sizes: the user must say which shape to use
            return tuple(int(size) for size in shape)
    return None


# ---------------------------------------------------------------- probing a torch model


def probe_num_classes(model: "nn.Module", input_shape: tuple[int, ...], model_name: str) -> int | None:
    """Run one forward pass on zeros: checks the input shape fits, returns the output width.

    None when the output is not a (1, K) tensor (e.g. a detector): such models are compared by
    output agreement, not top-1.
    """
    import torch

    try:
        with torch.no_grad():
            output = model(torch.zeros(input_shape))
    except Exception as error:
        raise ModelInputError(
            f"model {model_name!r} rejects input shape {format_shape(input_shape)} ({first_line(error)}); "
            "give the right one with --input-shape"
        ) from None
    if isinstance(output, torch.Tensor) and output.ndim == 2:
        return int(output.shape[1])
    return None


def format_shape(shape: tuple[int, ...]) -> str:
    """(1, 3, 224, 224) -> "1,3,224,224", the spelling --input-shape takes."""
    return ",".join(str(size) for size in shape)


# ---------------------------------------------------------------- existing .tflite files


@dataclass(frozen=True)
class TfliteSignature:
    """What bench needs to know about a .tflite before it can feed it."""

    input_shape: tuple[int, ...]
    input_layout: str  # "NCHW" | "NHWC" | "other" (not a 4-D image input)
    input_dtype: str  # numpy dtype name: "float32", "int8", "uint8", ...
    num_classes: int | None


def guess_image_layout(shape: tuple[int, ...]) -> str:
    """NHWC or NCHW from where the channel axis (1, 3 or 4 wide) sits; "other" when not 4-D.

    Most third-party .tflite image models are NHWC; litert-torch keeps PyTorch's NCHW. When both
    axes look like channels (a 3x3 image?), NCHW wins: only tiny test models hit that case.
    """
    if len(shape) != 4:
        return "other"
    if shape[1] in _IMAGE_CHANNEL_COUNTS:
        return "NCHW"
    if shape[3] in _IMAGE_CHANNEL_COUNTS:
        return "NHWC"
    return "other"


# ---------------------------------------------------------------- Keras 3 files

KERAS_BACKEND = "torch"  # Keras' documented LiteRT path without TensorFlow (litert-torch)
_KERAS_PARITY_TOLERANCE = 1e-4
_KERAS_PARITY_SAMPLES = 4


def _keras():
    """Keras 3 on its torch backend; ModelInputError with the remedy when that cannot be had."""
    import os

    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", KERAS_BACKEND)
    try:
        import keras
    except ImportError:
        raise ModelInputError("reading .keras files needs Keras 3: pip install 'bench[keras]' "
                              "(keras==3.15.1, which runs on the torch backend bench has)") from None
    backend = keras.config.backend()
    if backend != KERAS_BACKEND:
        raise ModelInputError(f"Keras runs the {backend!r} backend here; bench converts .keras files on the torch "
                              "backend: unset KERAS_BACKEND (or set KERAS_BACKEND=torch) and run again")
    return keras


def export_keras(path: Path, out_dir: Path) -> tuple[Path, str]:
    """A Keras 3 .keras file exported to `out_dir`/model.tflite with Keras' own
    `model.export(format="litert")` (torch backend, litert-torch underneath), checked for
    parity against the Keras model on random inputs. Returns (the .tflite, keras version).
    Runs in a process of its own: where TensorFlow is installed, Keras loads it (models.isolated)."""
    from models.isolated import call_in_own_process

    return call_in_own_process(_export_keras_here, Path(path), Path(out_dir), what=f"Keras exporting {str(path)!r}")


def _export_keras_here(path: Path, out_dir: Path) -> tuple[Path, str]:
    import contextlib
    import io
    import os

    keras = _keras()
    try:
        model = keras.saving.load_model(str(path), compile=False)
    except Exception as error:
        raise ModelInputError(f"{str(path)!r} is not a Keras 3 model file Keras can load ({first_line(error)})") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "model.tflite"
    previous = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"  # its progress tree is noise in bench's output
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model.export(str(out), format="litert")
    except Exception as error:
        raise ModelInputError(f"Keras cannot export {str(path)!r} to LiteRT ({first_line(error)}); "
                              "check that the model has fixed input shapes") from None
    finally:
        if previous is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = previous
    _check_keras_parity(model, out, path)
    return out, keras.__version__


def _check_keras_parity(model: Any, tflite_path: Path, source: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path))
    interpreter.allocate_tensors()
    details = interpreter.get_input_details()
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(_KERAS_PARITY_SAMPLES):
        samples = [rng.standard_normal(tuple(d["shape"])).astype(d["dtype"]) for d in details]
        for detail, sample in zip(details, samples):
            interpreter.set_tensor(detail["index"], sample)
        interpreter.invoke()
        got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        expected = model(samples[0] if len(samples) == 1 else samples)
        expected = np.asarray(expected.detach().cpu() if hasattr(expected, "detach") else expected)
        scale = max(float(np.max(np.abs(expected))), 1e-12)
        worst = max(worst, float(np.max(np.abs(expected - got))) / scale)
    if worst > _KERAS_PARITY_TOLERANCE:
        raise ModelInputError(f"Keras' LiteRT export of {str(source)!r} differs from the Keras model by {worst:.3g} "
                              f"of its output scale (tolerance {_KERAS_PARITY_TOLERANCE:g})")


def tflite_input_specs(path: Path) -> tuple[InputSpec, ...]:
    """Every input of a .tflite, in its input order, named as its tensors are."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_path=str(path))
    except Exception as error:
        raise ModelInputError(f"{str(path)!r} is not a readable .tflite model ({first_line(error)})") from None
    return tuple(InputSpec(detail["name"], np.dtype(detail["dtype"]).name, tuple(int(s) for s in detail["shape"]))
                 for detail in interpreter.get_input_details())


def matched_tflite_inputs(model_name: str, own: tuple[InputSpec, ...],
                          given: tuple[InputSpec, ...]) -> tuple[InputSpec, ...]:
    """A .tflite's inputs with the value ranges --input gives; ModelInputError when a given
    spec names an input the file lacks, or has another dtype or shape than the file's."""
    def listed() -> str:
        return " ".join(spec.text() for spec in own)

    if given and len(given) != len(own):
        raise ModelInputError(f"model {model_name!r} has {len(own)} input(s) ({listed()}), --input gives "
                              f"{len(given)}; give one --input per input")
    by_name = {spec.name: spec for spec in own}
    ranges: dict[str, tuple[int, int] | None] = {}
    for position, spec in enumerate(given):
        target = by_name.get(spec.name)
        if target is None:
            raise ModelInputError(f"model {model_name!r} has no input {spec.name!r}; its inputs are {listed()}")
        if (target.dtype, target.shape) != (spec.dtype, spec.shape):
            raise ModelInputError(f"model {model_name!r}: input {spec.name} is {target.dtype} of shape "
                                  f"{','.join(map(str, target.shape))}, not {spec.dtype} {','.join(map(str, spec.shape))}; "
                                  f"write --input {target.text()}")
        ranges[spec.name] = spec.value_range
    return tuple(InputSpec(spec.name, spec.dtype, spec.shape,
                           ranges.get(spec.name) or (TOOL_DEFAULT_INT_RANGE if spec.is_integer and not spec.is_mask else None))
                 for spec in own)


def inspect_tflite(path: Path, *, several: bool = False) -> TfliteSignature:
    """Read the input/output signature with the LiteRT interpreter; ModelInputError for a bad file.
    `several`: a model of several inputs is fine (its first is described)."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_path=str(path))
    except Exception as error:
        raise ModelInputError(f"{str(path)!r} is not a readable .tflite model ({first_line(error)})") from None
    inputs = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    if len(inputs) != 1 and not several:
        raise ModelInputError(f"{str(path)!r} has {len(inputs)} inputs; describe each with --input NAME:DTYPE:SHAPE")
    input_shape = tuple(int(size) for size in inputs[0]["shape"])
    output_shape = tuple(int(size) for size in outputs[0]["shape"]) if outputs else ()
    num_classes = output_shape[1] if len(output_shape) == 2 else None
    return TfliteSignature(
        input_shape=input_shape,
        input_layout=guess_image_layout(input_shape),
        input_dtype=inputs[0]["dtype"].__name__,
        num_classes=num_classes,
    )
