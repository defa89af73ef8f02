"""Domain studies: several training datasets mixed into one, several evaluation domains kept apart.

``data.train`` lists what is trained on together, ``data.eval`` what is evaluated one domain at a
time. Each entry is a dataset, optionally altered (``alter = "colour"``), resized (``size``) and
given a channel count (``channels``); training entries may carry a ``weight`` (how many times
each of its images appears per epoch on average: 2 doubles it, 0.5 keeps a random half) and a
``limit`` (at most that many of its images).

How the splits are made, so that no evaluation image is ever trained on:

* every base dataset (name, path, extra, size) is loaded and split once with ``load_data`` and
  the experiment's seed — the same train/val/test as a run on that dataset alone;
* a domain's train, val and test are its base dataset's splits, altered with a seed derived
  from (seed, domain, split), so "mnist" and "mnist + colour" hold out the same digits;
* the mixture is the training domains' train splits, capped, weighted and concatenated, then
  converted to the common size and channel count (``data.size``/``data.channels``; by default
  3 channels if any domain has colour, and the size all domains share);
* ``val`` and ``test`` of the bundle are the evaluation domains' splits concatenated, so
  ``val_acc`` is the accuracy over all evaluation images; ``val/<domain>_acc`` is per domain.
"""

from __future__ import annotations

import zlib

import torch

from cnnlab.config import DataConfig, DomainConfig
from cnnlab.data.alter import alter_images, alter_name, parse_alter
from cnnlab.data.bundle import DataBundle, Domain, Split, channel_stats
from cnnlab.data.facts import DATASETS
from cnnlab.data.labels import domain_label
from cnnlab.data.transforms import resize, set_channels
from cnnlab.errors import DataError, Problem


def domain_specs(cfg: DataConfig) -> tuple[list[DomainConfig], list[DomainConfig]]:
    """(training domains, evaluation domains) of a data config; evaluation defaults to training."""
    if cfg.train is None:
        train = [DomainConfig(dataset=cfg.dataset, alter=cfg.alter, path=cfg.path, extra=cfg.extra)]
    else:
        train = list(cfg.train)
    return train, list(cfg.eval) if cfg.eval is not None else train


def is_mixture(cfg: DataConfig) -> bool:
    """True when the config needs domains: several datasets, evaluation domains, or an alteration."""
    return cfg.train is not None or cfg.eval is not None or cfg.alter is not None


def domain_name(spec: DomainConfig) -> str:
    """``name`` if given, else the dataset with its alteration: ``mnist``, ``mnist-colour``."""
    return domain_label(spec.model_dump())


def _own_shape(spec: DomainConfig) -> tuple[int, int, int] | None:
    facts = DATASETS.get(spec.dataset)
    shape = facts.shape if facts is not None else None
    if shape is None:
        return None
    channels = 3 if spec.alter else spec.channels or shape[0]
    size = spec.size or shape[1]
    return channels, size, size


