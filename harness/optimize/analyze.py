"""Suitability analysis before pruning: where the parameters and MACs are, how much accuracy
each prunable channel group costs when pruned alone, and a short verdict.

Every figure is measured on the model itself: layer counts from torch-pruning's op counter,
sensitivity from really pruning a copy of the model one group at a time and running it on the
held-out split, reductions from really pruning a whole copy at the given ratio.
"""

from __future__ import annotations

import contextlib
import copy
import io
import statistics
import warnings
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import UserError
from harness.optimize.finetune import torch_predict
from harness.optimize.profile import count_params_macs, layer_params_macs
from harness.optimize.prune import PruneSettings, _build_pruner, make_importance, structured_prune

if TYPE_CHECKING:
    import torch
    from torch import nn

# Sensitivity runs on at most this many held-out samples: enough to see a drop of a few
# points, small enough that 20 pruned copies of a ResNet-50 run in a minute on a laptop.
SENSITIVITY_SAMPLES = 256
# A group whose pruning alone costs more than this (top-1 or agreement, 0..1) counts as sensitive.
SENSITIVE_DROP = 0.05
# Depthwise convs at least this share of the spatial (k > 1) convs: a compact MobileNet- or
# EfficientNet-style net (there nearly every spatial conv but the stem is depthwise; ResNets: none).
COMPACT_DEPTHWISE_SHARE = 0.5


@dataclass
class AnalysisReport:
    """layers: name, type, params, macs, out_channels per weighted layer. sensitivity: per
    pruned group, the root layer, channels removed and the measured metric drop. reduction:
    params/MACs before and after pruning a whole copy at ``ratio``."""

    model: str
    params: int
    macs: int
    layers: list[dict]
    sensitivity: list[dict]
    verdict: str
    ratio: float = 0.3
    metric: str = "top1"  # "top1" with labels, "agreement" with the unpruned model otherwise
    baseline_metric: float | None = None
    reduction: dict = field(default_factory=dict)
    # Transformers: per attention layer, its heads and head width, and the measured drop when
    # its least important head (L1 of its q/k/v rows, torch-pruning's ranking) is removed.
    heads: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-able form (for --json)."""
        return asdict(self)


def analyze_model(source: Any, data: Any, *, ratio: float = 0.3, max_groups: int = 20) -> AnalysisReport:
    """Analyze ``source`` (a ModelSource: name, kind, input_shape, load_torch()) on ``data``
    (EvalData-like: x_test, y_test). Sensitivity covers at most ``max_groups`` groups, spread
    evenly over the network's depth."""
    PruneSettings(ratio=ratio).validate()
    if getattr(source, "is_tflite_file", False):
        raise UserError(f"cannot analyze {source.name}: analysis needs a PyTorch model, not a .tflite file")
    from harness.optimize.attention import prepare_attention

    model = source.load_torch().eval()
    example_input = _example_input(source, data)
    prepare_attention(model, example_input)  # heads as torch-pruning removes them (attention.py)
    params, macs = count_params_macs(model, example_input)
    layers = _layer_table(model, example_input)

    x_eval = data.x_test[:SENSITIVITY_SAMPLES]
    labels = None if data.y_test is None else np.asarray(data.y_test[:SENSITIVITY_SAMPLES])
    baseline_predictions = torch_predict(model, x_eval)
    metric = "top1" if labels is not None else "agreement"
    reference = labels if labels is not None else baseline_predictions
    baseline_metric = float(np.mean(baseline_predictions == reference))

    sensitivity = _sensitivity_scan(model, example_input, x_eval, reference, baseline_metric, ratio, max_groups, source.name)
    pruned = copy.deepcopy(model)
    whole = structured_prune(pruned, example_input, PruneSettings(ratio=ratio), model_name=source.name)
    reduction = {
        "params_before": whole.params_before,
        "params_after": whole.params_after,
        "macs_before": whole.macs_before,
        "macs_after": whole.macs_after,
        "params_reduction": whole.params_reduction,
        "macs_reduction": whole.macs_reduction,
        "metric_after": float(np.mean(torch_predict(pruned, x_eval) == reference)),
    }
    heads = _head_scan(model, x_eval, reference, baseline_metric)
    verdict = _verdict(layers, sensitivity, reduction, ratio, params)
    if heads:
        worst = max(heads, key=lambda row: row["drop"])
        verdict += (f"; {len(heads)} attention layers of {', '.join(sorted({str(r['heads']) for r in heads}))} heads: "
                    f"removing one head costs at most {worst['drop']:+.3f} ({worst['layer']}); "
                    "prune heads with heads=, MLP width with mlp=")
    return AnalysisReport(
        model=source.name,
        params=params,
        macs=macs,
        layers=layers,
        sensitivity=sensitivity,
        verdict=verdict,
        ratio=ratio,
        metric=metric,
        baseline_metric=baseline_metric,
        reduction=reduction,
        heads=heads,
    )


