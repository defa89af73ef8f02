"""The in-memory dataset types: a `Split` of uint8 images and labels, and the `DataBundle`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch


@dataclass
class Split:
    """Images (uint8, N×C×H×W, contiguous) and their labels (int64, N)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 N×C×H×W, got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(f"labels must be int64 of shape ({len(self.images)},), got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")
        self.images = self.images.contiguous()

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: torch.Tensor) -> Split:
        """The images and labels at ``index`` (a copy, in that order)."""
        return Split(self.images[index], self.labels[index])


@dataclass
class Domain:
    """One evaluation domain of a mixture: its name (``val/<name>_acc``), validation and test splits."""

    name: str
    val: Split | None
    test: Split


@dataclass
class DataBundle:
    """Train, validation and test splits with class names and train-split channel statistics.

    When ``val`` is the test set (``data.val = "test"``), ``val`` and ``test`` are the same object.
    ``domains`` lists the evaluation domains of a mixture (``data.train``/``data.eval``); then
    ``val`` and ``test`` are their splits concatenated.
    """

    train: Split
    val: Split | None
    test: Split | None
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str
    domains: list[Domain] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        channels, height, width = self.train.images.shape[1:]
        return channels, height, width

    @property
    def num_classes(self) -> int:
        """Number of classes (labels are 0 .. num_classes - 1)."""
        return len(self.classes)

    def facts(self) -> dict[str, int]:
        """What a stored run keeps of its data: the class count and each split's size (0: none)."""
        return {"classes": self.num_classes, "train": len(self.train),
                "val": len(self.val) if self.val is not None else 0,
                "test": len(self.test) if self.test is not None else 0}


@dataclass
class Source:
    """What a dataset loader returns: train, test (None: split off later) and class names."""

    train: Split
    test: Split | None
    classes: list[str]
    description: str


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation in 0–1 scale, exact, from a 256-bin histogram
    (the channels' histograms counted side by side on torch's threads: bincount is serial)."""
    values = torch.arange(256, dtype=torch.float64) / 255

    def histogram(channel: int) -> torch.Tensor:
        return torch.bincount(images[:, channel].reshape(-1), minlength=256).double()

    workers = min(images.shape[1], torch.get_num_threads())
    if workers > 1:  # torch lets go of the GIL while it counts
        with ThreadPoolExecutor(workers) as pool:
            histograms = list(pool.map(histogram, range(images.shape[1])))
    else:
        histograms = [histogram(channel) for channel in range(images.shape[1])]
    means, stds = [], []
    for counts in histograms:
        total = counts.sum()
        mean = (counts * values).sum() / total
        var = (counts * (values - mean) ** 2).sum() / total
        means.append(float(mean))
        stds.append(float(var.sqrt()))
    return tuple(means), tuple(stds)
