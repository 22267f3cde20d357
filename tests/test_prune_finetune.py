"""Structured and unstructured pruning, lottery-ticket rewinding, fine-tuning and analysis on
real models: torchvision architectures (random init), a small residual CNN, and a CNN trained
on scikit-learn digits. Data objects are built here with EvalData's field names only."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from harness.errors import UserError
from harness.optimize.analyze import analyze_model, format_analysis
from harness.optimize.finetune import FineTuneSettings, fine_tune, torch_predict, torch_top1
from harness.optimize.profile import count_params_macs
from harness.optimize.prune import (
    IMPORTANCES,
    PruneSettings,
    masks_held,
    rewind_weights,
    sparsity_masks,
    structured_prune,
    unstructured_prune,
)

# The real EvalData: the code under test sees exactly what the pipeline gives it.
from models.datasets import EvalData as ToyData  # noqa: E402

ARCHITECTURES = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "resnet18", "resnet50", "efficientnet_b0")
SMALL_IMAGE = (1, 3, 64, 64)


@dataclass
class ToySource:
    """Carries ModelSource's fields used by analysis."""

    name: str
    build: Any
    input_shape: tuple[int, ...]
    num_classes: int | None = None
    kind: str = "factory"
    extra: dict = field(default_factory=dict)

    def load_torch(self, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return self.build().eval()


class ResidualCNN(nn.Module):
    """conv-BN-ReLU stem, one residual block (add), global pool, linear head."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.block = nn.Sequential(
            nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32),
        )
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.stem(x)
        features = torch.relu(features + self.block(features))
        return self.head(features.mean(dim=(2, 3)))


def digits_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 4 * 4, 10),
    )


@pytest.fixture(scope="module")
def digits() -> ToyData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    raw = load_digits()
    images = (raw.images / 16.0).astype(np.float32)[:, None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, raw.target.astype(np.int64), test_size=0.2, random_state=0, stratify=raw.target
    )
    return ToyData("digits", x_train, y_train, x_test, y_test, 10)


@pytest.fixture(scope="module")
def trained_digits(digits: ToyData) -> nn.Module:
    torch.manual_seed(0)
    model = digits_cnn()
    fine_tune(model, digits, FineTuneSettings(epochs=8, lr=3e-3))
    assert torch_top1(model, digits.x_test, digits.y_test) > 0.95
    return model


def torchvision_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return getattr(torchvision.models, name)(weights=None).eval()


# --- structured pruning -------------------------------------------------------------------


def test_resnet50_35_percent_round8_removes_over_half_the_parameters() -> None:
    model = torchvision_model("resnet50")
    report = structured_prune(model, torch.randn(*SMALL_IMAGE), PruneSettings(ratio=0.35, round_to=8), model_name="resnet50")
    assert report.params_before == 25_557_032  # torchvision's published resnet50 size
    assert report.params_after == sum(p.numel() for p in model.parameters())
    assert report.params_reduction >= 0.50
    assert report.macs_after < 0.6 * report.macs_before
    # round_to=8: every conv keeps a SIMD-friendly width (the 3-channel input aside)
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(width % 8 == 0 for width in widths), widths


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_architecture_prunes_and_still_classifies(name: str) -> None:
    model = torchvision_model(name)
    example = torch.randn(*SMALL_IMAGE)
    report = structured_prune(model, example, PruneSettings(ratio=0.35), model_name=name)
    assert report.params_after < 0.75 * report.params_before
    assert report.macs_after < report.macs_before
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 1000)
    last_linear = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    assert last_linear.out_features == 1000


def test_global_scope_prunes_unevenly_and_keeps_the_head() -> None:
    local_model, global_model = torchvision_model("resnet18"), torchvision_model("resnet18")
    example = torch.randn(*SMALL_IMAGE)
    structured_prune(local_model, example, PruneSettings(ratio=0.4, round_to=None))
    structured_prune(global_model, example, PruneSettings(ratio=0.4, scope="global", round_to=None))
    local_widths = [m.out_channels for m in local_model.modules() if isinstance(m, nn.Conv2d)]
    global_widths = [m.out_channels for m in global_model.modules() if isinstance(m, nn.Conv2d)]
    assert local_widths != global_widths  # one ranking over the whole net, not per layer
    assert global_model.fc.out_features == 1000


@pytest.mark.parametrize("importance", IMPORTANCES)
def test_each_importance_prunes_a_residual_net(importance: str) -> None:
    torch.manual_seed(0)
    model = ResidualCNN().eval()
    example = torch.randn(1, 3, 16, 16)
    calibration = [(torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))) for _ in range(2)]
    report = structured_prune(model, example, PruneSettings(ratio=0.5, importance=importance, round_to=None), calibration=calibration)
    # the residual add ties stem and block output: both must keep the same channels
    assert model.stem[0].out_channels == model.block[3].out_channels == model.head.in_features == 16
    assert model.block[0].out_channels == 16
    assert report.params_after < report.params_before
    assert model(example).shape == (1, 10)


class TinyAttentionNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(16, 64)
        self.attention = nn.MultiheadAttention(64, num_heads=4, batch_first=True)
        self.feed_forward = nn.Linear(64, 64)
        self.head = nn.Linear(64, 5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(tokens)
        attended, _ = self.attention(hidden, hidden, hidden)
        hidden = hidden + attended
        hidden = hidden + torch.relu(self.feed_forward(hidden))
        return self.head(hidden.mean(dim=1))


def test_attention_keeps_whole_heads_consistent() -> None:
    torch.manual_seed(0)
    model = TinyAttentionNet().eval()
    tokens = torch.randn(1, 10, 16)
    structured_prune(model, tokens, PruneSettings(ratio=0.5, round_to=None))
    # nn.MultiheadAttention is rebuilt with separate q/k/v/out Linears (harness.optimize.attention):
    # every head keeps the same share of its dimensions.
    attention = model.attention
    assert (attention.num_heads, attention.head_dim) == (4, 8)
    assert attention.q_proj.weight.shape == attention.k_proj.weight.shape == (32, 32)
    assert attention.out_proj.weight.shape == (32, 32)
    assert model(torch.randn(3, 10, 16)).shape == (3, 5)


def test_random_importance_follows_the_seed() -> None:
    kept = []
    for seed in (1, 1, 2):
        torch.manual_seed(0)
        model = ResidualCNN().eval()
        structured_prune(model, torch.randn(1, 3, 16, 16), PruneSettings(ratio=0.5, importance="random", round_to=None, seed=seed))
        kept.append(model._bench_kept_channels["block.0"]["out"])
    assert kept[0] == kept[1]
    assert kept[0] != kept[2]


def test_iterative_steps_call_fine_tune_and_evaluate_after_each_step() -> None:
    torch.manual_seed(0)
    model = ResidualCNN().eval()
    fine_tuned = []
    report = structured_prune(
        model,
        torch.randn(1, 3, 16, 16),
        PruneSettings(ratio=0.75, iterative_steps=3, round_to=None),
        fine_tune_step=lambda m: fine_tuned.append(m.stem[0].out_channels),
        evaluate=lambda m: float(m.stem[0].out_channels),  # a stand-in metric that tracks width
    )
    assert fine_tuned == [24, 16, 8]
    assert [step["accuracy_after_prune"] for step in report.steps] == [24.0, 16.0, 8.0]
    params = [step["params"] for step in report.steps]
    assert params == sorted(params, reverse=True) and params[-1] == report.params_after
    assert report.accuracy_before == 32.0


def test_taylor_without_calibration_is_a_user_error() -> None:
    with pytest.raises(UserError, match="calibration"):
        structured_prune(ResidualCNN().eval(), torch.randn(1, 3, 16, 16), PruneSettings(ratio=0.5, importance="taylor"))


@pytest.mark.parametrize("ratio", [0.0, 1.0, 1.5, -0.2])
def test_ratio_outside_zero_one_is_a_user_error(ratio: float) -> None:
    model = ResidualCNN().eval()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(UserError, match=r"ratio .* outside \(0, 1\)"):
        structured_prune(model, torch.randn(1, 3, 16, 16), PruneSettings(ratio=ratio))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(UserError, match=r"outside \(0, 1\)"):
        unstructured_prune(model, ratio)


class ForwardUnderNoGrad(nn.Module):
    """Runs fine, but hides its graph from autograd: torch-pruning sees nothing to follow."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features = self.conv(x).mean(dim=(2, 3))
        return self.fc(features)


class ReturnsText(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3)

    def forward(self, x: torch.Tensor) -> str:
        return "not a tensor"


@pytest.mark.parametrize(
    "build",
    [ForwardUnderNoGrad, ReturnsText, lambda: torch.jit.script(ResidualCNN().eval())],
    ids=["no_grad", "returns_text", "torchscript"],
)
def test_untraceable_model_is_a_one_line_user_error(build) -> None:
    with pytest.raises(UserError) as caught:
        structured_prune(build(), torch.randn(1, 3, 16, 16), PruneSettings(ratio=0.5), model_name="pkg.mod:odd")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("cannot prune pkg.mod:odd")


# --- unstructured pruning and rewinding ---------------------------------------------------


def test_unstructured_sparsity_is_reached_and_permanent() -> None:
    model = torchvision_model("resnet18")
    result = unstructured_prune(model, 0.8)
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    zeros = sum(int((w == 0).sum()) for w in weights)
    total = sum(w.numel() for w in weights)
    assert result == {"sparsity": zeros / total, "zeros": zeros, "params": total}
    assert result["sparsity"] == pytest.approx(0.8, abs=0.001)
    # permanent: plain parameters again, no masks, no re-parametrisation hooks
    keys = model.state_dict().keys()
    assert not [k for k in keys if k.endswith(("_orig", "_mask"))]
    assert not any(m._forward_pre_hooks for m in model.modules())
    assert all(isinstance(w, nn.Parameter) for w in weights)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 1000)