def common_shape(cfg: DataConfig, shapes: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    """The shape every domain is converted to; DataError when sizes differ and data.size is unset."""
    channels = cfg.channels or max(c for c, _, _ in shapes)
    if cfg.size is not None:
        return channels, cfg.size, cfg.size
    sizes = sorted({(h, w) for _, h, w in shapes})
    if len(sizes) > 1:
        raise DataError(str(Problem("data.size", None, "must be set: the datasets have different "
                                    "sizes (" + ", ".join(f"{h}×{w}" for h, w in sizes) + ")")))
    (height, width), = sizes
    return channels, height, width


def mixture_input_shape(cfg: DataConfig) -> tuple[int, int, int] | None:
    """The (C, H, W) a mixture config loads to, without loading; None if it holds user data."""
    train, evals = domain_specs(cfg)
    shapes = [_own_shape(spec) for spec in train + evals]
    if any(shape is None for shape in shapes):
        return None
    return common_shape(cfg, shapes)  # type: ignore[arg-type]


def derived_seed(seed: int, *parts: str) -> int:
    return zlib.crc32(":".join([str(seed), *parts]).encode())


def _convert(split: Split, shape: tuple[int, int, int]) -> Split:
    channels, size, _ = shape
    images = split.images
    if channels == 1:
        images = set_channels(images, 1)
    images = resize(images, size)
    if channels == 3:
        images = set_channels(images, 3)
    return split if images is split.images else Split(images, split.labels)


def _concat(splits: list[Split]) -> Split:
    if len(splits) == 1:
        return splits[0]
    return Split(torch.cat([s.images for s in splits]), torch.cat([s.labels for s in splits]))


class _Loader:
    """Loads each base dataset once and each (domain, split) alteration once."""

    def __init__(self, cfg: DataConfig, seed: int, load_single) -> None:
        self.cfg, self.seed, self.load_single = cfg, seed, load_single
        self.bases: dict[tuple, DataBundle] = {}
        self.altered: dict[tuple, Split | None] = {}

    def base(self, spec: DomainConfig) -> DataBundle:
        key = (spec.dataset, spec.path, spec.extra, spec.size, spec.channels)
        if key not in self.bases:
            single = self.cfg.model_copy(update={
                "dataset": spec.dataset, "path": spec.path, "extra": spec.extra, "size": spec.size,
                "channels": None if spec.alter else spec.channels, "alter": None, "train": None,
                "eval": None, "train_limit": None})
            self.bases[key] = self.load_single(single, self.seed)
        return self.bases[key]

    def split(self, spec: DomainConfig, which: str) -> Split | None:
        if which == "val" and self.cfg.val == "test":
            which = "test"
        base = self.base(spec)
        split = {"train": base.train, "val": base.val, "test": base.test}[which]
        if split is None or not spec.alter:
            return split
        options = parse_alter(spec.alter)
        key = (spec.dataset, spec.path, spec.extra, spec.size, options, which)
        if key not in self.altered:
            seed = derived_seed(self.seed, spec.dataset, alter_name(options), which)
            self.altered[key] = Split(alter_images(split.images, options, seed), split.labels)
        return self.altered[key]


def _weighted(split: Split, spec: DomainConfig, generator: torch.Generator) -> Split:
    """Cap at ``limit``, then repeat or subsample by ``weight`` (whole copies + a random rest)."""
    if spec.limit is not None and spec.limit < len(split):
        split = split.take(torch.randperm(len(split), generator=generator)[: spec.limit])
    if spec.weight == 1.0:
        return split
    target = round(len(split) * spec.weight)
    whole, rest = divmod(target, len(split))
    index = torch.cat([torch.arange(len(split)).repeat(whole),
                       torch.randperm(len(split), generator=generator)[:rest]])
    if len(index) == 0:
        raise DataError(str(Problem("data.train.weight", spec.weight,
                                    f"leaves no images of {domain_name(spec)}")))
    return split.take(index)


def load_mixture(cfg: DataConfig, seed: int, load_single) -> DataBundle:
    """The mixed training split and the evaluation domains of ``cfg``; ``load_single(cfg, seed)``
    loads one plain dataset (the registry's ``load_data``)."""
    train_specs, eval_specs = domain_specs(cfg)
    names = [domain_name(spec) for spec in eval_specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(str(Problem("data.eval", ", ".join(duplicates), "names a domain twice; give "
                                    "the entries different settings or a `name`")))
    loader = _Loader(cfg, seed, load_single)
    generator = torch.Generator().manual_seed(derived_seed(seed, "mixture"))

    parts = [_weighted(loader.split(spec, "train"), spec, generator) for spec in train_specs]
    evals = [(name, loader.split(spec, "val"), loader.split(spec, "test"))
             for name, spec in zip(names, eval_specs, strict=True)]
    shapes = [tuple(p.images.shape[1:]) for p in parts]
    shapes += [tuple(t.images.shape[1:]) for _, _, t in evals]
    shape = common_shape(cfg, shapes)  # type: ignore[arg-type]

    train = _concat([_convert(p, shape) for p in parts])
    if cfg.train_limit is not None and cfg.train_limit < len(train):
        train = train.take(torch.randperm(len(train), generator=generator)[: cfg.train_limit])
    domains = [Domain(name, None if val is None else _convert(val, shape), _convert(test, shape))
               for name, val, test in evals]
    if cfg.val == "test":
        for domain in domains:
            domain.val = domain.test
    val = None if any(d.val is None for d in domains) else _concat([d.val for d in domains])
    test = val if cfg.val == "test" and val is not None else _concat([d.test for d in domains])

    classes = [loader.base(spec).classes for spec in train_specs + eval_specs]
    if any(c != classes[0] for c in classes):
        raise DataError("data.train / data.eval: the datasets have different classes ("
                        + "; ".join(sorted({", ".join(c) for c in map(tuple, classes)})) + ")")
    mean, std = channel_stats(train.images)
    trained = " + ".join(f"{domain_name(s)} {len(p):,}" for s, p in zip(train_specs, parts, strict=True))
    evaluated = ", ".join(f"{d.name} {len(d.val) if d.val is not None else 0:,}/{len(d.test):,}"
                          for d in domains)
    description = (f"mixture: train {trained} = {len(train):,}; eval (val/test) {evaluated}; "
                   f"{'×'.join(map(str, shape))}")
    return DataBundle(train=train, val=val, test=test, classes=list(classes[0]), mean=mean, std=std,
                      description=description, domains=domains)
