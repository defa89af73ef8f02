"""Matplotlib figures of the explainers, drawn for a slide (no pyplot, so no global backend)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab import files
from cnnlab.scratch.explain import ChannelMixing, ConvStep, PoolingComparison
from cnnlab.window_sizes import SizeResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

WINDOW = "#d62728"  # the window being explained
NEXT = "#ff7f0e"  # where the stride moves it next
PAD = "#9ecae1"  # padding


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path`` atomically in the format its suffix names; return the path."""
    return files.save_figure(fig, path, dpi=dpi, key="output")


def _matrix(
    ax: Axes,
    values: np.ndarray,
    title: str,
    cmap: str = "gray",
    symmetric: bool = False,
    fmt: str = "{:.2f}",
    highlight: tuple[int, int] | None = None,
) -> None:
    """Draw a small matrix with its numbers written in the cells."""
    limit = float(np.abs(values).max()) or 1.0
    vmin, vmax = (-limit, limit) if symmetric else (min(values.min(), 0.0), max(values.max(), 1.0))
    ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax)
    if values.size <= 81:
        for (r, c), v in np.ndenumerate(values):
            light = (v - vmin) / (vmax - vmin or 1)
            color = "black" if (0.3 < light < 0.7 if symmetric else light > 0.5) else "white"
            ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=9, color=color)
    if highlight is not None:
        _box(ax, highlight[0], highlight[1], 1, 1, WINDOW, lw=2.5)
    ax.set_title(title, fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])


def _box(
    ax: Axes,
    top: float,
    left: float,
    height: float,
    width: float,
    color: str,
    lw: float = 2.0,
    ls: str = "-",
) -> None:
    from matplotlib.patches import Rectangle

    ax.add_patch(
        Rectangle(
            (left - 0.5, top - 0.5),
            width,
            height,
            fill=False,
            edgecolor=color,
            linewidth=lw,
            linestyle=ls,
        )
    )


def _grid(ax: Axes, shape: tuple[int, ...]) -> None:
    if max(shape) <= 40:
        ax.set_xticks(np.arange(-0.5, shape[1], 1), minor=True)
        ax.set_yticks(np.arange(-0.5, shape[0], 1), minor=True)
        ax.grid(which="minor", color="#555555", linewidth=0.3)
        ax.tick_params(which="minor", length=0)


