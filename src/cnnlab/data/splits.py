"""Seeded, stratified splits of a `Split`: hold out a fraction, or keep a limited subset."""

from __future__ import annotations

import torch

from cnnlab.data.bundle import Split


def _quotas(labels: torch.Tensor, total: int) -> torch.Tensor:
    """Per-class counts that add up to ``total``, proportional to the class sizes.

    Each class gets the floor of its share; the images left over go to the classes with the
    largest remainders (ties to the lower label), so totals are exact.
    """
    counts = torch.bincount(labels)
    if total == 0:
        return torch.zeros_like(counts)
    share = counts.double() * (total / len(labels))
    quota = share.floor().long()
    left = total - int(quota.sum())
    if left > 0:
        order = torch.argsort(share - quota, descending=True, stable=True)
        quota[order[:left]] += 1
    return torch.minimum(quota, counts)


def stratified_indices(labels: torch.Tensor, total: int,
                       generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random ``total`` of the indices of ``labels``, class proportions kept, and the rest.

    Both index tensors are in random order.
    """
    perm = torch.randperm(len(labels), generator=generator)
    shuffled = labels[perm]
    by_class = torch.argsort(shuffled, stable=True)
    counts = torch.bincount(shuffled)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(perm)
    rank[by_class] = torch.arange(len(labels)) - starts[shuffled[by_class]]
    chosen = rank < _quotas(labels, total)[shuffled]
    return perm[chosen], perm[~chosen]


def hold_out(split: Split, fraction: float, generator: torch.Generator) -> tuple[Split, Split]:
    """(held out, rest): a seeded, stratified ``fraction`` of ``split`` and what remains."""
    total = round(fraction * len(split))
    held, rest = stratified_indices(split.labels, total, generator)
    return split.take(held), split.take(rest)


def limit(split: Split, count: int | None, generator: torch.Generator) -> Split:
    """A seeded, stratified subset of ``count`` images; ``split`` itself if it is not larger."""
    if count is None or count >= len(split):
        return split
    kept, _ = stratified_indices(split.labels, count, generator)
    return split.take(kept)
