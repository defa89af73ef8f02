"""Configurations of a set of runs: which settings vary, and runs grouped into cells and levels."""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cnnlab.analyze.rundata import RunData
from cnnlab.config import MACHINE_KEYS
from cnnlab.data.labels import domains_label

# Settings that never define a configuration: the seed (a cell is all its seeds) and the
# machine-only keys that the config hash leaves out too.
IGNORED_KEYS = frozenset({"seed", *(".".join(path) for path in MACHINE_KEYS)})
VALUE_WIDTH = 40  # longest shown setting value; longer ones (layer lists) are cut with "…"


def value_key(value: Any) -> str:
    """A canonical, hashable form of a setting value (lists and tables included)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, sort_keys=True, default=str)


def format_value(value: Any) -> str:
    """A setting value for people: ``0.001``, ``adam``, ``true``, ``–`` for unset."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if (datasets := domains_label(value)) is not None:  # data.train / data.eval
        return datasets
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 1] + "…"


def is_number(value: Any) -> bool:
    """True for ints and finite floats, not for bools."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def varying_keys(runs: Sequence[RunData]) -> list[str]:
    """Dotted setting keys whose value differs between runs (seed and machine keys left out)."""
    keys: list[str] = []
    for run in runs:
        keys += [key for key in run.settings if key not in keys and key not in IGNORED_KEYS]
    return [key for key in keys if len({value_key(run.settings.get(key)) for run in runs}) > 1]


def fixed_settings(runs: Sequence[RunData]) -> dict[str, Any]:
    """Settings that every run shares (machine keys left out), in config order."""
    if not runs:
        return {}
    varying = set(varying_keys(runs))
    first = runs[0].settings
    return {k: v for k, v in first.items() if k not in varying and k not in IGNORED_KEYS}


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """The last part of each dotted key (``train.lr`` -> ``lr``), or the whole key where two clash."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {key: name if last.count(name) == 1 else key for key, name in zip(keys, last, strict=True)}


def settings_label(settings: dict[str, Any], names: dict[str, str]) -> str:
    """``optimizer=adam, lr=0.001`` for a cell's varying settings; ``all runs`` when none vary."""
    if not settings:
        return "all runs"
    return ", ".join(f"{names.get(key, key)}={format_value(value)}" for key, value in settings.items())


@dataclass
class Cell:
    """One configuration: the runs that share every varying setting and differ only in seed."""

    settings: dict[str, Any]
    runs: list[RunData]
    label: str

    @property
    def seeds(self) -> list[int]:
        """The seeds of its runs, sorted."""
        return sorted(run.record.seed for run in self.runs)


def group_cells(runs: Sequence[RunData], keys: Sequence[str]) -> list[Cell]:
    """Runs grouped by their values of ``keys``, in order of first appearance."""
    names = short_names(keys)
    cells: dict[tuple[str, ...], Cell] = {}
    for run in runs:
        settings = {key: run.settings.get(key) for key in keys}
        ident = tuple(value_key(value) for value in settings.values())
        if ident not in cells:
            cells[ident] = Cell(settings, [], settings_label(settings, names))
        cells[ident].runs.append(run)
    return list(cells.values())


def levels(runs: Sequence[RunData], key: str) -> list[tuple[Any, list[RunData]]]:
    """The values ``key`` takes with the runs at each value, sorted (numbers ascending, unset last)."""
    groups: dict[str, tuple[Any, list[RunData]]] = {}
    for run in runs:
        value = run.settings.get(key)
        groups.setdefault(value_key(value), (value, []))[1].append(run)
    return sorted(groups.values(), key=lambda item: sort_key(item[0]))


def sort_key(value: Any) -> tuple[int, float, str]:
    """Order of setting values: numbers ascending, then other values by label, unset last."""
    if value is None:
        return (2, 0.0, "")
    if is_number(value):
        return (0, float(value), "")
    return (1, 0.0, format_value(value))
