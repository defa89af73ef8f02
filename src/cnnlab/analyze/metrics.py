"""Per-run summary metrics computed from the stored epochs (best or final accuracy, lowest loss)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cnnlab.analyze.rundata import RunData
from cnnlab.analyze.stats import Summary
from cnnlab.errors import ConfigError, Problem, one_of


@dataclass(frozen=True)
class Metric:
    """A number per run: an epoch column reduced by max, min or last."""

    name: str
    description: str
    column: str
    reduce: str  # "max", "min" or "last"

    @property
    def higher_is_better(self) -> bool:
        """Accuracies rank high-first, losses low-first."""
        return self.column.endswith("acc")

    @property
    def axis_label(self) -> str:
        """Axis label with its unit."""
        return f"{self.description} (%)" if self.higher_is_better else self.description

    def of(self, run: RunData) -> float:
        """The metric for one run; NaN when the run has no such value."""
        values = run.series(self.column)
        if self.reduce == "last":
            return float(values[-1]) if len(values) else math.nan
        finite = values[np.isfinite(values)]
        if not len(finite):
            return math.nan
        return float(finite.max() if self.reduce == "max" else finite.min())

    def interval(self, summary: Summary) -> tuple[float, float]:
        """The confidence interval of ``summary`` cut to the values the metric can take (an accuracy's
        t-interval can pass 100%); NaN without one."""
        if summary.n < 2:
            return math.nan, math.nan
        upper = 1.0 if self.higher_is_better else math.inf
        return max(summary.ci_low, 0.0), min(summary.ci_high, upper)

    def format(self, value: float | None, unit: bool = True) -> str:
        """``98.25%`` for accuracies, ``0.0312`` for losses, ``–`` when missing."""
        if value is None or math.isnan(value):
            return "–"
        if self.higher_is_better:
            return f"{100 * value:.2f}" + ("%" if unit else "")
        return f"{value:.4g}"

    def format_diff(self, diff: float) -> str:
        """A difference of two values: ``1.25 points`` for accuracies."""
        return f"{100 * abs(diff):.2f} points" if self.higher_is_better else f"{abs(diff):.4g}"

    def format_signed(self, diff: float, unit: bool = True) -> str:
        """A signed difference: ``+1.25 points`` (or ``−0.0123`` for losses)."""
        if not math.isfinite(diff):
            return "–"
        sign = "+" if diff >= 0 else "−"
        if self.higher_is_better:
            return f"{sign}{100 * abs(diff):.2f}" + (" points" if unit else "")
        return f"{sign}{abs(diff):.4g}"

    def better(self, a: float, b: float) -> bool:
        """Whether value ``a`` is better than ``b``."""
        return a > b if self.higher_is_better else a < b


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("best_val_acc", "best validation accuracy", "val_acc", "max"),
        Metric("final_val_acc", "final validation accuracy", "val_acc", "last"),
        Metric("final_test_acc", "final test accuracy", "test_acc", "last"),
        Metric("final_train_acc", "final training accuracy", "train_acc", "last"),
        Metric("min_val_loss", "lowest validation loss", "val_loss", "min"),
    )
}
DEFAULT_METRIC = "best_val_acc"
# Used in order when no metric is named and the runs store no validation accuracy.
_FALLBACKS = ("best_val_acc", "final_test_acc", "final_train_acc")


def choose_metric(runs: Sequence[RunData], name: str | None = None) -> Metric:
    """The named metric, or the default (best validation accuracy, else the first the runs have)."""
    if name is not None:
        if name not in METRICS:
            raise ConfigError(Problem("--metric", name, one_of(list(METRICS))))
        return METRICS[name]
    for fallback in _FALLBACKS:
        metric = METRICS[fallback]
        if any(run.has(metric.column) for run in runs):
            return metric
    return METRICS[DEFAULT_METRIC]
