"""Effect of one hyperparameter on a metric: seed statistics at each of its values."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cnnlab.analyze.cells import format_value, group_cells, is_number, levels, value_key
from cnnlab.analyze.factors import Factor
from cnnlab.analyze.metrics import Metric
from cnnlab.analyze.ranking import rankable
from cnnlab.analyze.rundata import RunData
from cnnlab.analyze.stats import Summary, summarize
from cnnlab.data.facts import common_chance

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
    replicated: bool = True  # its runs are seeds of one configuration (an interval over them means something)


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
    chance: float | None = None  # the accuracy of guessing the runs share (None: unknown)

    @property
    def title(self) -> str:
        """``name``, else ``key``."""
        return self.name or self.key


def effect_of(
    runs: Sequence[RunData],
    key: str,
    metric: Metric,
    varying: Sequence[str],
    name: str = "",
    *,
    factor: Factor | None = None,
    series_label: str = "",
) -> Effect:
    """The effect of ``key`` on ``metric`` over the rankable runs; ``varying`` are all keys that vary
    (for keys moved together, only one of each group); ``name`` labels the setting in figures;
    ``factor`` (keys moved together) labels each value with all its keys (``adam+0.001``);
    ``series_label`` names the one series when the runs hold the other settings fixed."""
    runs = [run for run in rankable(runs) if math.isfinite(metric.of(run))]
    pooled = _levels(runs, key, metric, factor, [k for k in varying if k != key])
    values = [level.value for level in pooled]
    numeric = bool(values) and all(is_number(v) for v in values)
    positive = numeric and all(v > 0 for v in values)
    log_scale = positive and (key.rsplit(".", 1)[-1] in LOG_KEYS or max(values) / min(values) >= LOG_SPAN)
    others = [k for k in varying if k != key]
    combos = group_cells(runs, others)
    if 1 < len(combos) <= MAX_SERIES:
        series = [Series(combo.label, _levels(combo.runs, key, metric, factor, [])) for combo in combos]
    else:
        label = series_label or (f"pooled over {', '.join(others)}" if others else "all runs")
        series = [Series(label, pooled)]
    return Effect(key, metric, numeric, log_scale, pooled, series, others, name,
                  common_chance([run.facts for run in runs]))


def _levels(
    runs: Sequence[RunData], key: str, metric: Metric, factor: Factor | None, others: Sequence[str]
) -> list[Level]:
    """Each value of ``key`` with its runs' scores; ``replicated`` when those runs share every other
    varying setting (``others``), so they differ only in seed."""
    out = []
    for value, group in levels(runs, key):
        scores = [metric.of(run) for run in group]
        label = factor.label(factor.level_of(group[0])) if factor is not None else format_value(value)
        same = len({tuple(value_key(run.settings.get(k)) for k in others) for run in group}) <= 1
        out.append(Level(value, label, scores, summarize(scores), same))
    return out
