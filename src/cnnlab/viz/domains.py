"""Accuracy per evaluation domain: one group of bars per domain, one bar per configuration."""

from __future__ import annotations

import math
from collections.abc import Sequence

from matplotlib.figure import Figure

from cnnlab.viz.style import color, house_style, new_figure, shorten


def domain_figure(labels: Sequence[str], domains: Sequence[str], means: Sequence[Sequence[float]],
                  stds: Sequence[Sequence[float]], metric: str = "test accuracy") -> Figure:
    """Bars of ``means[i][j]`` (configuration i, domain j; 0–1, NaN: not measured) with ±1 sd
    whiskers over seeds where ``stds`` is finite."""
    width = 0.8 / max(len(labels), 1)
    with house_style():
        fig = new_figure(max(6.0, 1.2 + 1.4 * len(domains) * max(1, len(labels)) ** 0.5),
                         3.2 + 0.22 * len(labels))
        ax = fig.subplots()
        for i, label in enumerate(labels):
            xs = [j - 0.4 + width * (i + 0.5) for j in range(len(domains))]
            heights = [100 * m if math.isfinite(m) else 0.0 for m in means[i]]
            errors = [100 * s if math.isfinite(s) else 0.0 for s in stds[i]]
            ax.bar(xs, heights, width=width * 0.92, color=color(i), label=shorten(label, 60))
            with_sd = [(x, h, e) for x, h, e in zip(xs, heights, errors, strict=True) if e > 0]
            if with_sd:
                ax.errorbar([x for x, _, _ in with_sd], [h for _, h, _ in with_sd],
                            yerr=[e for _, _, e in with_sd], fmt="none", ecolor="black", capsize=2)
            for x, m in zip(xs, means[i], strict=True):
                if math.isfinite(m) and len(labels) <= 6:
                    ax.text(x, 100 * m + 1, f"{100 * m:.1f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(domains)), [shorten(d, 24) for d in domains])
        ax.set_ylabel(f"{metric} (%)")
        ax.set_ylim(0, 108)
        ax.set_title(f"{metric} per domain")
        if len(labels) > 1:
            fig.legend(loc="outside lower center", ncols=1 if max(map(len, labels)) > 40 else 2)
    return fig