def test_rewind_puts_surviving_channels_back_to_early_values() -> None:
    torch.manual_seed(0)
    model = torchvision_model("mobilenet_v3_small")  # depthwise convs, SE blocks, residual adds
    early = {k: v.clone() for k, v in model.state_dict().items()}
    structured_prune(model, torch.randn(*SMALL_IMAGE), PruneSettings(ratio=0.4))
    pruned = {k: v.clone() for k, v in model.state_dict().items()}

    # Early state == the state pruning started from: rewinding must reproduce the pruned tensors.
    rewind_weights(model, early)
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, pruned[key]), key

    # Shifted early state: every surviving float value comes back shifted by exactly that much.
    shifted = {k: v + 1.0 if v.is_floating_point() else v for k, v in early.items()}
    rewind_weights(model, shifted)
    for key, tensor in model.state_dict().items():
        expected = pruned[key] + 1.0 if tensor.is_floating_point() else pruned[key]
        assert torch.equal(tensor, expected), key


def test_a_ticket_rewound_and_retrained_with_its_mask_held_stays_sparse(digits: ToyData) -> None:
    from models.digits import DigitsCNN

    torch.manual_seed(0)
    model = DigitsCNN()
    early = copy.deepcopy(model.state_dict())
    unstructured_prune(model, 0.8)
    masks = sparsity_masks(model)
    rewind_weights(model, early, masks)
    with masks_held(model, masks):
        fine_tune(model, digits, FineTuneSettings(epochs=0.5, lr=1e-3))
    for name, module in model.named_modules():
        if name in masks:
            assert not isinstance(module.weight, torch.nn.Parameter) or module.weight.requires_grad
            assert torch.all(module.weight[~masks[name]] == 0), name
            assert not hasattr(module, "weight_orig")  # the parametrisation was made permanent


