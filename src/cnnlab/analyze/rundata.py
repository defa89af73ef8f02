"""A stored run held for analysis: its record, its epochs as arrays and its config as dotted keys."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnlab.data.facts import RunFacts, run_facts
from cnnlab.store import RunRecord


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}``; lists stay whole values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@dataclass(eq=False)
class RunData:
    """One run with its epochs; ``settings`` is its config flattened to dotted keys (equal only to itself)."""

    record: RunRecord
    epochs: list[dict[str, Any]]
    settings: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.settings = flatten_config(self.record.config)

    @property
    def id(self) -> str:
        """The run id."""
        return self.record.id

    @property
    def label(self) -> str:
        """``id (name)``, or the id alone for an unnamed run."""
        return f"{self.record.id} ({self.record.name})" if self.record.name else self.record.id

    @property
    def status(self) -> str:
        """The stored status (completed, diverged, ...)."""
        return self.record.status

    @property
    def facts(self) -> RunFacts:
        """Its class count and split sizes: as the run stored them, else as `cnnlab.data.facts`
        knows its built-in dataset."""
        return run_facts(self.settings, self.record.data_facts)

    def epoch_numbers(self) -> np.ndarray:
        """Epoch numbers as an integer array."""
        return np.array([row["epoch"] for row in self.epochs], dtype=int)

    def series(self, metric: str) -> np.ndarray:
        """One metric over the epochs as floats; missing values are NaN, NaN/inf kept as stored."""
        return np.array([_as_float(row.get(metric)) for row in self.epochs], dtype=float)

    def has(self, metric: str) -> bool:
        """Whether any epoch stores ``metric``."""
        return any(row.get(metric) is not None for row in self.epochs)


def aligned(runs: Sequence[RunData], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Epoch numbers 1..max and a (runs × epochs) matrix of ``metric``, NaN where a run has no value
    (shorter run, missing or non-finite)."""
    last = max((int(run.epoch_numbers().max()) for run in runs if run.epochs), default=0)
    epochs = np.arange(1, last + 1)
    matrix = np.full((len(runs), last), np.nan)
    for i, run in enumerate(runs):
        if not run.epochs:
            continue
        numbers = run.epoch_numbers()
        values = run.series(metric)
        keep = (numbers >= 1) & np.isfinite(values)
        matrix[i, numbers[keep] - 1] = values[keep]
    return epochs, matrix


def _as_float(value: Any) -> float:
    if value is None:
        return math.nan
    return float(value)
