"""The figure of a learning-rate range test: loss against lr, the suggestion marked."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from cnnlab.viz.style import color, house_style, new_figure, plain_log_labels, shorten

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class RangeTest(Protocol):
    """What the figure reads of a range test (`cnnlab.train.lr_find.LrFinding` is one); viz
    imports nothing from train."""

    lrs: Sequence[float]
    losses: Sequence[float]
    smoothed: Sequence[float]
    suggestion: float | None
    rule: str
    others: Mapping[str, float]

    def line(self) -> str: ...


def lr_find_figure(finding: RangeTest) -> Figure:
    """Each step's loss (faint) and the smoothed loss against lr on a log axis, the suggested lr
    marked with its rule and override, the other rules as small marks."""
    with house_style():
        fig = new_figure(7.5, 4.2)
        ax = fig.subplots()
        finite = [(lr, loss) for lr, loss in zip(finding.lrs, finding.losses, strict=True)
                  if math.isfinite(loss)]
        if finite:
            ax.plot(*zip(*finite, strict=True), color=color(7), alpha=0.35, linewidth=0.8,
                    label="loss of each batch")
        smooth = [(lr, s) for lr, s in zip(finding.lrs, finding.smoothed, strict=True) if math.isfinite(s)]
        if smooth:
            ax.plot(*zip(*smooth, strict=True), color=color(0), linewidth=1.8,
                    label="smoothed loss (exponential moving average)")
            low = min(s for _, s in smooth)
            first = smooth[0][1]
            ax.set_ylim(low - 0.1 * abs(first - low) - 1e-3, max(first, low) * 1.5 + 1e-3)
        if finding.suggestion is not None:
            y = _smoothed_at(finding, finding.suggestion)
            ax.axvline(finding.suggestion, color=color(3), linewidth=1, linestyle="--")
            ax.plot([finding.suggestion], [y], marker="o", markersize=8, color=color(3), linestyle="none",
                    label=f"suggested ({finding.rule}): {finding.line()}")
            for i, (name, lr) in enumerate(finding.others.items()):
                ax.plot([lr], [_smoothed_at(finding, lr)], marker="^v"[i % 2], markersize=6,
                        color=color(4 + i), linestyle="none", label=f"{name}: {lr:.2g}")
        elif finding.diverged_at_once:
            ax.set_title(f"diverged at once: try a lower start (--start {finding.lower_start():g})",
                         color=color(3))
        ax.set_xscale("log")
        plain_log_labels(ax.xaxis)
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel("training loss")
        fig.suptitle(shorten(f"learning-rate range test: {finding.label}, {finding.steps} steps of "
                             f"batch {finding.batch_size}", 100))
        ax.legend(loc="upper left")
    return fig


def _smoothed_at(finding: RangeTest, lr: float) -> float:
    i = min(range(len(finding.lrs)), key=lambda k: abs(math.log(finding.lrs[k]) - math.log(lr)))
    return finding.smoothed[i]