def _head_scan(model, x_eval, reference, baseline_metric) -> list[dict]:
    """Per attention layer: remove its least important head alone (in a copy) and measure.

    A head is removed by zeroing its value rows (weights and bias): its output is then zero, so
    the output projection adds nothing of it, which is what pruning the head computes."""
    import torch

    from harness.optimize.attention import find_attention

    rows = []
    for index, site in enumerate(find_attention(model)):
        heads, size = site.heads, site.head_size
        with torch.no_grad():
            weights = torch.cat([linear.weight for linear in (site.q, site.k, site.v)], dim=1)
            score = weights.abs().reshape(heads, size, -1).sum(dim=(1, 2))
        weakest = int(torch.argmin(score))
        trial = copy.deepcopy(model)
        value = find_attention(trial)[index].v
        with torch.no_grad():
            value.weight[weakest * size:(weakest + 1) * size] = 0
            if value.bias is not None:
                value.bias[weakest * size:(weakest + 1) * size] = 0
        metric_after = float(np.mean(torch_predict(trial, x_eval) == reference))
        rows.append({"layer": site.name, "heads": heads, "head_size": size, "weakest_head": weakest,
                     "metric_after": metric_after, "drop": baseline_metric - metric_after})
    return rows


def format_analysis(report: AnalysisReport, *, max_layers: int = 40) -> str:
    """The terminal form: the heaviest layers, the sensitivity table, the verdict."""
    lines = [f"{report.model}: {report.params:,} parameters, {report.macs:,} MACs"]
    lines.append(f"{'layer':<40} {'type':<18} {'params':>12} {'MACs':>14} {'out_ch':>7}")
    heaviest = sorted(report.layers, key=lambda layer: layer["macs"], reverse=True)[:max_layers]
    for layer in heaviest:
        lines.append(
            f"{layer['name'][:40]:<40} {layer['type'][:18]:<18} {layer['params']:>12,} {layer['macs']:>14,} {layer['out_channels'] or '':>7}"
        )
    lines.append("")
    lines.append(f"sensitivity at ratio {report.ratio} ({report.metric}, baseline {report.baseline_metric:.4f}):")
    lines.append(f"{'group root':<40} {'channels':>9} {'pruned':>7} {'after':>8} {'drop':>8}")
    for row in report.sensitivity:
        after = "error" if row.get("error") else f"{row['metric_after']:.4f}"
        drop = "" if row.get("error") else f"{row['drop']:+.4f}"
        lines.append(f"{row['group'][:40]:<40} {row['channels']:>9} {row['pruned_channels']:>7} {after:>8} {drop:>8}")
    if report.heads:
        lines.append("")
        lines.append(f"attention heads ({report.metric} after removing each layer's weakest head alone):")
        lines.append(f"{'attention layer':<40} {'heads':>6} {'width':>6} {'weakest':>8} {'after':>8} {'drop':>8}")
        for row in report.heads:
            lines.append(f"{row['layer'][:40]:<40} {row['heads']:>6} {row['head_size']:>6} {row['weakest_head']:>8} "
                         f"{row['metric_after']:>8.4f} {row['drop']:>+8.4f}")
    lines.append("")
    lines.append(f"verdict: {report.verdict}")
    return "\n".join(lines)


def _example_input(source: Any, data: Any) -> "torch.Tensor":
    import torch

    if getattr(source, "inputs", ()):
        return source.example_inputs()  # a tuple: one tensor per input
    if data is not None and data.x_test is not None and len(data.x_test):
        return torch.as_tensor(np.asarray(data.x_test[:1], dtype=np.float32))
    return torch.randn(*source.input_shape)


def _layer_table(model: "nn.Module", example_input: "torch.Tensor") -> list[dict]:
    """One row per leaf layer that has weights or does arithmetic worth counting."""
    counts = layer_params_macs(model, example_input)
    rows = []
    for name, module in model.named_modules():
        if list(module.children()) or module not in counts:
            continue
        params, macs = counts[module]
        if params == 0 and macs == 0:
            continue
        rows.append(
            {
                "name": name,
                "type": type(module).__name__,
                "params": params,
                "macs": macs,
                "out_channels": getattr(module, "out_channels", None) or getattr(module, "out_features", None) or getattr(module, "num_features", None),
                "depthwise": _is_depthwise(module),
                "kernel_size": [int(k) for k in np.atleast_1d(module.kernel_size)] if hasattr(module, "kernel_size") else [],
            }
        )
    return rows


