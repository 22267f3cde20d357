"""Model name -> how to build it. Importing this module stays cheap: torch loads on first build."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.errors import UserError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    input_shape: tuple[int, ...]  # one inference, batch dimension included
    # builder(seed, epochs) -> (trained nn.Module in eval mode, TrainReport)
    builder: Callable[[int, int], tuple[Any, Any]]
    # dataset() -> object with x_train, y_train, x_test, y_test numpy arrays
    dataset: Callable[[], Any]
    default_epochs: int
    # The module whose source text defines the model and its training: part of the cache key,
    # so editing it invalidates every artifact built from it.
    source_module: str
    description: str


def _build_digits_cnn(seed: int, epochs: int) -> tuple[Any, Any]:
    from models.digits import train_digits_cnn

    return train_digits_cnn(seed=seed, epochs=epochs)


def _digits_dataset() -> Any:
    from models.digits import digits_dataset

    return digits_dataset()


_SPECS: dict[str, ModelSpec] = {
    "digits_cnn": ModelSpec(
        name="digits_cnn",
        input_shape=(1, 1, 8, 8),
        builder=_build_digits_cnn,
        dataset=_digits_dataset,
        default_epochs=20,
        source_module="models.digits",
        description="2-conv CNN on scikit-learn's 8x8 handwritten digits (10 classes, ~99% top-1)",
    ),
}

MODEL_NAMES: tuple[str, ...] = tuple(sorted(_SPECS))


def get_model_spec(name: str) -> ModelSpec:
    try:
        return _SPECS[name]
    except KeyError:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}") from None
