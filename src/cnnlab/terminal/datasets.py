"""A dataset overview for the terminal: where it was read, its splits, and images per class."""

from __future__ import annotations

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from cnnlab.data.overview import DatasetOverview
from cnnlab.terminal.format import plain_table


def overview_parts(overview: DatasetOverview) -> list[RenderableType]:
    """The summary lines, a table of splits (size, mean, std) and a table of images per class."""
    channels, height, width = overview.shape
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold", no_wrap=True)
    summary.add_column(overflow="fold")
    summary.add_row("dataset", Text(overview.name))
    summary.add_row("loaded", Text(overview.description))
    for i, location in enumerate(overview.locations):
        summary.add_row("files" if i == 0 else "", Text(location))
    summary.add_row("images", Text(f"{channels}×{height}×{width} (channels × height × width), "
                                   f"{len(overview.classes)} classes"))

    splits = plain_table(title="splits", title_justify="left")
    splits.add_column("split")
    for header in ("images", "mean", "std"):
        splits.add_column(header, justify="right", no_wrap=True)
    for split in overview.splits:
        splits.add_row(Text(split.name), f"{split.size:,}", _channels(split.mean), _channels(split.std))

    per_class = plain_table(title="images per class", title_justify="left")
    per_class.add_column("class")
    for split in overview.splits:
        # Counts are never cut: long domain names take a line per word instead.
        header = Text(split.name.replace(" ", "\n").replace("-", "-\n"))
        per_class.add_column(header, justify="right", no_wrap=True)
    for index, name in enumerate(overview.classes):
        per_class.add_row(Text(name), *(f"{split.per_class[index]:,}" for split in overview.splits))
    per_class.add_section()
    per_class.add_row("total", *(f"{split.size:,}" for split in overview.splits), style="bold")
    return [summary, splits, per_class]


def _channels(values: tuple[float, ...]) -> str:
    """One value per channel: ``0.1307`` or ``0.491 0.482 0.447``."""
    return f"{values[0]:.4f}" if len(values) == 1 else " ".join(f"{v:.3f}" for v in values)
