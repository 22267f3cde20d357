"""Structured pruning (whole channels, torch-pruning's dependency graph), unstructured magnitude
pruning (single weights, torch.nn.utils.prune) and lottery-ticket weight rewinding.

Structured pruning makes the model physically smaller: coupled layers (BN after a conv, both
sides of a residual add, concat inputs, depthwise groups, attention heads) lose the same
channels, so the result is an ordinary, smaller nn.Module that converts like any other.
Unstructured pruning only zeroes weights: the tensors keep their shapes, so it buys compressed
(zip) size, not speed.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.errors import UserError
from harness.optimize.profile import count_params_macs
# The knobs and their rules are written once, with the variant specs; IMPORTANCES is re-exported.
from harness.optimize.variants import IMPORTANCES, check_knob  # noqa: F401

if TYPE_CHECKING:
    import torch
    from torch import nn

def _sparsified_layers() -> tuple:
    from torch import nn

    return (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


# Where structured_prune leaves, on the pruned model, the original index of every channel
# that survived (per module name, output and input side); rewind_weights reads it.
KEPT_CHANNELS_ATTR = "_bench_kept_channels"


@dataclass
class PruneSettings:
    """What to prune and how. ``ratio`` is the fraction of channels removed per prunable group
    (local scope) or over the whole network (global scope)."""

    ratio: float | None               # None: only the transformer knobs below prune
    importance: str = "l1"
    scope: str = "local"
    round_to: int | None = 8  # channel counts kept at multiples of this (SIMD-friendly on phones)
    iterative_steps: int = 1  # ratio reached in this many equal steps (fine-tune between them)
    seed: int = 0  # seeds the "random" importance
    # Transformers (harness.optimize.attention): fractions of whole heads, of each head's
    # dimensions and of the MLP hidden channels removed per layer.
    heads: float | None = None
    head_dim: float | None = None
    mlp: float | None = None

    @property
    def transformer_knobs(self) -> bool:
        return any(v is not None for v in (self.heads, self.head_dim, self.mlp))

    def validate(self) -> None:
        """UserError (one line, naming the setting) for anything out of range: the rules of the
        matching variant knobs (harness.optimize.variants.KNOBS), as library callers need no spec."""
        if self.ratio is not None or not self.transformer_knobs:
            check_knob("prune", self.ratio, "pruning ratio")
        for key in ("heads", "head_dim", "mlp"):
            if getattr(self, key) is not None:
                check_knob(key, getattr(self, key), f"{key} pruning ratio")
        check_knob("importance", self.importance, "pruning importance")
        check_knob("scope", self.scope, "pruning scope")
        check_knob("round_to", self.round_to, "round_to")
        check_knob("steps", self.iterative_steps, "iterative_steps")


@dataclass
class PruneReport:
    """Size before and after, and one entry per iterative step: params, macs, and (when an
    evaluate function was given) accuracy right after pruning and after the fine-tune step."""

    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    steps: list[dict] = field(default_factory=list)
    accuracy_before: float | None = None

    @property
    def params_reduction(self) -> float:
        """Fraction of parameters removed (0.5 = half the parameters are gone)."""
        return 1.0 - self.params_after / self.params_before if self.params_before else 0.0

    @property
    def macs_reduction(self) -> float:
        return 1.0 - self.macs_after / self.macs_before if self.macs_before else 0.0


def structured_prune(
    model: "nn.Module",
    example_input: "torch.Tensor",
    settings: PruneSettings,
    *,
    calibration: Iterable[tuple[Any, Any]] | None = None,
    fine_tune_step: Callable[["nn.Module"], Any] | None = None,
    evaluate: Callable[["nn.Module"], float] | None = None,
    model_name: str = "model",
    on_step: Callable[[dict], None] | None = None,
) -> PruneReport:
    """Remove channels from ``model`` in place and return what it cost and bought.

    calibration: iterable of (x, y) torch batches; the "taylor" importance needs it (gradients
    of the cross-entropy loss; y may be None, then the model's own predictions are the labels).
    fine_tune_step(model) runs after every pruning step; evaluate(model) -> top-1 (or
    agreement) is recorded before pruning and after each prune / fine-tune. on_step(step) is
    told each step's figures once its channels are gone (before its fine-tuning), for progress.
    The classifier producing the model's output is never pruned, so the output shape stays.
    UserError (one line naming ``model_name``) when torch-pruning cannot trace the model.
    """
    import torch

    settings.validate()
    if settings.importance == "taylor" and calibration is None:
        raise UserError("pruning importance 'taylor' needs calibration batches (a dataset with training samples)")
    if isinstance(model, torch.jit.ScriptModule):
        raise UserError(
            f"cannot prune {model_name}: a TorchScript module has no Python graph for torch-pruning; "
            "give the model as pkg.module:factory instead"
        )
    model.eval()
    example_input = _on_device(example_input, _device_of(model))
    reference_shape = _output_shape(model, example_input, model_name)
    params_before, macs_before = count_params_macs(model, example_input)
    report = PruneReport(params_before, params_before, macs_before, macs_before)
    if evaluate is not None:
        report.accuracy_before = float(evaluate(model))

    from harness.optimize.attention import find_attention, prepare_attention, sync_widths

    try:
        prepare_attention(model, example_input)
    except RuntimeError as exc:
        raise UserError(f"cannot prune {model_name}: {exc}") from None
    sites = find_attention(model)
    if (settings.heads is not None or settings.head_dim is not None) and not sites:
        raise UserError(f"cannot prune heads of {model_name}: it has no attention layer bench knows "
                        "(transformers' query/key/value self-attention or nn.MultiheadAttention)")
    pruner = _build_pruner(model, example_input, settings, model_name, sites)
    kept = _initial_kept_channels(model, pruner)
    torch.manual_seed(settings.seed)  # the "random" importance draws from torch's generator
    for step_index in range(settings.iterative_steps):
        if settings.importance == "taylor":
            _accumulate_taylor_gradients(model, calibration)
        with torch.no_grad():
            for group in pruner.step(interactive=True):
                _record_kept_channels(group, pruner, kept)
                group.prune()
        for site in sites:  # the forward reshapes by the module's own head count
            site.set_heads(pruner.num_heads.get(site.q, site.heads))
        sync_widths(model)
        model.zero_grad(set_to_none=True)
        _check_still_runs(model, example_input, reference_shape, model_name)
        params, macs = count_params_macs(model, example_input)
        step: dict[str, Any] = {"step": step_index + 1, "params": params, "macs": macs}
        if evaluate is not None:
            step["accuracy_after_prune"] = float(evaluate(model))
        if on_step is not None:
            on_step({**step, "steps": settings.iterative_steps})
        if fine_tune_step is not None:
            fine_tune_step(model)
            model.eval()
            if evaluate is not None:
                step["accuracy_after_fine_tune"] = float(evaluate(model))
        report.steps.append(step)

    setattr(model, KEPT_CHANNELS_ATTR, kept)
    report.params_after, report.macs_after = count_params_macs(model, example_input)
    return report


def make_importance(name: str) -> Any:
    """The torch-pruning importance estimator for one of IMPORTANCES."""
    import torch_pruning as tp

    imp = tp.importance
    factories = {
        "l1": lambda: imp.MagnitudeImportance(p=1),
        "l2": lambda: imp.MagnitudeImportance(p=2),
        "bn_scale": imp.BNScaleImportance,
        "taylor": imp.TaylorImportance,
        "random": imp.RandomImportance,
    }
    check_knob("importance", name, "pruning importance")
    return factories[name]()


def output_layers(model: "nn.Module", example_input: "torch.Tensor") -> list["nn.Module"]:
    """The leaf layers whose output tensor is the model's output (the classifier): found by
    watching one forward pass, so it works whatever the attribute is called (fc, classifier,
    head...). Falls back to the last nn.Linear when no leaf returns the output tensor itself."""
    import torch
    from torch import nn

    produced: list[tuple[nn.Module, Any]] = []
    hooks = [
        module.register_forward_hook(lambda m, _inp, out: produced.append((m, out)))
        for module in model.modules()
        if not list(module.children())
    ]
    try:
        with torch.no_grad():
            output = call_model(model, example_input)
    finally:
        for hook in hooks:
            hook.remove()
    outputs = [t for t in _tensors_in(output)]
    found = [m for m, out in produced if any(out is t for t in outputs) and _has_weight(m)]
    if not found:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        found = linears[-1:]
    return found


# A ratio this small removes no channel (n * (1 - r) rounds down to n - 1 only for n > 1e6), but
# it lets torch-pruning reach a group's head ranking, which it skips for groups of ratio 0.
_HEADS_ONLY_RATIO = 1e-9


def _build_pruner(model: "nn.Module", example_input: "torch.Tensor", settings: PruneSettings,
                  model_name: str, sites: list | None = None) -> Any:
    import torch_pruning as tp
    from torch import nn

    from harness.optimize.attention import mlp_layers, num_heads_map, qkv_layers

    sites = sites or []
    ignored = output_layers(model, example_input)
    # Attention: q/k/v channels grouped by head (torch-pruning's num_heads), so whole heads (or
    # the same dimensions of every head) go together; heads of other MHA kinds as before.
    num_heads = {m: m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    num_heads.update(num_heads_map(sites))
    ratio_by_layer: dict = {}
    if settings.transformer_knobs:
        head_dim_ratio = settings.head_dim if settings.head_dim is not None else settings.ratio
        if settings.heads is not None or head_dim_ratio is not None:
            for linear in qkv_layers(sites):
                ratio_by_layer[linear] = head_dim_ratio if head_dim_ratio is not None else _HEADS_ONLY_RATIO
        if settings.mlp is not None:
            for linear in mlp_layers(model, sites, ignored):
                ratio_by_layer[linear] = settings.mlp
    head_options = {}
    if settings.heads is not None:
        head_options = {"prune_num_heads": True, "head_pruning_ratio": float(settings.heads),
                        "prune_head_dims": settings.head_dim is not None or settings.ratio is not None}
    try:
        # torch-pruning warns about every unwrapped parameter and prints its graph notes: noise here.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            pruner = tp.pruner.BasePruner(
                model,
                example_input,
                importance=make_importance(settings.importance),
                global_pruning=settings.scope == "global",
                pruning_ratio=float(settings.ratio or 0.0),
                pruning_ratio_dict=ratio_by_layer or None,
                **head_options,
                iterative_steps=settings.iterative_steps,
                ignored_layers=ignored,
                round_to=settings.round_to,
                num_heads=num_heads,
            )
    except Exception as exc:  # torch-pruning raises anything from AttributeError to RuntimeError
        raise UserError(f"cannot prune {model_name}: torch-pruning could not trace it ({_one_line(exc)})") from None
    groups = list(pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types))
    if not groups:
        # Happens when forward runs under no_grad, detaches, or goes through non-torch code:
        # the autograd graph torch-pruning follows is empty, so nothing can be pruned safely.
        raise UserError(
            f"cannot prune {model_name}: torch-pruning found no prunable channel group in its traced graph "
            "(forward must be differentiable torch code: no no_grad/detach/numpy inside)"
        )
    return pruner


def _accumulate_taylor_gradients(model: "nn.Module", calibration: Iterable[tuple[Any, Any]]) -> None:
    """Gradients of the loss on the calibration batches: what Taylor importance multiplies
    with the weights. Without labels, the model's own predictions stand in for them."""
    import torch
    import torch.nn.functional as F

    device = _device_of(model)
    model.zero_grad(set_to_none=True)
    seen = 0
    for x, y in calibration:
        logits = call_model(model, _on_device(x, device))
        target = logits.argmax(dim=1).detach() if y is None else torch.as_tensor(y).to(device).long()
        F.cross_entropy(logits, target).backward()
        seen += 1
    if seen == 0:
        raise UserError("pruning importance 'taylor' got no calibration batches; the dataset has no samples")


def _initial_kept_channels(model: "nn.Module", pruner: Any) -> dict[str, dict[str, list[int]]]:
    """Every channel of every prunable layer, before pruning: module name -> out/in index lists.
    A model pruned twice keeps counting in the original model's indices."""
    previous = getattr(model, KEPT_CHANNELS_ATTR, {})
    kept: dict[str, dict[str, list[int]]] = {}
    # The pruner's own table of prunable layers (conv, linear, norm...) and their widths.
    for module, out_ch in pruner.layer_init_out_ch.items():
        name = pruner.DG._module2name.get(module)
        if name is None:  # an unwrapped nn.Parameter, not a module
            continue
        in_ch = pruner.layer_init_in_ch.get(module)
        before = previous.get(name, {})
        kept[name] = {
            "out": list(before.get("out", range(out_ch))) if out_ch is not None else [],
            "in": list(before.get("in", range(in_ch))) if in_ch is not None else [],
        }
    return kept


def _record_kept_channels(group: Any, pruner: Any, kept: dict[str, dict[str, list[int]]]) -> None:
    """Drop the channels this group removes from the kept lists (indices are each module's own)."""
    for dep, idxs in group:
        name = pruner.DG._module2name.get(dep.target.module)
        if name is None or name not in kept:
            continue
        side = "out" if pruner.DG.is_out_channel_pruning_fn(dep.handler) else "in"
        removed = {int(getattr(i, "idx", i)) for i in idxs}
        kept[name][side] = [orig for position, orig in enumerate(kept[name][side]) if position not in removed]


def unstructured_prune(model: "nn.Module", sparsity: float) -> dict:
    """Zero the smallest-magnitude weights across all conv/linear layers (one global threshold),
    then make it permanent (no masks or re-parametrisation left). Returns
    {"sparsity": achieved fraction of zeros, "zeros": n, "params": n} over those weights."""
    import torch
    from torch import nn
    from torch.nn.utils import prune as torch_prune

    check_knob("sparsity", sparsity, "sparsity")
    targets = [(m, "weight") for m in model.modules() if isinstance(m, _sparsified_layers())]
    if not targets:
        raise UserError("unstructured pruning found no conv or linear layer in the model")
    torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=float(sparsity))
    for module, name in targets:
        torch_prune.remove(module, name)  # weight = weight_orig * mask, as a plain Parameter again
    with torch.no_grad():
        zeros = sum(int((m.weight == 0).sum()) for m, _ in targets)
        total = sum(m.weight.numel() for m, _ in targets)
    return {"sparsity": zeros / total, "zeros": zeros, "params": total}


