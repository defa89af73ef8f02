"""The numbers behind each explainer: one convolution step, pooling side by side, 1×1 costs.

Every number comes from the scratch ops, so a figure shows exactly what ``conv2d`` computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.errors import ConfigError, Problem
from cnnlab.scratch.ops import avg_pool2d, conv2d, global_avg_pool2d, max_pool2d, relu
from cnnlab.window_sizes import Padding, SizeResult, output_size

KERNELS: dict[str, np.ndarray] = {
    "sobel-x": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=float),
    "sobel-y": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=float),
    "laplacian": np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=float),
    "outline": np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], dtype=float),
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=float),
    "emboss": np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=float),
    "box-blur": np.full((3, 3), 1 / 9),
    "gaussian": np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=float) / 16,
    "identity": np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=float),
}
"""Named 3×3 kernels a learner knows from image processing."""


def parse_kernel(spec: str) -> np.ndarray:
    """A kernel by name (see ``KERNELS``) or written out row by row: ``"1,0,-1;2,0,-2;1,0,-1"``."""
    if spec in KERNELS:
        return KERNELS[spec].copy()
    allowed = "is not one of " + ", ".join(KERNELS) + " or rows like '1,0,-1;2,0,-2;1,0,-1'"
    try:
        rows = [[float(v) for v in row.split(",")] for row in spec.split(";")]
    except ValueError:
        raise ConfigError(Problem("kernel", spec, allowed)) from None
    if len({len(row) for row in rows}) != 1:
        raise ConfigError(Problem("kernel", spec, "has rows of different lengths"))
    return np.array(rows)


def load_image(path: str | Path) -> np.ndarray:
    """A picture file as a grayscale (H, W) float64 image in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ConfigError(Problem("image", str(path), "does not exist or is not a file"))
    try:
        with Image.open(path) as picture:
            return np.asarray(picture.convert("L"), dtype=np.float64) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise ConfigError(
            Problem("image", str(path), f"is not an image Pillow can read (PNG, JPEG, …): {exc}")
        ) from None


def _check_int(name: str, value: int, low: int) -> None:
    if not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(Problem(name, value, f"must be an integer ≥ {low}"))


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ConfigError(Problem("image", image.shape, "must be one grayscale (H, W) image"))
    return image


# --- convolution, one output pixel at a time ------------------------------------------------


@dataclass(frozen=True)
class ConvStep:
    """One output pixel of a convolution, with everything needed to draw how it was made."""

    image: np.ndarray
    padded: np.ndarray
    kernel: np.ndarray
    stride: int
    padding: int
    row: int
    col: int
    patch: np.ndarray
    """The window of ``padded`` under the kernel, starting at (row·stride, col·stride)."""
    products: np.ndarray
    """patch ⊙ kernel, element by element."""
    value: float
    """Their sum: the output pixel (row, col)."""
    feature_map: np.ndarray
    sizes: tuple[SizeResult, SizeResult]
    """The output-size formula for the rows and for the columns."""


def conv_step(
    image: np.ndarray,
    kernel: np.ndarray,
    stride: int = 1,
    padding: int = 0,
    at: tuple[int, int] | None = None,
) -> ConvStep:
    """Explain output pixel ``at`` (default: the strongest response) of ``conv2d``."""
    image, kernel = _check_image(image), np.asarray(kernel, dtype=np.float64)
    _check_int("stride", stride, 1)
    _check_int("padding", padding, 0)
    sizes = (
        output_size(image.shape[0], kernel.shape[0], stride, padding),
        output_size(image.shape[1], kernel.shape[1], stride, padding),
    )
    if min(s.size for s in sizes) < 1:
        raise ConfigError(Problem("kernel", kernel.shape, f"is larger than the padded image: {sizes[0]}"))
    feature_map = conv2d(image[None, None], kernel[None, None], stride=stride, padding=padding)[0, 0]
    if at is None:
        row, col = np.unravel_index(np.argmax(np.abs(feature_map)), feature_map.shape)
    else:
        row, col = at
    if not (0 <= row < feature_map.shape[0] and 0 <= col < feature_map.shape[1]):
        shape = "×".join(map(str, feature_map.shape))
        raise ConfigError(Problem("at", f"{row},{col}", f"must be a row,column inside the {shape} map"))
    padded = np.pad(image, padding)
    top, left = row * stride, col * stride
    patch = padded[top : top + kernel.shape[0], left : left + kernel.shape[1]]
    products = patch * kernel
    return ConvStep(
        image,
        padded,
        kernel,
        stride,
        padding,
        int(row),
        int(col),
        patch,
        products,
        float(products.sum()),
        feature_map,
        sizes,
    )


