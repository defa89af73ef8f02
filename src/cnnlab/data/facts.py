"""One record per dataset: its loader, its image shape, whether it needs a path or has ``extra``.

The registry loads through it, the experiment checks and mixtures read it, and the tests are
parametrized over it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cnnlab.config import DataConfig
from cnnlab.data.bundle import Source
from cnnlab.data.imagefolder import load_imagefolder
from cnnlab.data.npz import load_npz
from cnnlab.data.sample import load_mnist_sample
from cnnlab.data.torchvision_sets import load_cifar10, load_fashion_mnist, load_mnist, load_svhn


@dataclass(frozen=True)
class DatasetFacts:
    """What is known about a dataset before it is loaded."""

    name: str
    loader: Callable[[DataConfig], Source]
    shape: tuple[int, int, int] | None  # (C, H, W); None: user data, known once read
    needs_path: bool = False  # data.path names the user's folder or file
    has_extra: bool = False  # data.extra adds the dataset's extra training images
    digits: bool = False  # images of digits: a horizontal flip makes them other shapes


DATASETS: dict[str, DatasetFacts] = {facts.name: facts for facts in (
    DatasetFacts("cifar10", load_cifar10, (3, 32, 32)),
    DatasetFacts("fashion-mnist", load_fashion_mnist, (1, 28, 28)),
    DatasetFacts("imagefolder", load_imagefolder, None, needs_path=True),
    DatasetFacts("mnist", load_mnist, (1, 28, 28), digits=True),
    DatasetFacts("mnist-sample", load_mnist_sample, (1, 28, 28), digits=True),
    DatasetFacts("npz", load_npz, None, needs_path=True),
    DatasetFacts("svhn", load_svhn, (3, 32, 32), has_extra=True, digits=True),
)}