def sparsity_masks(model: "nn.Module") -> dict[str, "torch.Tensor"]:
    """Module name -> the boolean mask of the nonzero weights of every conv/linear layer: what
    unstructured pruning left, which a lottery ticket keeps through rewinding and retraining."""
    from torch import nn

    return {name: (module.weight != 0).detach().clone() for name, module in model.named_modules()
            if isinstance(module, _sparsified_layers())}


@contextlib.contextmanager
def masks_held(model: "nn.Module", masks: dict[str, "torch.Tensor"] | None):
    """Train inside this and the masked weights stay zero: torch's own pruning parametrisation
    (weight = weight_orig * mask, so masked weights get no gradient), made permanent on exit."""
    from torch.nn.utils import prune as torch_prune

    modules = dict(model.named_modules())
    held = [(modules[name], mask) for name, mask in (masks or {}).items() if name in modules]
    for module, mask in held:
        torch_prune.custom_from_mask(module, "weight", mask.to(module.weight.device))
    try:
        yield
    finally:
        for module, _ in held:
            torch_prune.remove(module, "weight")


def rewind_weights(model: "nn.Module", early_state: dict,
                   masks: dict[str, "torch.Tensor"] | None = None) -> None:
    """Lottery ticket: put every surviving weight of a pruned ``model`` back to its value in
    ``early_state`` (a state dict of the same model, unpruned, saved early in training).

    How shapes are matched: structured_prune leaves on the model, per module, the original
    index of each channel it kept (output side and input side). A tensor whose shape changed
    is cut from the early tensor with those indices: dim 0 by the kept output channels, dim 1
    (conv/linear weights) by the kept input channels. Depthwise convs keep dim 1 == 1, so only
    dims that differ are indexed. Tensors whose shape did not change are copied as they are.
    `masks` (sparsity_masks of the pruned model): the weights they mask are zeroed again after
    rewinding, so an unstructured ticket keeps its sparsity (early weights are dense).
    UserError when a shape cannot be matched (not pruned by structured_prune, or another model).
    """
    import torch

    kept: dict[str, dict[str, list[int]]] = getattr(model, KEPT_CHANNELS_ATTR, {})
    current = model.state_dict()
    rewound = {}
    for key, tensor in current.items():
        if key not in early_state:
            raise UserError(f"cannot rewind: early weights have no tensor {key!r} (a state dict of another model?)")
        early = early_state[key].detach().to(tensor.device)
        if early.shape != tensor.shape:
            module_name = key.rsplit(".", 1)[0]
            channels = kept.get(module_name)
            if channels is None:
                raise UserError(
                    f"cannot rewind {key}: shape {tuple(early.shape)} -> {tuple(tensor.shape)} "
                    "but no kept-channel record (prune with structured_prune first)"
                )
            for dim, side in ((0, "out"), (1, "in")):
                if dim < early.dim() and early.shape[dim] != tensor.shape[dim]:
                    index = torch.tensor(channels[side], dtype=torch.long, device=early.device)
                    early = early.index_select(dim, index)
            if early.shape != tensor.shape:
                raise UserError(
                    f"cannot rewind {key}: early shape {tuple(early_state[key].shape)} does not map onto {tuple(tensor.shape)}"
                )
        rewound[key] = early
    model.load_state_dict(rewound)
    if masks:
        modules = dict(model.named_modules())
        with torch.no_grad():
            for name, mask in masks.items():
                modules[name].weight.mul_(mask.to(modules[name].weight.device))


