"""The torchvision architectures bench knows by name, built with random init or a local state dict.

Nothing is ever downloaded: every constructor is called with weights=None, and pretrained
weights come only from a file the user names (`--weights PATH`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.errors import ModelInputError

if TYPE_CHECKING:  # torch loads only when a model is really built
    from torch import nn

IMAGENET_NUM_CLASSES = 1000
IMAGENET_INPUT_SHAPE = (1, 3, 224, 224)
# How many state-dict keys an error message lists before "...": enough to recognise the model.
_KEYS_SHOWN_IN_ERRORS = 3


@dataclass(frozen=True)
class TorchvisionArchitecture:
    """One torchvision constructor and where its final classifier lives."""

    name: str
    # The key of the final classifier's weight in the state dict: its row count is the number
    # of classes, so a fine-tuned state dict (e.g. 10 classes) rebuilds the right head.
    classifier_weight_key: str
    description: str


TORCHVISION_ARCHITECTURES: dict[str, TorchvisionArchitecture] = {
    arch.name: arch
    for arch in (
        TorchvisionArchitecture("mobilenet_v2", "classifier.1.weight", "MobileNetV2 (inverted residuals, depthwise)"),
        TorchvisionArchitecture("mobilenet_v3_small", "classifier.3.weight", "MobileNetV3-Small (compact, depthwise, SE)"),
        TorchvisionArchitecture("mobilenet_v3_large", "classifier.3.weight", "MobileNetV3-Large (depthwise, SE)"),
        TorchvisionArchitecture("resnet18", "fc.weight", "ResNet-18 (basic blocks, residual adds)"),
        TorchvisionArchitecture("resnet50", "fc.weight", "ResNet-50 (bottleneck blocks, wide)"),
        TorchvisionArchitecture("efficientnet_b0", "classifier.1.weight", "EfficientNet-B0 (MBConv, SE, SiLU)"),
    )
}


def build_torchvision(name: str, *, num_classes: int = IMAGENET_NUM_CLASSES, seed: int = 0) -> "nn.Module":
    """A randomly initialised torchvision model in eval mode; the same seed gives the same weights.

    The global torch RNG is left as it was: initialisation draws from a forked generator state.
    """
    import torch
    import torchvision

    if name not in TORCHVISION_ARCHITECTURES:
        known = ", ".join(TORCHVISION_ARCHITECTURES)
        raise ModelInputError(f"unknown torchvision architecture {name!r}; known: {known}")
    constructor = getattr(torchvision.models, name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = constructor(weights=None, num_classes=num_classes)
    return model.eval()


def read_state_dict(weights_path: Path) -> dict[str, Any]:
    """Load a state dict saved with torch.save, tolerating the usual wrappers.

    Accepts a plain state dict, {"state_dict": ...} or {"model": ...} checkpoints, and strips the
    "module." prefix that DataParallel adds. Never unpickles arbitrary objects (weights_only).
    """
    import torch

    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise ModelInputError(f"weights file {str(weights_path)!r} not found; give --weights a state dict saved with torch.save")
    try:
        loaded = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file; all mean "not a state dict"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelInputError(
            f"weights file {str(weights_path)!r} is not a loadable state dict ({reason[:160]}); "
            "save one with torch.save(model.state_dict(), PATH)"
        ) from None
    for wrapper_key in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper_key), dict):
            loaded = loaded[wrapper_key]
    if not isinstance(loaded, dict) or not loaded or not all(isinstance(k, str) for k in loaded):
        raise ModelInputError(
            f"weights file {str(weights_path)!r} holds a {type(loaded).__name__}, not a state dict; "
            "save one with torch.save(model.state_dict(), PATH)"
        )
    return {key.removeprefix("module."): value for key, value in loaded.items()}


def classes_in_state_dict(name: str, state_dict: dict[str, Any]) -> int:
    """The number of classes the state dict's final classifier outputs; ModelInputError if it has none."""
    key = TORCHVISION_ARCHITECTURES[name].classifier_weight_key
    weight = state_dict.get(key)
    if weight is None or getattr(weight, "ndim", 0) != 2:
        shown = ", ".join(list(state_dict)[:_KEYS_SHOWN_IN_ERRORS])
        raise ModelInputError(
            f"weights do not fit {name}: no classifier weight {key!r} (the file has {shown}, ...); "
            f"give a state dict saved from torchvision's {name}"
        )
    return int(weight.shape[0])


def load_state_dict_strictly(model: "nn.Module", state_dict: dict[str, Any], model_name: str, weights_path: Path) -> None:
    """Load every tensor, or raise one ModelInputError naming the first mismatches."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    wrong_shape = [
        f"{key} {tuple(state_dict[key].shape)} vs {tuple(expected[key].shape)}"
        for key in expected
        if key in state_dict and hasattr(state_dict[key], "shape") and tuple(state_dict[key].shape) != tuple(expected[key].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:_KEYS_SHOWN_IN_ERRORS])}{', ...' if len(missing) > _KEYS_SHOWN_IN_ERRORS else ''}")
    if unexpected:
        problems.append(
            f"unexpected {', '.join(unexpected[:_KEYS_SHOWN_IN_ERRORS])}{', ...' if len(unexpected) > _KEYS_SHOWN_IN_ERRORS else ''}"
        )
    if wrong_shape:
        problems.append(f"shape {'; '.join(wrong_shape[:_KEYS_SHOWN_IN_ERRORS])}")
    if problems:
        raise ModelInputError(
            f"weights {str(weights_path)!r} do not fit {model_name}: {'; '.join(problems)}; "
            f"give a state dict saved from the same architecture"
        )
    model.load_state_dict(state_dict, strict=True)
