"""Fine-tuning after pruning: Adam at a low learning rate with a cosine schedule, optionally
distilling from the unpruned model. Runs on CUDA when present, else CPU.

The data is an EvalData-like object: only the fields x_train, y_train, x_test, y_test are read,
so any object carrying them works.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from harness.errors import UserError
from harness.optimize.variants import check_knob

if TYPE_CHECKING:
    import torch
    from torch import nn

_log = logging.getLogger(__name__)

# Batches this small make BatchNorm's training statistics meaningless (size 1 even errors).
_MIN_BATCH = 2


@dataclass
class FineTuneSettings:
    """Epochs may be fractional (0.5 = half a pass over the training split)."""

    epochs: float = 1.0
    lr: float = 1e-4
    batch_size: int = 64
    distill: bool = False  # soft targets from the teacher (the unpruned model) added to the loss
    temperature: float = 4.0  # softens both distributions in the distillation term
    alpha: float = 0.5  # weight of the distillation term; 1 - alpha goes to the label loss
    seed: int = 0

    def validate(self) -> None:
        """UserError for values that cannot train. The learning rate has the rule of the lr
        knob (harness.optimize.variants.KNOBS); epochs not ft's: ft=0 means "no fine-tuning", while
        fine_tune with 0 epochs has nothing to do."""
        if not self.epochs > 0:
            raise UserError(f"fine-tune epochs {self.epochs!r} must be > 0")
        check_knob("lr", self.lr, "fine-tune learning rate")
        if not isinstance(self.batch_size, int) or self.batch_size < _MIN_BATCH:
            raise UserError(f"fine-tune batch size {self.batch_size!r} must be an integer >= {_MIN_BATCH}")
        if not 0.0 <= self.alpha <= 1.0:
            raise UserError(f"distillation alpha {self.alpha!r} must be within [0, 1]")
        if not self.temperature > 0:
            raise UserError(f"distillation temperature {self.temperature!r} must be > 0")


@dataclass
class FineTuneReport:
    """val_top1: validation accuracy after each (possibly partial) epoch; top-1 against the
    labels, or agreement with the teacher when the data has none."""

    epochs: float
    val_top1: list[float] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"
    steps: int = 0
    val_metric: str = "top1"  # "top1" (labels) or "agreement" (with the teacher)


def fine_tune(
    model: "nn.Module",
    data: Any,
    settings: FineTuneSettings,
    *,
    teacher: "nn.Module | None" = None,
    on_epoch: "Callable[[int, int, float], None] | None" = None,
) -> FineTuneReport:
    """Train ``model`` in place on data.x_train; returns per-epoch validation figures.

    Labels come from data.y_train; without labels the teacher's predictions are the only
    target (distillation-only). With settings.distill, the teacher's softened outputs are
    mixed into the loss. The model ends in eval mode on the device it came from.
    `on_epoch(epoch, epochs, val)` is called after each (possibly partial) epoch, for progress.
    """
    import torch
    import torch.nn.functional as F
    settings.validate()
    if data.x_train is None or len(data.x_train) < _MIN_BATCH:
        raise UserError(f"cannot fine-tune: dataset {getattr(data, 'name', '?')!r} has no training split")
    has_labels = data.y_train is not None
    if not has_labels and teacher is None:
        raise UserError(
            f"cannot fine-tune on {getattr(data, 'name', '?')!r}: it has no labels and no teacher model to distil from"
        )
    if settings.distill and teacher is None:
        raise UserError("distillation needs a teacher model (the unpruned baseline)")

    started = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    home_device = _device_of(model)
    model.to(device)
    if teacher is not None:
        teacher_home = _device_of(teacher)
        teacher.to(device).eval()

    from models.inputs import torch_inputs

    x_train = torch_inputs(data.x_train)  # one tensor per model input
    y_train = torch.as_tensor(np.asarray(data.y_train, dtype=np.int64)) if has_labels else None
    batches_per_epoch = max(1, len(x_train[0]) // settings.batch_size)
    total_steps = max(1, math.ceil(settings.epochs * batches_per_epoch))

    torch.manual_seed(settings.seed)
    shuffle = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    report = FineTuneReport(epochs=settings.epochs, device=device.type, val_metric="top1" if has_labels else "agreement")

    epochs_total = math.ceil(total_steps / batches_per_epoch)
    step = 0
    try:
        while step < total_steps:
            model.train()
            order = torch.randperm(len(x_train[0]), generator=shuffle)
            for start in range(0, len(order), settings.batch_size):
                batch = order[start : start + settings.batch_size]
                if len(batch) < _MIN_BATCH or step >= total_steps:
                    break
                x = tuple(tensor[batch].to(device) for tensor in x_train)
                logits = model(*x)
                loss = _loss(logits, x, y_train[batch].to(device) if has_labels else None, teacher, settings, F)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                step += 1
            report.val_top1.append(_validate(model, data, teacher))
            _log.info("fine-tune epoch %d: val %s %.4f", len(report.val_top1), report.val_metric,
                      report.val_top1[-1])
            if on_epoch is not None:
                on_epoch(len(report.val_top1), epochs_total, report.val_top1[-1])
    finally:
        model.eval()
        model.to(home_device)
        if teacher is not None:
            teacher.to(teacher_home)
    report.steps = step
    report.seconds = time.perf_counter() - started
    return report


def torch_top1(model: "nn.Module", x: Any, y: Any, batch_size: int = 256) -> float:
    """Fraction of samples whose arg-max logit is the label (0..1), in eval mode, no gradients."""
    labels = np.asarray(y)
    predictions = torch_predict(model, x, batch_size=batch_size)
    return float(np.mean(predictions == labels)) if len(labels) else 0.0


def torch_predict(model: "nn.Module", x: Any, batch_size: int = 256) -> np.ndarray:
    """Arg-max class of every sample (numpy int64), batched, eval mode, on the model's device."""
    import torch

    model.eval()
    device = _device_of(model)
    from models.inputs import torch_inputs

    x_all = torch_inputs(x)  # one tensor per model input
    predictions = []
    with torch.no_grad():
        for start in range(0, len(x_all[0]), batch_size):
            batch = (tensor[start : start + batch_size].to(device) for tensor in x_all)
            predictions.append(model(*batch).argmax(dim=1).cpu())
    return torch.cat(predictions).numpy() if predictions else np.zeros(0, dtype=np.int64)


