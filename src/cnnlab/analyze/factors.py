"""Factors of a study: varying settings, with keys that always move together (a ``[zip]`` group)
merged into one factor, since their effects cannot be told apart."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cnnlab.analyze.cells import format_value, short_names, sort_key, value_key
from cnnlab.analyze.rundata import RunData

# Settings that decide which images a run is evaluated on: runs differing in one of them were
# scored on different data, so their accuracies are not comparable.
EVALUATION_KEYS = (
    "data.dataset",
    "data.path",
    "data.eval",
    "data.val",
    "data.test_fraction",
    "data.test_limit",
)


@dataclass(frozen=True)
class Factor:
    """One or more setting keys that vary together, with the levels (value tuples) they take."""

    keys: tuple[str, ...]
    name: str  # short names joined by "+": ``loss``, ``optimizer+lr``
    levels: tuple[tuple[Any, ...], ...]

    @property
    def zipped(self) -> bool:
        """Whether several keys moved together."""
        return len(self.keys) > 1

    def level_of(self, run: RunData) -> tuple[Any, ...]:
        """The run's values of the factor's keys."""
        return tuple(run.settings.get(key) for key in self.keys)

    def label(self, level: tuple[Any, ...]) -> str:
        """A level for people: ``adam`` or ``adam+0.001``."""
        return "+".join(format_value(value) for value in level)

    def labels(self) -> list[str]:
        """Every level's label, in level order."""
        return [self.label(level) for level in self.levels]


def find_factors(runs: Sequence[RunData], varying: Sequence[str]) -> list[Factor]:
    """The factors behind ``varying`` keys: keys whose values map one-to-one across ``runs`` are one
    factor (in the order of their first key); levels sorted (numbers ascending, unset last)."""
    names = short_names(varying)
    remaining = list(varying)
    factors = []
    while remaining:
        group = [remaining.pop(0)]
        for other in list(remaining):
            if _moves_with(runs, group[0], other):
                group.append(other)
                remaining.remove(other)
        keys = tuple(group)
        seen: dict[str, tuple[Any, ...]] = {}
        for run in runs:
            level = tuple(run.settings.get(key) for key in keys)
            seen.setdefault(level_ident(level), level)
        ordered = sorted(seen.values(), key=lambda level: [sort_key(value) for value in level])
        factors.append(Factor(keys, "+".join(names[key] for key in keys), tuple(ordered)))
    return factors


def evaluation_differs(runs: Sequence[RunData]) -> dict[str, list[str]]:
    """The evaluation-data settings that differ between ``runs``, each with the values it takes."""
    differing = {}
    for key in EVALUATION_KEYS:
        values = {value_key(run.settings.get(key)): run.settings.get(key) for run in runs}
        if len(values) > 1:
            differing[key] = [format_value(value) for value in values.values()]
    return differing


def _moves_with(runs: Sequence[RunData], a: str, b: str) -> bool:
    pairs = {(value_key(run.settings.get(a)), value_key(run.settings.get(b))) for run in runs}
    return len(pairs) == len({p[0] for p in pairs}) == len({p[1] for p in pairs})


def level_ident(level: tuple[Any, ...]) -> str:
    """A hashable, canonical form of a level."""
    return "|".join(value_key(value) for value in level)