def test_rewind_without_a_prune_record_is_a_user_error() -> None:
    model = ResidualCNN()
    smaller = {k: v[:8] if v.dim() else v for k, v in model.state_dict().items()}
    with pytest.raises(UserError, match="cannot rewind"):
        rewind_weights(model, smaller)


# --- fine-tuning --------------------------------------------------------------------------


def test_fine_tune_recovers_accuracy_lost_to_heavy_pruning(digits: ToyData, trained_digits: nn.Module) -> None:
    model = copy.deepcopy(trained_digits)
    accuracy = lambda m: torch_top1(m, digits.x_test, digits.y_test)  # noqa: E731
    report = structured_prune(model, torch.from_numpy(digits.x_test[:1]), PruneSettings(ratio=0.8, round_to=None), evaluate=accuracy)
    after_prune = report.steps[0]["accuracy_after_prune"]
    print(f"digits top-1: baseline {report.accuracy_before:.4f}, pruned 80% {after_prune:.4f}", end="")
    assert after_prune < report.accuracy_before - 0.3  # heavy pruning really hurts

    tuned = fine_tune(model, digits, FineTuneSettings(epochs=2, lr=1e-3))
    print(f", fine-tuned {tuned.val_top1[-1]:.4f}")
    assert len(tuned.val_top1) == 2 and tuned.device in ("cpu", "cuda") and tuned.steps > 0
    assert tuned.val_top1[-1] == accuracy(model)
    assert tuned.val_top1[-1] > after_prune + 0.4
    assert not model.training


