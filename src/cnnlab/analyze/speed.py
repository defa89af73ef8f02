"""How fast each configuration's training loss falls: epochs until its mean loss halves."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cnnlab.analyze.cells import Cell
from cnnlab.analyze.rundata import aligned

LOSS_FALL_FRACTION = 0.5  # the loss counts as fallen at this fraction of its epoch-1 value
DEFINITION = (
    "Loss fall speed: the epoch at which a configuration's training loss, averaged over its seeds, "
    f"first falls to {LOSS_FALL_FRACTION:g}× its epoch-1 value, interpolated linearly between epochs. "
    "It describes the curves and is not a tested difference; it is written only for studies with "
    "several seeds per configuration and one loss function (a ratio to the epoch-1 loss does not make "
    "two loss functions comparable)."
)


@dataclass(frozen=True)
class FallSpeed:
    """A configuration's loss fall: when it halved (None if never) and where it ended."""

    cell: Cell
    epochs_to_fall: float | None
    end_ratio: float  # last mean training loss / epoch-1 mean training loss
    last_epoch: int


def fall_speed(cell: Cell) -> FallSpeed | None:
    """The fall speed of one configuration; None without a finite epoch-1 training loss."""
    epochs, matrix = aligned(cell.runs, "train_loss")
    if not len(epochs):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN epochs (e.g. after a divergence)
        mean = np.nanmean(matrix, axis=0)
    finite = np.isfinite(mean)
    if not finite[0] or mean[0] <= 0:
        return None
    target = LOSS_FALL_FRACTION * mean[0]
    last = int(np.flatnonzero(finite)[-1])
    end_ratio = float(mean[last] / mean[0])
    for i in range(1, last + 1):
        if finite[i] and finite[i - 1] and mean[i] <= target:
            t = (mean[i - 1] - target) / (mean[i - 1] - mean[i])
            return FallSpeed(cell, float(epochs[i - 1] + t), end_ratio, int(epochs[last]))
    return FallSpeed(cell, None, end_ratio, int(epochs[last]))


def fall_speeds(cells: Sequence[Cell]) -> list[FallSpeed]:
    """Fall speeds of ``cells``, fastest first; those that never fell last, lowest end ratio first."""
    speeds = [speed for cell in cells if (speed := fall_speed(cell)) is not None]
    return sorted(
        speeds,
        key=lambda s: (
            s.epochs_to_fall is None,
            s.epochs_to_fall or 0.0,
            s.end_ratio if math.isfinite(s.end_ratio) else math.inf,
        ),
    )