def conv_figure(step: ConvStep) -> Figure:
    """Input (padding and stride drawn), patch ⊙ kernel = products → sum, and the feature map."""
    fig = _figure(15, 9.5)
    grid = fig.add_gridspec(2, 4, height_ratios=[1.5, 1])
    kh, kw = step.kernel.shape
    top, left = step.row * step.stride, step.col * step.stride

    ax = fig.add_subplot(grid[0, :2])
    ax.imshow(step.padded, cmap="gray", vmin=0, vmax=max(1.0, step.padded.max()))
    p = step.padding
    if p:
        from matplotlib.colors import ListedColormap

        mask = np.ones_like(step.padded, dtype=bool)
        mask[p:-p, p:-p] = False
        ax.imshow(np.where(mask, 1.0, np.nan), cmap=ListedColormap([PAD]), alpha=0.8)
        _box(ax, p, p, *step.image.shape, PAD, lw=1.5, ls="--")
    _grid(ax, step.padded.shape)
    _box(ax, top, left, kh, kw, WINDOW, lw=3)
    next_col = left + step.stride
    if next_col + kw <= step.padded.shape[1]:
        _box(ax, top, next_col, kh, kw, NEXT, lw=2, ls="--")
        ax.annotate(
            "",
            xy=(next_col - 0.5, top - 1.2),
            xytext=(left - 0.5, top - 1.2),
            arrowprops={"arrowstyle": "->", "color": NEXT, "lw": 2},
            annotation_clip=False,
        )
        ax.text(
            left + step.stride / 2 - 0.5,
            top - 1.6,
            f"stride {step.stride}",
            color=NEXT,
            ha="center",
            va="bottom",
            fontsize=10,
            fontweight="bold",
            clip_on=False,
        )
    h, w = step.image.shape
    pad_text = f", padding {p} (blue)" if p else ", no padding"
    where = f"window at row {top}, column {left}" + (" of the padded input" if p else "")
    ax.set_title(f"input {h}×{w}{pad_text}: {where}", fontsize=12)
    ax.set_xticks([])
    ax.set_yticks([])

    ax = fig.add_subplot(grid[0, 2:])
    limit = float(np.abs(step.feature_map).max()) or 1.0
    ax.imshow(step.feature_map, cmap="RdBu_r", vmin=-limit, vmax=limit)
    _grid(ax, step.feature_map.shape)
    _box(ax, step.row, step.col, 1, 1, WINDOW, lw=3)
    oh, ow = step.feature_map.shape
    notes = dict.fromkeys(textwrap.fill(s.note, 70) for s in step.sizes if s.note)
    ax.set_title(
        "\n".join(
            [
                f"feature map {oh}×{ow}; pixel ({step.row}, {step.col}) = {step.value:.3f}",
                f"rows: {step.sizes[0].formula}    columns: {step.sizes[1].formula}",
                *notes,
            ]
        ),
        fontsize=10,
    )
    ax.set_xticks([])
    ax.set_yticks([])

    _matrix(fig.add_subplot(grid[1, 0]), step.patch, f"input patch {kh}×{kw}")
    _matrix(fig.add_subplot(grid[1, 1]), step.kernel, "⊙ kernel", cmap="RdBu_r", symmetric=True)
    _matrix(
        fig.add_subplot(grid[1, 2]),
        step.products,
        "= element-wise products",
        cmap="RdBu_r",
        symmetric=True,
    )
    ax = fig.add_subplot(grid[1, 3])
    ax.axis("off")
    ax.text(
        0.0,
        0.6,
        f"Σ products\n{_sum_text(step.products)}\n= {step.value:.3f}",
        fontsize=12,
        va="center",
        family="monospace",
    )
    ax.text(0.0, 0.1, f"→ feature map pixel ({step.row}, {step.col})", fontsize=12, color=WINDOW)
    return fig


def _signed(values: np.ndarray) -> str:
    """Numbers joined with + and −: ``0.50 − 1.20 + 3.00``."""
    text = f"{values[0]:.2f}"
    for v in values[1:]:
        text += f" {'−' if v < 0 else '+'} {abs(v):.2f}"
    return text


def _sum_text(products: np.ndarray) -> str:
    """The sum written one kernel row per line (first and last rows only for big kernels)."""
    rows = [f"({_signed(row)})" for row in products] if products.shape[1] <= 5 else []
    if not rows or len(rows) > 5:
        return f"= sum of {products.size} products"
    return "= " + "\n+ ".join(rows)