# --- pooling ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolingComparison:
    """Max, average and global average pooling of one image, plus one window worked out."""

    image: np.ndarray
    kernel: int
    stride: int
    max_pooled: np.ndarray
    avg_pooled: np.ndarray
    global_avg: float
    window_at: tuple[int, int]
    """The output pixel whose window is shown: where max and average differ most."""
    window: np.ndarray


def compare_pooling(image: np.ndarray, kernel: int = 2, stride: int | None = None) -> PoolingComparison:
    """Pool ``image`` three ways; pick the window where max and average disagree most."""
    image = _check_image(image)
    _check_int("kernel", kernel, 1)
    stride = kernel if stride is None else stride
    _check_int("stride", stride, 1)
    if kernel > min(image.shape):
        raise ConfigError(Problem("kernel", kernel, f"is larger than the image {image.shape}"))
    x = image[None, None]
    max_pooled = max_pool2d(x, kernel, stride)[0, 0]
    avg_pooled = avg_pool2d(x, kernel, stride)[0, 0]
    row, col = np.unravel_index(np.argmax(max_pooled - avg_pooled), max_pooled.shape)
    window = image[row * stride : row * stride + kernel, col * stride : col * stride + kernel]
    return PoolingComparison(
        image,
        kernel,
        stride,
        max_pooled,
        avg_pooled,
        float(global_avg_pool2d(x)[0, 0]),
        (int(row), int(col)),
        window,
    )


# --- 1×1 convolution -------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvCost:
    """Parameters and floating-point operations of one convolution layer ('same' padding)."""

    kernel: int
    in_channels: int
    out_channels: int
    height: int
    width: int

    @property
    def parameters(self) -> int:
        """Weights plus one bias per output channel."""
        return self.kernel**2 * self.in_channels * self.out_channels + self.out_channels

    @property
    def flops(self) -> int:
        """2 × multiply-adds: every output pixel of every output channel reads k·k·C_in inputs."""
        return 2 * self.height * self.width * self.out_channels * self.kernel**2 * self.in_channels


@dataclass(frozen=True)
class ChannelMixing:
    """A 1×1 convolution on a few maps: each output pixel mixes the channels at that pixel."""

    inputs: np.ndarray
    """(C_in, H, W) feature maps."""
    input_names: tuple[str, ...]
    weights: np.ndarray
    """(C_out, C_in): the whole 1×1 kernel."""
    outputs: np.ndarray
    """(C_out, H, W) after ReLU: the 1×1 convolution adds a non-linearity per pixel."""
    pixel: tuple[int, int]
    """The pixel worked out in the figure."""
    costs: tuple[ConvCost, ConvCost]
    """The 1×1 and the 3×3 convolution with the requested channel counts and size."""


MIXING_WEIGHTS = np.array([[1.0, 0.5, 0.5], [0.5, -1.0, 1.0]])
"""Default 1×1 kernel: 3 input maps (image, x-edges, y-edges) → 2 output maps."""


def channel_mixing(
    image: np.ndarray,
    in_channels: int = 64,
    out_channels: int = 32,
    size: int = 56,
    weights: np.ndarray = MIXING_WEIGHTS,
) -> ChannelMixing:
    """Mix an image and its edge maps with a 1×1 convolution; cost a C_in → C_out layer at size².

    The costs compare a 1×1 with a 3×3 convolution on a ``size``×``size`` map (seed 004's
    example: 64 → 32 channels at 56×56).
    """
    image = _check_image(image)
    for name, value in (
        ("in_channels", in_channels),
        ("out_channels", out_channels),
        ("size", size),
    ):
        _check_int(name, value, 1)
    sobel = np.stack([KERNELS["sobel-x"], KERNELS["sobel-y"]])[:, None]
    edges = conv2d(image[None, None], sobel, padding="same")[0]
    inputs = np.concatenate([image[None], edges])
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape[1:] != (len(inputs),):
        raise ConfigError(Problem("weights", weights.shape, f"must be (C_out, {len(inputs)})"))
    outputs = relu(conv2d(inputs[None], weights[:, :, None, None]))[0]
    pixel = np.unravel_index(np.argmax(np.abs(edges).sum(axis=0)), image.shape)
    costs = tuple(ConvCost(k, in_channels, out_channels, size, size) for k in (1, 3))
    return ChannelMixing(
        inputs,
        ("image", "x-edges (sobel-x)", "y-edges (sobel-y)"),
        weights,
        outputs,
        (int(pixel[0]), int(pixel[1])),
        costs,
    )


def size_table(
    n: int, kernel: int, strides: list[int], paddings: list[Padding] | None = None, dilation: int = 1
) -> list[SizeResult]:
    """``output_size`` for every padding and stride (paddings outer), as ``explain size`` prints."""
    return [
        output_size(n, kernel, stride, padding, dilation)
        for padding in (paddings or [None])
        for stride in strides
    ]
