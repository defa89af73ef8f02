"""Half-normal (Daniel) plot of an unreplicated grid's effect estimates: absolute effects against
where pure noise would put them; the large effects stand off the line through the small ones."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from cnnlab.analyze.contrasts import EffectEstimate, half_normal_scores
from cnnlab.analyze.metrics import Metric
from cnnlab.viz.style import color, house_style, new_figure, shorten

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LABELLED = 4  # the largest effects are named beside their points


def half_normal_figure(estimates: Sequence[EffectEstimate], metric: Metric) -> Figure:
    """|effect| (points for accuracies) against half-normal scores, the largest labelled, with a line
    through the origin fitted to the smaller half of the effects (Daniel's guide)."""
    scale = 100.0 if metric.higher_is_better else 1.0
    ordered = sorted(estimates, key=lambda e: e.size)
    sizes = np.array([scale * e.size for e in ordered])
    scores = half_normal_scores(len(ordered))
    with house_style():
        fig = new_figure(7.5, 4.2)
        ax = fig.subplots()
        ax.plot(scores, sizes, linestyle="none", marker="o", color=color(0))
        small = max(1, len(ordered) // 2)
        slope = float(np.dot(scores[:small], sizes[:small]) / np.dot(scores[:small], scores[:small]))
        ax.plot(
            [0, scores[-1] * 1.05],
            [0, slope * scores[-1] * 1.05],
            color="grey",
            linestyle="--",
            linewidth=1,
            label="line through the smaller half of the effects",
        )
        for score, size, estimate in list(zip(scores, sizes, ordered, strict=True))[-LABELLED:]:
            sign = "+" if estimate.estimate >= 0 else "−"
            ax.annotate(
                shorten(f"{estimate.label} ({sign}{size:.2f})", 40),
                (score, size),
                textcoords="offset points",
                xytext=(-6, 4),
                ha="right",
                fontsize=8,
            )
        ax.set_xlabel("half-normal score (where |noise| would fall)")
        unit = " (points)" if metric.higher_is_better else ""
        ax.set_ylabel(f"|effect| on {metric.description}{unit}")
        ax.set_xlim(0, scores[-1] * 1.1)
        ax.set_ylim(0, sizes[-1] * 1.15 if sizes[-1] > 0 else 1)
        ax.set_title(
            shorten(
                f"Half-normal plot of the {len(ordered)} effect estimates (one run per configuration)", 90
            )
        )
        ax.legend(loc="upper left")
    return fig
