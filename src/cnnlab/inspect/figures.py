"""Matplotlib figures of filters, feature maps and attributions, each one mosaic of titled tiles."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor, nn

from cnnlab.inspect.capture import LayerOutput

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

# Filter layers with more output×input pairs than this are shown one tile per output filter,
# averaged over the input channels; below it, one tile per pair.
MAX_PAIRS = 512


@dataclass
class Mosaic:
    """Tiles laid out row by row in one array, with a one-pixel NaN gap between them."""

    array: np.ndarray  # (rows·(h+1)−1) × (cols·(w+1)−1), or × 3 for RGB tiles
    rows: int
    cols: int
    tiles: int
    tile_shape: tuple[int, int]


def mosaic(tiles: Tensor | np.ndarray, cols: int | None = None) -> Mosaic:
    """Lay out ``tiles`` (N×h×w, or N×h×w×3 for colour) on a grid ``cols`` wide (default: about
    square). Gaps are NaN so a colour map draws them as its 'bad' colour."""
    array = tiles.detach().cpu().float().numpy() if isinstance(tiles, Tensor) else np.asarray(tiles)
    count, height, width = array.shape[:3]
    cols = cols or max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / cols))
    out = np.full((rows * (height + 1) - 1, cols * (width + 1) - 1, *array.shape[3:]), np.nan)
    for i in range(count):
        top, left = (i // cols) * (height + 1), (i % cols) * (width + 1)
        out[top:top + height, left:left + width] = array[i]
    return Mosaic(out, rows, cols, count, (height, width))


def _wrap(title: str, width_inches: float) -> str:
    return "\n".join(textwrap.fill(line, int(width_inches * 12)) for line in title.splitlines())


def _mosaic_axes(tiles: Mosaic, title: str) -> tuple[Figure, Axes, Axes]:
    """A figure with the mosaic's axes sized to its aspect, a colour-bar axes and the title.
    Placed by hand: a layout engine would take longer than drawing."""
    from matplotlib.figure import Figure

    ratio = tiles.array.shape[0] / tiles.array.shape[1]
    image_width = min(11.0, max(3.2, 0.5 * tiles.cols * max(tiles.tile_shape[1], 8) / 8))
    image_height = image_width * ratio
    if image_height > 11.0:
        image_width, image_height = image_width * 11.0 / image_height, 11.0
    bar, margin = 1.1, 0.1
    width = image_width + bar + 2 * margin
    title = _wrap(title, width)
    heading = 0.15 + 0.18 * (title.count("\n") + 1)
    height = image_height + heading + 2 * margin
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((margin / width, margin / height, image_width / width, image_height / height))
    ax.set_axis_off()
    colorbar = fig.add_axes(((image_width + 2 * margin) / width, (margin + 0.1 * image_height) / height,
                             0.15 / width, 0.8 * image_height / height))
    fig.suptitle(title, fontsize=9, y=1 - margin / height, va="top")
    return fig, ax, colorbar


def _cmap(name: str) -> Colormap:
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad="white")


def filters_mosaic(conv: nn.Conv2d, mode: str = "auto") -> tuple[Mosaic, str]:
    """The kernels of ``conv`` as a mosaic and the words that say what each tile is.

    ``mode``: ``rgb`` (one colour tile per filter, for 3 input channels), ``pairs`` (one tile per
    output/input pair: rows are output filters, columns input channels), ``mean`` (one tile per
    output filter, averaged over its input channels), or ``auto`` (rgb for a 3-channel first
    layer, pairs up to MAX_PAIRS tiles, else mean)."""
    weight = conv.weight.detach().float().cpu()
    out_ch, in_ch = weight.shape[:2]
    if mode == "auto":
        mode = "rgb" if in_ch == 3 else "pairs" if in_ch > 1 and out_ch * in_ch <= MAX_PAIRS else "mean"
    if mode == "rgb":
        if in_ch != 3:
            raise ValueError(f"rgb needs 3 input channels, the layer has {in_ch}")
        return mosaic(weight.permute(0, 2, 3, 1)), f"{out_ch} filters as RGB (gray = 0)"
    if mode == "mean" or in_ch == 1:
        what = f"{out_ch} filters" + ("" if in_ch == 1 else f", averaged over {in_ch} input channels")
        return mosaic(weight.mean(dim=1)), what
    if mode == "pairs":
        return (mosaic(weight.reshape(out_ch * in_ch, *weight.shape[2:]), cols=in_ch),
                f"rows: {out_ch} output filters, columns: {in_ch} input channels")
    raise ValueError(f"mode {mode!r} is not one of auto, rgb, pairs, mean")


def filters_figure(name: str, conv: nn.Conv2d, mode: str = "auto") -> Figure:
    """The kernels of one conv layer on one colour scale shared by all tiles (stated, with a colour
    bar): blue negative, white zero, red positive; RGB tiles map −m…m to 0…1 per colour."""
    tiles, what = filters_mosaic(conv, mode)
    kh, kw = tiles.tile_shape
    limit = float(np.nanmax(np.abs(tiles.array))) or 1.0
    title = (f"{name} · {what}, {kh}×{kw}\n"
             f"colour scale shared by all tiles: −{limit:.3g} … {limit:.3g}")
    fig, ax, colorbar = _mosaic_axes(tiles, title)
    if tiles.array.ndim == 3:
        rgb = np.nan_to_num(tiles.array / (2 * limit) + 0.5, nan=1.0).clip(0, 1)
        ax.imshow(rgb, interpolation="nearest")
        colorbar.set_axis_off()
    else:
        image = ax.imshow(tiles.array, cmap=_cmap("RdBu_r"), vmin=-limit, vmax=limit,
                          interpolation="nearest")
        fig.colorbar(image, cax=colorbar, label="weight")
    return fig


def feature_map_figure(layer: LayerOutput, note: str = "") -> Figure:
    """One tile per channel of a layer's output, row by row from channel 0, on one colour scale
    shared by the layer's tiles (stated, with a colour bar)."""
    tiles = mosaic(layer.output)
    low, high = float(layer.output.min()), float(layer.output.max())
    title = (f"{layer.title}{note}\none tile per channel (0–{tiles.tiles - 1}, row by row), "
             f"shared scale {low:.3g} … {high:.3g}")
    fig, ax, colorbar = _mosaic_axes(tiles, title)
    image = ax.imshow(tiles.array, cmap=_cmap("viridis"), vmin=low, vmax=max(high, low + 1e-12),
                      interpolation="nearest")
    fig.colorbar(image, cax=colorbar, label="activation")
    return fig


