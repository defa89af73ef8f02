"""House style of cnnlab's figures: pyplot-free figures, colours, line styles, PNG bytes and saving."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab import files

if TYPE_CHECKING:
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure

DPI = 100
LABEL_WIDTH = 48  # legend labels are cut to this many characters
COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
LINESTYLES = {"train": "--", "val": "-", "test": ":"}
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}
_RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
}


@contextlib.contextmanager
def house_style() -> Iterator[None]:
    """Matplotlib settings for drawing cnnlab figures (restored afterwards)."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        yield


def new_figure(width: float, height: float) -> Figure:
    """A figure with constrained layout, not registered with pyplot (nothing global, no GUI)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained", dpi=DPI)


def color(i: int) -> str:
    """The i-th colour of the palette, cycling."""
    return COLORS[i % len(COLORS)]


def shorten(text: str, width: int = LABEL_WIDTH) -> str:
    """Run-derived ``text`` made safe for a matplotlib label: ``$`` escaped so it never starts
    mathtext, and cut to ``width`` characters with "…" so long names fit a legend."""
    text = text if len(text) <= width else text[: width - 1] + "…"
    return text.replace("$", r"\$")


def wrap_label(text: str, width: int = 34) -> str:
    """Run-derived ``text`` for a legend, wrapped onto lines of ``width`` characters (never cut, so
    every setting stays readable) and ``$`` escaped."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width, break_long_words=True)).replace("$", r"\$")


def chance_line(ax: Any, chance: float | None, vertical: bool = False) -> bool:
    """A dotted grey line at the accuracy of guessing (``chance``, a fraction; None: unknown, no
    line), labelled, where the axis already reaches it (it never stretches an axis of accuracies
    far above chance); True when drawn."""
    if chance is None:
        return False
    percent = 100.0 * chance
    low, high = ax.get_xlim() if vertical else ax.get_ylim()
    if not low <= percent <= high:
        return False
    draw = ax.axvline if vertical else ax.axhline
    draw(percent, color="grey", linestyle=":", linewidth=1.2, zorder=1, label=f"chance ({percent:.0f}%)")
    (ax.set_xlim if vertical else ax.set_ylim)(low, high)
    return True


def plain_log_labels(axis: Axis) -> None:
    """Label a log axis ``0.001`` rather than with mathtext powers of ten (easier to read, and much
    faster to lay out)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG, drawn once: ``savefig`` would draw a constrained layout twice."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = FigureCanvasAgg(fig)
    with house_style():
        canvas.draw()
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buffer = io.BytesIO()
    image.save(buffer, format="png")
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write the figure atomically; the format follows the suffix (.png, .svg, .pdf, ...)."""
    with house_style():
        return files.save_figure(fig, path, dpi=DPI)