def pooling_figure(result: PoolingComparison) -> Figure:
    """Input, max, average and global average pooling side by side, one window worked out."""
    fig = _figure(15, 8)
    grid = fig.add_gridspec(2, 4, height_ratios=[1.4, 1])
    k, s = result.kernel, result.stride
    r, c = result.window_at
    panels = [
        (result.image, f"input {result.image.shape[0]}×{result.image.shape[1]}", (r * s, c * s, k)),
        (
            result.max_pooled,
            f"max pool {k}×{k}, stride {s} → {_shape(result.max_pooled)}",
            (r, c, 1),
        ),
        (
            result.avg_pooled,
            f"average pool {k}×{k}, stride {s} → {_shape(result.avg_pooled)}",
            (r, c, 1),
        ),
        (np.full((1, 1), result.global_avg), "global average → 1×1 per channel", None),
    ]
    for col, (values, title, box) in enumerate(panels):
        ax = fig.add_subplot(grid[0, col])
        ax.imshow(values, cmap="gray", vmin=0, vmax=max(1.0, result.image.max()))
        if box is not None:
            _box(ax, box[0], box[1], box[2], box[2], WINDOW, lw=2.5)
        else:
            ax.text(
                0,
                0,
                f"{result.global_avg:.3f}",
                ha="center",
                va="center",
                color=WINDOW,
                fontsize=16,
            )
        ax.set_title(title, fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
    _matrix(fig.add_subplot(grid[1, 0]), result.window, f"the red window ({k}×{k})")
    for col, (name, value) in enumerate(
        (("max", result.window.max()), ("average", result.window.mean())), start=1
    ):
        _matrix(fig.add_subplot(grid[1, col]), np.full((1, 1), value), f"{name} = {value:.3f}")
    ax = fig.add_subplot(grid[1, 3])
    ax.axis("off")
    ax.text(
        0,
        0.5,
        "max keeps the strongest response\n(edges stay sharp);\naverage blurs them;\n"
        "global average keeps one number\nper channel, whatever the image size",
        fontsize=11,
        va="center",
    )
    return fig


def _shape(values: np.ndarray) -> str:
    return "×".join(map(str, values.shape))


def mixing_figure(result: ChannelMixing) -> Figure:
    """Input maps, the 1×1 weights, the mixed maps, one pixel's sum, and 1×1 vs 3×3 costs."""
    fig = _figure(16, 9)
    c_out, c_in = result.weights.shape
    grid = fig.add_gridspec(3, max(c_in, c_out) + 2, height_ratios=[1, 1, 1.1])
    y, x = result.pixel
    for i, (maps, names) in enumerate(
        (
            (result.inputs, result.input_names),
            (result.outputs, [f"output {o}" for o in range(c_out)]),
        )
    ):
        for j, (values, name) in enumerate(zip(maps, names, strict=True)):
            ax = fig.add_subplot(grid[i, j])
            limit = float(np.abs(values).max()) or 1.0
            ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit)
            _box(ax, y, x, 1, 1, WINDOW, lw=2)
            ax.set_title(f"{name}\n({y}, {x}) = {values[y, x]:.2f}", fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
    ax = fig.add_subplot(grid[0:2, -2:])
    _matrix(ax, result.weights, f"1×1 kernel ({c_out} × {c_in} weights)", cmap="RdBu_r", symmetric=True)
    ax.set_ylabel("output channel")
    ax.set_xlabel("input channel")
    ax = fig.add_subplot(grid[2, : max(c_in, c_out)])
    ax.axis("off")
    lines = []
    for o in range(c_out):
        terms = _signed(result.weights[o] * result.inputs[:, y, x])
        lines.append(f"output {o} at ({y}, {x}) = ReLU({terms}) = {result.outputs[o, y, x]:.2f}")
    one, three = result.costs
    lines += [
        "  (each term is weight × input channel at that pixel)",
        "",
        "A 1×1 convolution mixes channels at each pixel: it changes the channel count,",
        "costs 1/9 of a 3×3 one, and adds a non-linearity (ReLU) per pixel.",
        f"{one.in_channels} → {one.out_channels} channels at {one.height}×{one.width}:",
    ]
    lines += [
        f"  {c.kernel}×{c.kernel}: {c.parameters:>9,} parameters  {c.flops:>14,} FLOPs" for c in result.costs
    ]
    ax.text(0, 1, "\n".join(lines), fontsize=11, va="top", family="monospace")
    ax = fig.add_subplot(grid[2, -2:])
    labels = ["1×1", "3×3"]
    for offset, (metric, values) in enumerate(
        (("parameters", [one.parameters, three.parameters]), ("FLOPs", [one.flops, three.flops]))
    ):
        bars = ax.bar(
            np.arange(2) + offset * 0.4,
            values,
            width=0.38,
            label=metric,
            color=["#1f77b4", "#ff7f0e"][offset],
        )
        ax.bar_label(bars, labels=[_count(v) for v in values], fontsize=9)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(2) + 0.2, labels)
    ax.legend(fontsize=9)
    ax.set_title("cost, log scale", fontsize=10)
    return fig


def _count(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:g}"


