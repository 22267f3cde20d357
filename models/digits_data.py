"""scikit-learn's bundled 8x8 handwritten digits as bench's fixed split (no torch needed).

Real labelled data that ships inside the scikit-learn wheel, so nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIGITS_INPUT_SHAPE = (1, 1, 8, 8)
DIGITS_NUM_CLASSES = 10
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2
# load_digits() pixels are integers in 0..16; dividing by this maps them to [0, 1].
DIGITS_PIXEL_MAX = 16.0


@dataclass(frozen=True)
class DigitsData:
    """The fixed train/test split, numpy float32 NCHW images in [0, 1] and int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def digits_dataset() -> DigitsData:
    """The seeded, stratified 80/20 split; the same arrays on every call and every machine."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images.astype(np.float32) / DIGITS_PIXEL_MAX)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        labels,
        test_size=DIGITS_TEST_FRACTION,
        random_state=DIGITS_SPLIT_SEED,
        stratify=labels,
    )
    return DigitsData(
        x_train=np.ascontiguousarray(x_train),
        y_train=np.ascontiguousarray(y_train),
        x_test=np.ascontiguousarray(x_test),
        y_test=np.ascontiguousarray(y_test),
    )