def show_image(ax: Axes, image: Tensor | np.ndarray) -> None:
    """Draw a C×H×W image (uint8 0–255 or float 0–1) in gray or colour, without axes."""
    array = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    array = array.astype(np.float64) / (255.0 if array.dtype == np.uint8 else 1.0)
    if array.shape[0] == 1:
        ax.imshow(array[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(array[:3].transpose(1, 2, 0).clip(0, 1), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def attribution_figure(image: Tensor, cam: Tensor, saliency: Tensor, title: str,
                       cam_layer: str) -> Figure:
    """Three panels: the input; signed Grad-CAM over it (red: evidence for the class, blue:
    against; standard Grad-CAM is the red part); saliency over it, scaled to 0…1."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.5, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    fig.suptitle(title, fontsize=10)
    show_image(axes[0], image)
    axes[0].set_title("input", fontsize=9)
    show_image(axes[1], image)
    limit = float(cam.abs().max()) or 1.0
    shown = axes[1].imshow(cam.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=0.6,
                           interpolation="bilinear")
    axes[1].set_title(f"Grad-CAM ({cam_layer}): red for, blue against", fontsize=9)
    fig.colorbar(shown, ax=axes[1], shrink=0.8)
    show_image(axes[2], image)
    top = float(saliency.max()) or 1.0
    shown = axes[2].imshow((saliency / top).numpy(), cmap="inferno", vmin=0, vmax=1, alpha=0.6,
                           interpolation="bilinear")
    axes[2].set_title("saliency |∂score/∂pixel| (max = 1)", fontsize=9)
    fig.colorbar(shown, ax=axes[2], shrink=0.8)
    return fig


def image_grid_figure(images: Tensor, captions: list[str], rows: int, cols: int, title: str,
                      wrong: list[bool] | None = None) -> Figure:
    """uint8 N×C×H×W images on a rows×cols grid, each captioned above (``wrong`` ones in red).
    Drawn as one picture with text on it: a hundred subplots would take seconds."""
    from matplotlib.figure import Figure

    count, channels, height, width = images.shape
    pixel = 1.2 / (width + 2)  # inches: each tile about 1.2 inches wide
    lines = max((caption.count("\n") + 1 for caption in captions), default=1)
    gap = math.ceil((lines * 7 * 1.25 / 72 + 0.04) / pixel)  # room for 7-point captions
    rgb = images[:, :3] if channels >= 3 else images[:, :1].expand(-1, 3, -1, -1)
    canvas = np.ones((rows * (height + gap), cols * (width + 2), 3))
    for i in range(min(count, rows * cols)):
        top, left = (i // cols) * (height + gap) + gap, (i % cols) * (width + 2) + 1
        canvas[top:top + height, left:left + width] = rgb[i].permute(1, 2, 0).numpy() / 255.0
    fig_width = max(canvas.shape[1] * pixel, 3.0)
    title = _wrap(title, fig_width)
    grid_height, heading = canvas.shape[0] * pixel, 0.15 + 0.17 * (title.count("\n") + 1)
    fig = Figure(figsize=(fig_width, grid_height + heading))
    ax = fig.add_axes((0, 0, 1, grid_height / (grid_height + heading)))
    ax.imshow(canvas, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    fig.suptitle(title, fontsize=9, y=1 - 0.08 / fig.get_figheight(), va="top")
    for i, caption in enumerate(captions[:rows * cols]):
        red = wrong is not None and wrong[i]
        ax.text((i % cols) * (width + 2) + 1 + width / 2, (i // cols) * (height + gap) + gap - 0.5,
                caption, ha="center", va="bottom", fontsize=7, color="#c0392b" if red else "black")
    return fig


def confusion_figure(matrix: Tensor, classes: list[str], title: str) -> Figure:
    """Two panels: counts, and each row divided by its true-class total (the recall on the diagonal)."""
    from matplotlib.figure import Figure

    counts = matrix.numpy().astype(np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    k = len(classes)
    size = min(16.0, max(4.5, 0.45 * k + 2))
    fig = Figure(figsize=(2 * size + 1, size), layout="constrained")
    fig.suptitle(title, fontsize=10)
    for ax, values, label in zip(fig.subplots(1, 2), (counts, normalised),
                                 ("counts", "row-normalised (fraction of each true class)"),
                                 strict=True):
        image = ax.imshow(values, cmap="Blues", interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_xticks(range(k), classes, rotation=90 if max(map(len, classes)) > 3 else 0, fontsize=7)
        ax.set_yticks(range(k), classes, fontsize=7)
        if k <= 20:
            top = values.max() or 1
            for (row, col), value in np.ndenumerate(values):
                text = f"{value:d}" if values.dtype.kind == "i" else f"{value:.2f}"
                ax.text(col, row, text, ha="center", va="center", fontsize=6,
                        color="white" if value > 0.6 * top else "black")
        fig.colorbar(image, ax=ax, shrink=0.7)
    return fig
