"""Interaction plot of a two-factor grid: the metric's mean ± 95% CI against one factor, a line per
level of the other."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cnnlab.analyze.factors import Factor, level_ident
from cnnlab.analyze.metrics import Metric
from cnnlab.analyze.ranking import rankable
from cnnlab.analyze.rundata import RunData
from cnnlab.analyze.stats import summarize
from cnnlab.analyze.wording import chance_level
from cnnlab.viz.style import chance_line, color, house_style, new_figure, shorten, wrap_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LINE_SPREAD = 0.06  # lines are shifted apart by this much of a category step so error bars do not overlap


def interaction_figure(
    runs: Sequence[RunData], x: Factor, lines: Factor, metric: Metric, intervals: bool = True
) -> Figure:
    """Mean of ``metric`` at each level of ``x``, one line per level of ``lines``; runs as dots. With
    ``intervals`` (each point's runs are seeds of one configuration) a 95% CI over them; without, the
    plain mean (one run, or runs that differ in other factors: no interval means anything there)."""
    scale = 100.0 if metric.higher_is_better else 1.0
    scored = [run for run in rankable(runs) if math.isfinite(metric.of(run))]
    with house_style():
        fig = new_figure(8.0, 4.2)
        ax = fig.subplots()
        count = len(lines.levels)
        for i, line_level in enumerate(lines.levels):
            shift = (i - (count - 1) / 2) * LINE_SPREAD
            xs, means, lows, highs = [], [], [], []
            for j, x_level in enumerate(x.levels):
                values = [
                    metric.of(run)
                    for run in scored
                    if level_ident(x.level_of(run)) == level_ident(x_level)
                    and level_ident(lines.level_of(run)) == level_ident(line_level)
                ]
                if not values:
                    continue
                summary = summarize(values)
                low, high = metric.interval(summary)
                xs.append(j + shift)
                means.append(scale * summary.mean)
                lows.append(scale * (summary.mean - low) if summary.n > 1 and intervals else 0.0)
                highs.append(scale * (high - summary.mean) if summary.n > 1 and intervals else 0.0)
                ax.plot(
                    [j + shift] * len(values),
                    [scale * v for v in values],
                    linestyle="none",
                    marker="o",
                    markersize=3,
                    alpha=0.45,
                    color=color(i),
                )
            ax.errorbar(
                xs,
                means,
                yerr=[lows, highs],
                color=color(i),
                marker="o",
                markersize=6,
                capsize=5 if intervals else 0,
                linewidth=1.8,
                label=wrap_label(f"{lines.name}={lines.label(line_level)}"),
            )
        ax.set_xticks(range(len(x.levels)), [shorten(label, 24) for label in x.labels()])
        ax.set_xlim(-0.5, len(x.levels) - 0.5)
        ax.set_xlabel(x.name)
        ax.set_ylabel(metric.axis_label)
        if metric.higher_is_better:
            chance_line(ax, chance_level(scored))
        shown = "mean ± 95% CI over seeds" if intervals else "mean, no interval"
        ax.set_title(shorten(f"{metric.description}: {x.name} × {lines.name} ({shown}; dots: runs)", 90))
        fig.legend(title=wrap_label(f"lines: {lines.name}"), loc="outside right upper")
    return fig
