"""Numbers, times and statuses as the terminal shows them, and user text made safe for Rich."""

from __future__ import annotations

import math
from datetime import datetime

from rich import box
from rich.table import Table
from rich.text import Text

from cnnlab.store.liveness import GONE

STATUS_STYLES = {
    "created": "dim",
    "running": "cyan",
    "completed": "green",
    "stopped_early": "green",
    "interrupted": "yellow",
    GONE: "yellow",
    "diverged": "magenta",
    "failed": "bold red",
}


def status_text(status: str) -> Text:
    """The status word in its colour."""
    return Text(status, style=STATUS_STYLES.get(status, ""))


def format_metric(key: str, value: float | None) -> Text:
    """A metric for display: accuracies as percent, NaN/inf in red, missing as a dim dash."""
    if value is None:
        return Text("–", style="dim")
    if math.isnan(value):
        return Text("NaN", style="bold red")
    if math.isinf(value):
        return Text("inf" if value > 0 else "-inf", style="bold red")
    if key.endswith("acc"):
        return Text(f"{100 * value:.2f}%")
    if key.endswith("loss"):
        return Text(f"{value:.4f}")
    if key == "lr":
        return Text(f"{value:.3g}")
    if key == "seconds":
        return Text(f"{value:.1f}")
    if key == "images_per_s":
        return Text(f"{value:,.0f}")
    return Text(f"{value:.4g}")


def format_duration(seconds: float | None) -> str:
    """``12.3s``, ``4m 05s`` or ``1h 02m``; empty when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_time(moment: datetime | None) -> str:
    """A UTC timestamp in local time, to the minute."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M") if moment else ""


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters with "…" at the end (unchanged when it fits)."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def format_size(n_bytes: int) -> str:
    """``812 B``, ``4.1 kB``, ``1.2 MB``, ``3.0 GB`` (powers of 1000)."""
    size = float(n_bytes)
    for unit in ("B", "kB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def plain_table(**options: object) -> Table:
    """A table with a rule under its bold header, no frame, and two spaces between columns (the
    most columns an 80-column terminal can hold)."""
    return Table(box=box.SIMPLE_HEAD, header_style="bold", show_edge=False, padding=(0, 1, 0, 0),
                 **options)  # type: ignore[arg-type]