def _loss(logits, x, labels, teacher, settings: FineTuneSettings, F) -> "torch.Tensor":
    import torch

    if teacher is None:
        return F.cross_entropy(logits, labels)
    with torch.no_grad():
        teacher_logits = teacher(*x)
    if labels is None:
        # No labels at all: the teacher's decisions are the targets, softened when distilling.
        if not settings.distill:
            return F.cross_entropy(logits, teacher_logits.argmax(dim=1))
        return _distillation(logits, teacher_logits, settings.temperature, F)
    hard = F.cross_entropy(logits, labels)
    if not settings.distill:
        return hard
    soft = _distillation(logits, teacher_logits, settings.temperature, F)
    return settings.alpha * soft + (1.0 - settings.alpha) * hard


def _distillation(student_logits, teacher_logits, temperature: float, F) -> "torch.Tensor":
    # Hinton et al.: KL between softened distributions, times T^2 so its gradients keep the
    # same scale as the hard-label loss whatever the temperature.
    return F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean",
    ) * (temperature**2)


def _validate(model: "nn.Module", data: Any, teacher: "nn.Module | None") -> float:
    if data.y_test is not None:
        return torch_top1(model, data.x_test, data.y_test)
    if teacher is not None:
        return float(np.mean(torch_predict(model, data.x_test) == torch_predict(teacher, data.x_test)))
    return float("nan")


def _device_of(model: "nn.Module") -> "torch.device":
    import torch

    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")
