"""Atomic writes (temporary name, then rename) of figures and images into an output folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from torch import Tensor

from cnnlab import files
from cnnlab.errors import ConfigError, Problem

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Written:
    """A file written by inspect: what it shows, where, and its artifact kind in the run store."""

    title: str
    path: Path
    kind: str


# Image files a user may name with -o that cnnlab does not write (it writes .png, .svg, .pdf):
# without this check such a name would become a folder of that name.
IMAGE_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff",
                  ".eps", ".ps", ".avif", ".heic")


def refuse_other_image(output: str | Path | None, allowed: tuple[str, ...]) -> None:
    """ConfigError when ``output`` names an image file whose kind is not one of ``allowed``
    (``out.jpg``); any other name is a file of an allowed kind or a folder."""
    suffix = Path(output).suffix.lower() if output is not None else ""
    if suffix in IMAGE_SUFFIXES and suffix not in allowed:
        raise ConfigError(Problem("--output", str(output), f"is a {suffix} file, and figures are written as "
                                  f"{', '.join(allowed)}: name one of those, or a folder"))


def output_dir(path: str | Path) -> Path:
    """``path`` as a folder, created if needed; a file in the way is a ConfigError."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(Problem("output", str(folder), "is a file, not a folder"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_figure(fig: Figure, path: Path, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically."""
    return files.save_figure(fig, path, dpi=dpi, key="output")


def save_image(image: Tensor, path: Path, min_side: int = 224) -> Path:
    """Write a uint8 C×H×W image as PNG, enlarged by whole pixels (nearest) to at least
    ``min_side`` so every pixel the model saw stays visible."""
    array = image.detach().cpu().numpy().astype(np.uint8).transpose(1, 2, 0)
    factor = max(1, -(-min_side // max(array.shape[:2])))
    array = array.repeat(factor, axis=0).repeat(factor, axis=1)
    picture = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array[..., :3])
    return files.write_atomic(path, lambda handle: picture.save(handle, format="PNG"))
