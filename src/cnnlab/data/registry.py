"""The dataset registry and `load_data`: a loader by name, then splits, limits and conversions."""

from __future__ import annotations

import torch

from cnnlab.config import DataConfig
from cnnlab.data.bundle import DataBundle, Split, channel_stats
from cnnlab.data.facts import DATASETS
from cnnlab.data.mixture import is_mixture, load_mixture, mixture_input_shape
from cnnlab.data.splits import hold_out, limit
from cnnlab.data.transforms import resize, set_channels
from cnnlab.errors import DataError, Problem, one_of


def list_datasets() -> list[str]:
    """Names accepted by ``data.dataset``, sorted."""
    return sorted(DATASETS)


def input_shape(cfg: DataConfig) -> tuple[tuple[int, int, int], int] | None:
    """((C, H, W), number of classes) that ``load_data(cfg, …)`` gives, without loading it.

    None for user data (imagefolder, npz), whose shape is only known once it is read.
    """
    if is_mixture(cfg):
        shape = mixture_input_shape(cfg)
        return None if shape is None else (shape, 10)
    facts = DATASETS.get(cfg.dataset)
    if facts is None or facts.shape is None:
        return None
    channels, height, width = facts.shape
    if cfg.size is not None:
        height = width = cfg.size
    return (cfg.channels or channels, height, width), 10


def _convert(split: Split, cfg: DataConfig) -> Split:
    """Channels and size as asked; gray→RGB after resizing and RGB→gray before, to do less work."""
    images = split.images
    if cfg.channels == 1:
        images = set_channels(images, 1)
    if cfg.size is not None:
        images = resize(images, cfg.size)
    if cfg.channels == 3:
        images = set_channels(images, 3)
    return split if images is split.images else Split(images, split.labels)


def _shape(split: Split) -> str:
    return "×".join(map(str, split.images.shape[1:]))


def load_data(cfg: DataConfig, seed: int) -> DataBundle:
    """Load ``cfg.dataset`` into memory as uint8 tensors and split it; same cfg and seed, same data.

    Order: the dataset's test set (or a stratified ``test_fraction`` of it), the validation
    split (a stratified ``val`` fraction of train, or the test set), then ``train_limit`` and
    ``test_limit`` subsets, then channel conversion and resizing. All randomness comes from one
    ``torch.Generator`` seeded with ``seed``. Raises DataError for anything a user can get wrong.
    Mixtures and altered datasets (``data.train``, ``data.eval``, ``data.alter``) are built from
    such single-dataset loads by `cnnlab.data.mixture`.
    """
    if is_mixture(cfg):
        return load_mixture(cfg, seed, load_data)
    facts = DATASETS.get(cfg.dataset)
    if facts is None:
        raise DataError(str(Problem("data.dataset", cfg.dataset, one_of(list_datasets(), cfg.dataset))))
    if facts.needs_path and not cfg.path:
        raise DataError(str(Problem("data.path", None, f"is required for dataset {cfg.dataset!r}")))
    source = facts.loader(cfg)
    if len(source.classes) < 2:
        count = f"{len(source.classes)} class{'' if len(source.classes) == 1 else 'es'}"
        found = ", ".join(map(str, source.classes)) or "none"
        raise DataError(f"{source.description}: has {count} ({found}); a classifier needs at least two")
    generator = torch.Generator().manual_seed(seed)

    train, test = source.train, source.test
    test_note = ""
    if test is None:
        test, train = hold_out(train, cfg.test_fraction, generator)
        test_note = f" ({cfg.test_fraction * 100:g}% split)"
    val = None
    if cfg.val != "test" and cfg.val > 0:
        val, train = hold_out(train, cfg.val, generator)
        if len(val) == 0:
            raise DataError(str(Problem("data.val", cfg.val, f"leaves no validation images "
                                        f"from {len(train)} training images")))
    train = limit(train, cfg.train_limit, generator)
    test = limit(test, cfg.test_limit, generator)
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"{source.description}: too few images to split: {len(train)} train, "
                        f"{len(test)} test")

    original = _shape(train)
    train, test = _convert(train, cfg), _convert(test, cfg)
    val = test if cfg.val == "test" else None if val is None else _convert(val, cfg)
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(f"{source.description}: train images are {_shape(train)} but test images "
                        f"are {_shape(test)}; set data.size and data.channels to make them match")
    top = int(max(train.labels.max(), test.labels.max()))
    if top >= len(source.classes):
        raise DataError(f"{source.description}: label {top} but only {len(source.classes)} classes")

    counts = [f"{len(train):,} train"]
    if cfg.val == "test":
        counts.append(f"{len(test):,} test{test_note} (also the validation set)")
    else:
        counts += [f"{len(val):,} val"] if val is not None else []
        counts.append(f"{len(test):,} test{test_note}")
    shape = _shape(train) + ("" if _shape(train) == original else f" (from {original})")
    mean, std = channel_stats(train.images)
    return DataBundle(train=train, val=val, test=test, classes=list(source.classes), mean=mean,
                      std=std, description=f"{source.description}: {' / '.join(counts)}, {shape}")
