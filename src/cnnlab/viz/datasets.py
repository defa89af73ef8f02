"""Images per class of a dataset's splits: one group of bars per class."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cnnlab.viz.style import color, house_style, new_figure, shorten

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from cnnlab.data.overview import DatasetOverview


def class_counts_figure(overview: DatasetOverview) -> Figure:
    """Images per class, a bar per split (train, val, test, ...), each bar labelled with its count."""
    splits = overview.splits
    classes = overview.classes
    with house_style():
        fig = new_figure(min(12.0, max(6.0, 0.5 + 0.28 * len(classes) * len(splits))), 4.2)
        ax = fig.add_subplot()
        width = 0.8 / len(splits)
        positions = np.arange(len(classes))
        for i, split in enumerate(splits):
            bars = ax.bar(positions + (i - (len(splits) - 1) / 2) * width, split.per_class, width,
                          color=color(i), label=f"{shorten(split.name, 30)} ({split.size:,})")
            if len(classes) * len(splits) <= 40:
                ax.bar_label(bars, labels=[f"{n:,}" for n in split.per_class], fontsize=6, rotation=90,
                             padding=2)
        long_names = max(map(len, classes)) > 3
        ax.set_xticks(positions, [shorten(name, 14) for name in classes], rotation=30 if long_names else 0,
                      ha="right" if long_names else "center")
        ax.set_ylabel("images")
        ax.set_xlabel("class")
        ax.margins(y=0.15)
        ax.set_title(f"{shorten(overview.name, 60)}: images per class")
        fig.legend(loc="outside lower center", ncols=min(len(splits), 4))
    return fig
