"""Effect estimates of an unreplicated grid (one run per configuration): every main effect and
interaction as orthogonal contrasts, for a half-normal (Daniel) plot.

With one run per configuration nothing measures run-to-run noise: the estimates are all there is.
Each contrast column is orthonormal over the grid's runs, so under "no effect" every estimate has
the same variance and their absolute values fall on a half-normal line; effects that stand off it
are the large ones (Daniel, 1959). A two-level factor's estimate is scaled to the classic effect,
the mean at its second level minus the mean at its first; a two-level interaction's is half the
difference of one factor's effect between the other's levels, times two (the usual ±1 contrast)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cnnlab.analyze.factors import Factor, level_ident
from cnnlab.analyze.metrics import Metric
from cnnlab.analyze.rundata import RunData


@dataclass(frozen=True)
class EffectEstimate:
    """One contrast: a main effect or an interaction (``factors`` holds two or more names)."""

    factors: tuple[str, ...]
    label: str  # ``filters`` or ``filters × optimizer``; ``lr (contrast 2)`` for factors of 3+ levels
    estimate: float  # in the metric's units; for two-level factors, high minus low

    @property
    def source(self) -> str:
        """The term's name."""
        return self.label

    @property
    def size(self) -> float:
        """The estimate's absolute value."""
        return abs(self.estimate)


def effect_estimates(
    runs: Sequence[RunData], factors: Sequence[Factor], metric: Metric
) -> list[EffectEstimate]:
    """Every contrast of the full grid of ``factors`` over ``runs`` (one run with a value per
    configuration), largest first; empty when a configuration has no run or several."""
    cells: dict[tuple[str, ...], float] = {}
    for run in runs:
        key = tuple(level_ident(f.level_of(run)) for f in factors)
        if key in cells:
            return []
        cells[key] = metric.of(run)
    n = math.prod(len(f.levels) for f in factors)
    if len(cells) != n or not all(math.isfinite(v) for v in cells.values()):
        return []
    bases = [_orthonormal_contrasts(len(f.levels)) for f in factors]
    index = [{level_ident(level): i for i, level in enumerate(f.levels)} for f in factors]
    keys = list(cells)
    y = np.array([cells[key] for key in keys])
    positions = np.array([[index[j][key[j]] for j in range(len(factors))] for key in keys])
    found = []
    for order in range(1, len(factors) + 1):
        for subset in itertools.combinations(range(len(factors)), order):
            for columns in itertools.product(*(range(bases[j].shape[1]) for j in subset)):
                x = np.ones(len(keys))
                for j, column in zip(subset, columns, strict=True):
                    x *= bases[j][positions[:, j], column]
                x /= np.linalg.norm(x)
                beta = float(x @ y)
                names = tuple(factors[j].name for j in subset)
                label = " × ".join(names)
                if any(bases[j].shape[1] > 1 for j in subset):
                    label += " (contrast " + ",".join(str(c + 1) for c in columns) + ")"
                found.append(EffectEstimate(names, label, 2 * beta / math.sqrt(len(keys))))
    return sorted(found, key=lambda e: -e.size)


def _orthonormal_contrasts(levels: int) -> np.ndarray:
    """``levels`` × (levels − 1) columns orthogonal to the constant and to each other (Helmert, made
    unit length); for two levels (−1, +1)/√2, so the estimate is the second level minus the first."""
    matrix = np.zeros((levels, levels - 1))
    for k in range(1, levels):
        matrix[:k, k - 1] = -1.0
        matrix[k, k - 1] = float(k)
    return matrix / np.linalg.norm(matrix, axis=0)


def half_normal_scores(count: int) -> np.ndarray:
    """Expected positions of ``count`` ordered absolute values of normal noise (smallest first)."""
    from scipy import stats

    return stats.norm.ppf(0.5 + 0.5 * (np.arange(1, count + 1) - 0.5) / count)
