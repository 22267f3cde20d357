"""The default model: a small CNN on scikit-learn's bundled 8x8 handwritten digits.

Real labelled data that ships inside the scikit-learn wheel, so nothing is downloaded and a
full train + convert takes seconds on a laptop CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from models.digits_data import DIGITS_NUM_CLASSES, digits_dataset

DIGITS_CONV1_CHANNELS = 32
DIGITS_CONV2_CHANNELS = 64
DEFAULT_EPOCHS = 20
DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True)
class TrainReport:
    test_top1: float
    epochs: int
    seconds: float


class DigitsCNN(nn.Module):
    """conv-bn-relu x2, 2x2 max-pool, linear: ~29k parameters, input (N, 1, 8, 8).

    Wide enough (32 and 64 channels) that structured pruning and int8 show clearly in the
    .tflite size, small enough to train in seconds on a laptop CPU.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, DIGITS_CONV1_CHANNELS, kernel_size=3, padding=1),
            nn.BatchNorm2d(DIGITS_CONV1_CHANNELS),
            nn.ReLU(),
            nn.Conv2d(DIGITS_CONV1_CHANNELS, DIGITS_CONV2_CHANNELS, kernel_size=3, padding=1),
            nn.BatchNorm2d(DIGITS_CONV2_CHANNELS),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(DIGITS_CONV2_CHANNELS * 4 * 4, DIGITS_NUM_CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(images), 1))


def top1_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def torch_logits(model: nn.Module, images: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(images)).numpy()


def train_digits_cnn(seed: int = 0, epochs: int = DEFAULT_EPOCHS) -> tuple[DigitsCNN, TrainReport]:
    """Train DigitsCNN deterministically: same seed and epochs give bit-identical weights."""
    started = time.perf_counter()
    data = digits_dataset()
    torch.manual_seed(seed)
    # Deterministic kernels plus one thread: CPU float reductions then run in a fixed order.
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        model = DigitsCNN()
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        loss_fn = nn.CrossEntropyLoss()
        x_train = torch.from_numpy(data.x_train)
        y_train = torch.from_numpy(data.y_train)
        # A dedicated generator so the shuffle order depends on `seed` only.
        shuffle_generator = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            model.train()
            order = torch.randperm(len(x_train), generator=shuffle_generator)
            for start in range(0, len(order), DEFAULT_BATCH_SIZE):
                batch = order[start : start + DEFAULT_BATCH_SIZE]
                optimizer.zero_grad()
                loss_fn(model(x_train[batch]), y_train[batch]).backward()
                optimizer.step()
            scheduler.step()
        model.eval()
        test_top1 = top1_accuracy(torch_logits(model, data.x_test), data.y_test)
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(previous_deterministic, warn_only=previous_warn_only)
    report = TrainReport(test_top1=test_top1, epochs=epochs, seconds=time.perf_counter() - started)
    return model, report