def sizes_figure(results: list[SizeResult]) -> Figure:
    """One row per stride/padding: the input cells numbered, zero padding labelled 0 (blue), every
    window position as a numbered bar below, cells no window reads hatched red; one scale for all."""
    from matplotlib.patches import Patch

    width = max(res.n + res.padding + res.after for res in results)
    levels = max(_levels(res) for res in results)
    cell = min(0.4, 11.0 / (width + 1))  # inches per input cell
    row = cell * (1.75 + _LEVEL * levels) + 0.3
    title = max(len(_size_title(res)) for res in results) * 0.075  # inches at 9 pt
    fig = _figure(max(7.0, cell * (width + 1.2) + 0.4, title + 0.3), 0.5 + row * len(results))
    axes = fig.subplots(len(results), 1, squeeze=False)[:, 0]
    for ax, res in zip(axes, results, strict=True):
        _size_row(ax, res, width, levels)
    fig.legend(
        handles=[Patch(facecolor=PAD, edgecolor="black", label="zero padding (0)"),
                 Patch(facecolor="white", edgecolor="black", label="input pixel, numbered"),
                 Patch(facecolor="#f4a3a3", edgecolor="black", hatch="//", label="never read"),
                 Patch(facecolor=WINDOW, label="window k and the taps it reads")],
        loc="outside upper center", ncols=4, fontsize=8, frameon=False,
    )
    return fig


_LEVEL = 0.4  # vertical distance between two rows of window bars (in cells)


def _levels(res: SizeResult) -> int:
    """Rows of window bars, so that windows on one row never overlap."""
    span = res.dilation * (res.kernel - 1) + 1
    return max(1, min(-(-span // res.stride), 6, res.size))


def _size_row(ax: Axes, res: SizeResult, width: int, levels: int) -> None:
    from matplotlib.patches import Rectangle

    total = res.n + res.padding + res.after
    read = np.zeros(total, dtype=bool)
    for w in range(res.size):
        read[w * res.stride + res.dilation * np.arange(res.kernel)] = True
    font = 7 if width <= 40 else 5
    for i in range(total):
        is_pad = i < res.padding or i >= res.padding + res.n
        face = PAD if is_pad else ("white" if read[i] else "#f4a3a3")
        hatch = "" if is_pad or read[i] else "//"
        ax.add_patch(Rectangle((i, 0), 1, 1, facecolor=face, edgecolor="black", lw=0.8, hatch=hatch))
        label = "0" if is_pad else str(i - res.padding + 1)
        ax.text(i + 0.5, 0.5, label, ha="center", va="center", fontsize=font,
                color="#08519c" if is_pad else "black")
    colors: list[Any] = [WINDOW, NEXT, "#2ca02c", "#9467bd"]
    span = res.dilation * (res.kernel - 1) + 1
    own_levels = _levels(res)
    for w in range(res.size):
        start, level = w * res.stride, -0.4 - _LEVEL * (w % own_levels)
        color = colors[w % len(colors)]
        ax.plot([start + 0.5, start + span - 0.5], [level, level], color=color, lw=1)
        for tap in start + res.dilation * np.arange(res.kernel):
            ax.plot([tap + 0.1, tap + 0.9], [level, level], color=color, lw=4, solid_capstyle="butt")
        ax.text(start + span / 2, level + 0.06, str(w + 1), ha="center", va="bottom", fontsize=font - 1,
                color=color)
    ax.set_xlim(-1.2, width + 0.2)
    ax.set_ylim(-0.55 - _LEVEL * levels, 1.2)
    ax.set_aspect("equal")
    ax.set_anchor("W")  # left-aligned, so that the title (which starts at the axes) fits the figure
    ax.axis("off")
    ax.set_title(_size_title(res), fontsize=9, loc="left", color="black" if res.fits else WINDOW)


def _size_title(res: SizeResult) -> str:
    padding = f"padding {res.padding_label}" if res.padding or res.after or res.padding_name else "no padding"
    return f"S = {res.stride}, {padding}:  {res.formula}   ({res.verdict})"