def _sensitivity_scan(model, example_input, x_eval, reference, baseline_metric, ratio, max_groups, model_name) -> list[dict]:
    """Prune each chosen group alone, at ``ratio`` of its channels, in a fresh copy; measure."""
    import torch
    import torch_pruning as tp

    from harness.optimize.attention import find_attention, qkv_layers, sync_widths

    pruner = _build_pruner(model, example_input, PruneSettings(ratio=ratio, round_to=None), model_name)
    # Attention projections are scanned by whole heads (_head_scan): a cut of q alone that is
    # not a whole head leaves the module's reshape wrong.
    attention_projections = {id(linear) for linear in qkv_layers(find_attention(model))}
    roots = []
    for group in pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers, root_module_types=pruner.root_module_types):
        root = group[0].dep.target.module
        name = pruner.DG._module2name.get(root)
        channels = pruner.DG.get_out_channels(root)
        if name is not None and channels and channels > 1 and id(root) not in attention_projections:
            roots.append((name, channels))
    # Network order (first layer first): the graph lists groups in no useful order.
    depth = {name: position for position, (name, _) in enumerate(model.named_modules())}
    roots.sort(key=lambda root: depth.get(root[0], len(depth)))
    chosen = _spread(roots, max_groups)
    importance = make_importance("l1")
    rows = []
    for name, channels in chosen:
        n_pruned = max(1, min(channels - 1, int(round(channels * ratio))))
        row = {"group": name, "channels": channels, "pruned_channels": n_pruned}
        try:
            trial = copy.deepcopy(model)
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                graph = tp.DependencyGraph().build_dependency(trial, example_inputs=example_input)
            root = trial.get_submodule(name)
            prune_out = graph.get_pruner_of_module(root).prune_out_channels
            full = graph.get_pruning_group(root, prune_out, list(range(channels)))
            with torch.no_grad():
                scores = importance(full)
            drop_idxs = torch.argsort(scores)[:n_pruned].tolist()
            params_before = sum(p.numel() for p in trial.parameters())
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                graph.get_pruning_group(root, prune_out, drop_idxs).prune()
            sync_widths(trial)
            metric_after = float(np.mean(torch_predict(trial, x_eval) == reference))
            row.update(
                params_removed=params_before - sum(p.numel() for p in trial.parameters()),
                metric_after=metric_after,
                drop=baseline_metric - metric_after,
            )
        except Exception as exc:  # one odd group must not sink the whole analysis; it shows as an error row
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        rows.append(row)
    return rows


def _spread(items: list, limit: int) -> list:
    """At most ``limit`` items, evenly spaced from first to last (covers early and late layers)."""
    if limit <= 0:
        return []
    if len(items) <= limit:
        return items
    positions = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in sorted(set(positions.tolist()))]


def _verdict(layers: list[dict], sensitivity: list[dict], reduction: dict, ratio: float, params: int) -> str:
    spatial_convs = [layer for layer in layers if layer["type"].startswith("Conv") and int(np.prod(layer["kernel_size"] or [1])) > 1]
    depthwise_share = sum(layer["depthwise"] for layer in spatial_convs) / len(spatial_convs) if spatial_convs else 0.0
    drops = [row["drop"] for row in sensitivity if "drop" in row]
    sensitive = [row["group"] for row in sorted(sensitivity, key=lambda r: -r.get("drop", 0.0)) if row.get("drop", 0.0) > SENSITIVE_DROP]
    measured = (
        f"pruning {ratio:.0%} of channels removes {reduction['params_reduction']:.0%} of parameters "
        f"and {reduction['macs_reduction']:.0%} of MACs"
    )
    median_drop = statistics.median(drops) if drops else 0.0
    if depthwise_share >= COMPACT_DEPTHWISE_SHARE:
        head = (
            f"compact depthwise network ({depthwise_share:.0%} of spatial convs depthwise, {_param_count(params)}): "
            f"{measured}, but its layers are already thin and memory-bound on phones, so expect small latency gains; "
            "try int8 quantization first"
        )
    else:
        head = (
            f"dense network ({_param_count(params)}, no depthwise convs to speak of): {measured}; "
            "a strong pruning candidate for size and latency"
        )
    if sensitive:
        tail = (
            f"; {len(sensitive)} of {len(drops)} groups are sensitive (drop > {SENSITIVE_DROP:.0%} alone, worst: "
            f"{', '.join(sensitive[:3])}): fine-tune after pruning or lower the ratio there"
        )
    else:
        tail = f"; no group alone costs more than {SENSITIVE_DROP:.0%} (median drop {median_drop:+.3f})"
    return head + tail


def _is_depthwise(module: "nn.Module") -> bool:
    groups = getattr(module, "groups", 1)
    return groups > 1 and groups == getattr(module, "in_channels", -1)


def _param_count(params: int) -> str:
    return f"{params / 1e6:.1f} M params" if params >= 1e6 else f"{params / 1e3:.1f} k params"
