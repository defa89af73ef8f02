"""Hyperparameter-effect chart: a metric against one setting, mean ± 95% CI over seeds, runs as dots."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from cnnlab.analyze.effects import Effect, Level
from cnnlab.analyze.metrics import Metric
from cnnlab.analyze.stats import CONFIDENCE, Summary
from cnnlab.viz.style import (
    chance_line,
    color,
    house_style,
    new_figure,
    plain_log_labels,
    shorten,
    wrap_label,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_VALUE_TICKS = 8  # more values than this (a sampled search) get ordinary axis ticks and no lines
SERIES_SPREAD = (
    0.03  # series at one value are spread over this fraction of the x range, so bars do not overlap
)


def effect_figure(effect: Effect) -> Figure:
    """The metric at each value of ``effect.key``; one series per combination of the other settings."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullFormatter

    metric = effect.metric
    scale = 100.0 if metric.higher_is_better else 1.0
    labels = [level.label for level in effect.levels]
    with house_style():
        fig = new_figure(8.5, 4.0)
        ax = fig.subplots()
        handles = []
        count = len(effect.series)
        for i, series in enumerate(effect.series):
            shift = (i - (count - 1) / 2) * SERIES_SPREAD
            xs = [_shifted(effect, labels, lv, shift) for lv in series.levels]
            means = [scale * lv.summary.mean for lv in series.levels]
            errors = [_error_bar(effect.metric, lv.summary, scale) if lv.replicated else (0.0, 0.0)
                      for lv in series.levels]
            ax.errorbar(
                xs,
                means,
                yerr=list(zip(*errors, strict=True)),
                color=color(i),
                marker="o",
                markersize=5,
                capsize=4 if any(e != (0.0, 0.0) for e in errors) else 0,
                linewidth=1.4,
                linestyle="-" if effect.numeric and len(labels) <= MAX_VALUE_TICKS else "none",
                zorder=3,
            )
            for x, level in zip(xs, series.levels, strict=True):
                ys = [scale * v for v in level.values if math.isfinite(v)]
                ax.plot(
                    [x] * len(ys),
                    ys,
                    linestyle="none",
                    marker=".",
                    markersize=4,
                    color=color(i),
                    alpha=0.35,
                    zorder=2,
                )
            if count > 1:
                handles.append(Line2D([], [], color=color(i), marker="o", label=wrap_label(series.label)))
        levels = [lv for series in effect.series for lv in series.levels]
        if any(lv.replicated and lv.summary.n > 1 for lv in levels):
            shown = f"mean ± {CONFIDENCE:.0%} CI over seeds"
        elif all(lv.summary.n <= 1 for lv in levels):
            shown = "one run"
        else:
            shown = "mean of runs that differ in other settings (no interval)"
        handles += [
            Line2D([], [], color="black", marker="o", label=shown),
            Line2D([], [], color="black", marker=".", linestyle="none", alpha=0.35, label="single run"),
        ]
        if effect.log_scale:
            ax.set_xscale("log")
            if len(labels) <= MAX_VALUE_TICKS:
                ax.set_xticks([float(v) for v in (lv.value for lv in effect.levels)], labels)
                ax.xaxis.set_minor_formatter(NullFormatter())
            else:
                plain_log_labels(ax.xaxis)
        if not effect.numeric:
            ax.set_xticks(
                range(len(labels)),
                [shorten(label, 24) for label in labels],
                rotation=20 if max(map(len, labels), default=0) > 8 else 0,
            )
            ax.set_xlim(-0.5, len(labels) - 0.5)
        if metric.higher_is_better and chance_line(ax, effect.chance):
            handles.append(Line2D([], [], color="grey", linestyle=":", label="chance"))
        ax.set_xlabel(effect.title + (" (log scale)" if effect.log_scale else ""))
        ax.set_ylabel(metric.axis_label)
        ax.set_title(shorten(f"{metric.description} against {effect.title}", 90))
        only = effect.series[0].label if effect.series else "all runs"
        title = "other settings" if count > 1 else (only if only != "all runs" else None)
        fig.legend(handles=handles, loc="outside right upper", title=wrap_label(title) if title else None)
    return fig


def _shifted(effect: Effect, labels: list[str], level: Level, shift: float) -> float:
    """The x position of ``level``, moved by ``shift`` (a fraction of the x range) for its series."""
    if not effect.numeric:
        return labels.index(level.label) + shift * len(labels)
    values = [float(lv.value) for lv in effect.levels]
    x = float(level.value)
    if effect.log_scale:
        return x * 10 ** (shift * math.log10(max(values) / min(values)))
    return x + shift * (max(values) - min(values))


def _error_bar(metric: Metric, summary: Summary, scale: float) -> tuple[float, float]:
    """Distances below and above the mean to the ends of its (clipped) confidence interval."""
    low, high = metric.interval(summary)
    if math.isnan(low):
        return 0.0, 0.0
    return scale * (summary.mean - low), scale * (high - summary.mean)
