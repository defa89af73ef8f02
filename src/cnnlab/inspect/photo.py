"""A user's image file turned into the input a run was trained on (MNIST's conversion for digits)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from cnnlab.errors import ConfigError, DataError, Problem, one_of

STYLES = ("auto", "digit", "plain")
# Datasets of white digits centred by mass in a 20×20 box on a black 28×28 canvas.
DIGIT_DATASETS = ("mnist", "mnist-sample")
DIGIT_SIZE, DIGIT_BOX = 28, 20
MAX_PIXELS = 64_000_000  # larger files are refused before they are decoded
WORK_SIDE = 2048  # images are reduced to at most this many pixels on their longer side


def read_image(path: str | Path) -> Image.Image:
    """The image at ``path``, decoded and upright (EXIF orientation applied), reduced to at most
    WORK_SIDE pixels on its longer side, transparency flattened onto white. An image above
    MAX_PIXELS, or anything unreadable, is a DataError naming the file and why."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS decides
            opened = Image.open(path)
        with opened:
            opened.draft(None, (WORK_SIDE, WORK_SIDE))  # JPEG: decoded at 1/2–1/8 scale when that is enough
            width, height = opened.size
            if width * height > MAX_PIXELS:
                raise DataError(f"{path}: image too large: {width}×{height} is {width * height / 1e6:.0f} "
                                f"megapixels; cnnlab reads images of at most {MAX_PIXELS / 1e6:.0f} "
                                "megapixels: scale it down first")
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: image too large ({exc})") from None
    except (OSError, ValueError, SyntaxError) as exc:
        reason = "not an image file" if isinstance(exc, Image.UnidentifiedImageError) else str(exc)
        raise DataError(f"{path}: cannot read it as an image ({reason})") from None
    if max(image.size) > WORK_SIDE:  # every later step then works on at most WORK_SIDE² pixels
        image = image.reduce(math.ceil(max(image.size) / WORK_SIDE))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image


def resolve_style(style: str, dataset: str, input_shape: tuple[int, int, int]) -> str:
    """``auto`` becomes ``digit`` for 1×28×28 models trained on MNIST, else ``plain``."""
    if style not in STYLES:
        raise ConfigError(Problem("style", style, one_of(STYLES)))
    if style != "auto":
        return style
    digit = dataset in DIGIT_DATASETS and tuple(input_shape) == (1, DIGIT_SIZE, DIGIT_SIZE)
    return "digit" if digit else "plain"


def to_input(image: Image.Image, input_shape: tuple[int, int, int], style: str = "plain") -> torch.Tensor:
    """uint8 C×H×W input for a model of ``input_shape``: ``plain`` converts the channels and
    resizes; ``digit`` applies MNIST's conversion (see `digit_canvas`) and needs 1×28×28."""
    channels, height, width = input_shape
    if style == "digit":
        if tuple(input_shape) != (1, DIGIT_SIZE, DIGIT_SIZE):
            raise ConfigError(Problem("style", style, f"needs a 1×28×28 model, not "
                                      f"{channels}×{height}×{width}"))
        gray = np.asarray(image.convert("L"), dtype=np.float64)
        return torch.from_numpy(digit_canvas(gray))[None]
    converted = image.convert("L" if channels == 1 else "RGB")
    if converted.size != (width, height):
        converted = converted.resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(converted, dtype=np.uint8).reshape(height, width, -1)
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


def digit_canvas(gray: np.ndarray, size: int = DIGIT_SIZE, box: int = DIGIT_BOX) -> np.ndarray:
    """MNIST's conversion of a grayscale photo (H×W, 0–255) to a size×size uint8 digit: invert a
    light background, stretch the ink to 0–255, crop to the digit (ignoring specks smaller than a
    tenth of the largest stroke), scale its longer side to ``box`` and place it so its centre of
    mass is the canvas centre. A blank image is a DataError."""
    from scipy import ndimage

    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    if background > 127:
        gray, background = 255.0 - gray, 255.0 - background
    ink = np.clip(gray - background, 0, None)
    # Find the digit on a blurred copy, so sensor noise neither sets the threshold nor the crop.
    smooth = ndimage.gaussian_filter(ink, sigma=max(1.0, max(gray.shape) / 200))
    peak = float(smooth.max())
    if peak < 16:
        raise DataError("no digit found: the image has no dark-on-light or light-on-dark strokes")
    mask = smooth > 0.4 * peak
    labels, count = ndimage.label(mask)
    sizes = ndimage.sum_labels(mask, labels, index=range(1, count + 1))
    keep = np.isin(labels, 1 + np.flatnonzero(sizes >= 0.1 * sizes.max()))
    rows, cols = np.flatnonzero(keep.any(axis=1)), np.flatnonzero(keep.any(axis=0))
    near = ndimage.binary_dilation(keep, iterations=max(1, round(max(gray.shape) / 100)))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    digit = np.where(near, ink, 0.0)[top:bottom, left:right]
    stroke = float(np.percentile(digit[keep[top:bottom, left:right]], 90))
    digit = np.clip(digit / max(stroke, 1e-6), 0, 1)

    scale = box / max(digit.shape)
    shape = (max(1, round(digit.shape[0] * scale)), max(1, round(digit.shape[1] * scale)))
    small = F.interpolate(torch.from_numpy(digit)[None, None].float(), size=shape, mode="bilinear",
                          antialias=True, align_corners=False)[0, 0].clamp(0, 1).numpy()
    com_y, com_x = ndimage.center_of_mass(small) if small.sum() > 0 else (shape[0] / 2, shape[1] / 2)
    top = int(np.clip(round((size - 1) / 2 - com_y), 0, size - shape[0]))
    left = int(np.clip(round((size - 1) / 2 - com_x), 0, size - shape[1]))
    canvas = np.zeros((size, size), dtype=np.float64)
    canvas[top:top + shape[0], left:left + shape[1]] = small
    return np.rint(canvas * 255).astype(np.uint8)
