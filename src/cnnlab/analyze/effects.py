"""Effect of one hyperparameter on a metric: seed statistics at each of its values."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cnnlab.analyze.cells import format_value, group_cells, is_number, levels
from cnnlab.analyze.metrics import Metric
from cnnlab.analyze.ranking import rankable
from cnnlab.analyze.rundata import RunData
from cnnlab.analyze.stats import Summary, summarize

MAX_SERIES = 6  # more combinations of the other settings than this are pooled into one series
LOG_KEYS = ("lr", "weight_decay", "learning_rate")  # drawn on a log axis whenever positive
LOG_SPAN = 100.0  # any other positive numeric setting spanning this factor is drawn on a log axis too


@dataclass(frozen=True)
class Level:
    """One value of the hyperparameter and the metric of the runs that used it."""

    value: Any
    label: str
    values: list[float]
    summary: Summary


@dataclass(frozen=True)
class Series:
    """Levels of the hyperparameter with the other varying settings held at one combination."""

    label: str
    levels: list[Level]


@dataclass(frozen=True)
class Effect:
    """How ``metric`` changes with ``key``: pooled over the other settings, and per combination of them."""

    key: str
    metric: Metric
    numeric: bool
    log_scale: bool
    levels: list[Level]
    series: list[Series]
    others: list[str]
    name: str = ""  # how figures name the setting: the key, or every key of a [zip] group

    @property
    def title(self) -> str:
        """``name``, else ``key``."""
        return self.name or self.key


def effect_of(
    runs: Sequence[RunData], key: str, metric: Metric, varying: Sequence[str], name: str = ""
) -> Effect:
    """The effect of ``key`` on ``metric`` over the rankable runs; ``varying`` are all keys that vary
    (for keys moved together, only one of each group); ``name`` labels the setting in figures."""
    runs = [run for run in rankable(runs) if math.isfinite(metric.of(run))]
    pooled = _levels(runs, key, metric)
    values = [level.value for level in pooled]
    numeric = bool(values) and all(is_number(v) for v in values)
    positive = numeric and all(v > 0 for v in values)
    log_scale = positive and (key.rsplit(".", 1)[-1] in LOG_KEYS or max(values) / min(values) >= LOG_SPAN)
    others = [k for k in varying if k != key]
    combos = group_cells(runs, others)
    if 1 < len(combos) <= MAX_SERIES:
        series = [Series(combo.label, _levels(combo.runs, key, metric)) for combo in combos]
    else:
        label = f"pooled over {', '.join(others)}" if others else "all runs"
        series = [Series(label, pooled)]
    return Effect(key, metric, numeric, log_scale, pooled, series, others, name)


def _levels(runs: Sequence[RunData], key: str, metric: Metric) -> list[Level]:
    out = []
    for value, group in levels(runs, key):
        scores = [metric.of(run) for run in group]
        out.append(Level(value, format_value(value), scores, summarize(scores)))
    return out
