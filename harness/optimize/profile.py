"""Parameter and MAC counts of a PyTorch model: the figures pruning is judged by."""

from __future__ import annotations

import contextlib
import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn


def count_params_macs(model: "nn.Module", example_input: "torch.Tensor") -> tuple[int, int]:
    """(parameters, multiply-accumulates) of one forward pass on ``example_input``.

    torch-pruning's counter hooks every layer on a deep copy, so ``model`` is left untouched.
    Parameters are counted directly (every nn.Parameter), because the hook counter only
    sees layer types it knows.
    """
    import torch
    from torch_pruning.utils import count_ops_and_params

    # The counter writes nothing useful to stdout, but some hooks print warnings there.
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        macs, _ = count_ops_and_params(model, example_input)
    params = sum(p.numel() for p in model.parameters())
    return int(params), int(macs)


def layer_params_macs(model: "nn.Module", example_input: "torch.Tensor") -> dict:
    """module -> (parameters, MACs) of that module alone (its own tensors, its own ops)."""
    import torch
    from torch_pruning.utils import count_ops_and_params

    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        _, _, layer_macs, layer_params = count_ops_and_params(model, example_input, layer_wise=True)
    return {
        module: (int(layer_params.get(module) or 0), int(layer_macs.get(module) or 0))
        for module in layer_macs
    }