def test_distillation_without_labels_raises_agreement_with_the_teacher(digits: ToyData, trained_digits: nn.Module) -> None:
    unlabelled = ToyData("unlabelled", digits.x_train, None, digits.x_test, None, None)
    student = copy.deepcopy(trained_digits)
    structured_prune(student, torch.from_numpy(digits.x_test[:1]), PruneSettings(ratio=0.8, round_to=None))
    agreement_before = float(np.mean(torch_predict(student, digits.x_test) == torch_predict(trained_digits, digits.x_test)))
    report = fine_tune(
        student, unlabelled, FineTuneSettings(epochs=2, lr=1e-3, distill=True), teacher=trained_digits
    )
    assert report.val_metric == "agreement"
    assert report.val_top1[-1] > agreement_before + 0.2


def test_fine_tune_without_labels_or_teacher_is_a_user_error(digits: ToyData) -> None:
    unlabelled = ToyData("sample_images", digits.x_train, None, digits.x_test, None, None)
    with pytest.raises(UserError, match="no labels"):
        fine_tune(digits_cnn(), unlabelled, FineTuneSettings())


# --- counting and analysis ----------------------------------------------------------------


def test_count_params_macs_on_a_known_layer() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
    params, macs = count_params_macs(model, torch.randn(1, 3, 8, 8))
    assert params == 8 * 3 * 9 + 512 * 10 + 10
    assert macs >= 8 * 8 * 8 * 27 + 512 * 10  # conv MACs + linear MACs (bias adds may count too)
    assert macs <= 8 * 8 * 8 * 27 + 512 * 10 + 10


def test_analysis_of_a_trained_net_with_labels(digits: ToyData, trained_digits: nn.Module) -> None:
    source = ToySource("digits_toy", lambda: copy.deepcopy(trained_digits), (1, 1, 8, 8), 10)
    report = analyze_model(source, digits, ratio=0.5, max_groups=4)
    assert report.metric == "top1" and report.baseline_metric > 0.95
    assert {layer["name"] for layer in report.layers} >= {"0", "3", "8"}
    conv2 = next(layer for layer in report.layers if layer["name"] == "3")
    assert conv2["params"] == 32 * 64 * 9 + 64 and conv2["out_channels"] == 64
    assert [row["group"] for row in report.sensitivity] == ["0", "3"]  # the classifier is never a group
    assert all(row["drop"] == pytest.approx(report.baseline_metric - row["metric_after"]) for row in report.sensitivity)
    assert report.reduction["params_after"] < report.reduction["params_before"]
    assert report.verdict.startswith("dense network")
    assert "sensitivity at ratio 0.5" in format_analysis(report)


def test_analysis_verdict_tells_compact_from_wide() -> None:
    rng = np.random.default_rng(0)
    images = ToyData("sample_images", None, None, rng.normal(size=(16, 3, 64, 64)).astype(np.float32), None, None)
    compact = analyze_model(ToySource("mobilenet_v3_small", lambda: torchvision_model("mobilenet_v3_small"), SMALL_IMAGE), images, max_groups=3)
    wide = analyze_model(ToySource("resnet18", lambda: torchvision_model("resnet18"), SMALL_IMAGE), images, max_groups=3)
    assert compact.metric == wide.metric == "agreement" and compact.baseline_metric == 1.0
    assert compact.verdict.startswith("compact depthwise network")
    assert wide.verdict.startswith("dense network")
    assert len(compact.sensitivity) == len(wide.sensitivity) == 3
    assert all("error" not in row for row in compact.sensitivity + wide.sensitivity)