def _output_shape(model: "nn.Module", example_input: "torch.Tensor", model_name: str) -> tuple[int, ...]:
    import torch

    try:
        with torch.no_grad():
            output = call_model(model, example_input)
    except Exception as exc:
        raise UserError(f"cannot prune {model_name}: it does not run on input {_shapes(example_input)} ({_one_line(exc)})") from None
    tensors = list(_tensors_in(output))
    if not tensors:
        raise UserError(f"cannot prune {model_name}: its forward returns no tensor ({type(output).__name__})")
    return tuple(tensors[0].shape)


def _check_still_runs(model: "nn.Module", example_input: "torch.Tensor", reference_shape: tuple[int, ...], model_name: str) -> None:
    """Pruning through a graph torch-pruning only partly saw can leave mismatched layers."""
    import torch

    try:
        with torch.no_grad():
            shape = tuple(next(iter(_tensors_in(call_model(model, example_input)))).shape)
    except Exception as exc:
        raise UserError(f"cannot prune {model_name}: the pruned model no longer runs ({_one_line(exc)})") from None
    if shape != reference_shape:
        raise UserError(f"cannot prune {model_name}: pruning changed its output shape {reference_shape} -> {shape}")


def _tensors_in(value: Any):
    import torch

    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors_in(item)


def call_model(model: "nn.Module", example: Any) -> Any:
    """The model on one input tensor, or on a tuple of them (a model of several inputs)."""
    return model(*example) if isinstance(example, tuple) else model(example)


def _on_device(example: Any, device: "torch.device") -> Any:
    import torch

    if isinstance(example, tuple):
        return tuple(torch.as_tensor(t).to(device) for t in example)
    return torch.as_tensor(example).to(device)


def _shapes(example: Any) -> str:
    if isinstance(example, tuple):
        return ", ".join(str(tuple(t.shape)) for t in example)
    return str(tuple(example.shape))


def _has_weight(module: "nn.Module") -> bool:
    return getattr(module, "weight", None) is not None


def _device_of(model: "nn.Module") -> "torch.device":
    import torch

    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
