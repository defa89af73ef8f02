"""Seeded, whole-batch alterations that turn gray digits into varied colour images.

Seed 003 made its MNIST classifier work on real-world-like pictures by training on digits
recoloured and cluttered with OpenCV. This module does the same with torch tensor operations on
whole batches (no per-image Python loop): uint8 N×1×H×W gray digits (white on black, as MNIST)
become uint8 N×3×H×W colour images. An experiment names the alterations as ``alter = "colour"``,
``alter = "colour+noise"`` or ``alter = ["colour", "noise", "blur"]``:

``colour``
    Random digit (foreground) and background colours per image. The digit is light on dark, as in
    the source: BT.601 luminance (0.299 R + 0.587 G + 0.114 B, on a 0–1 scale) of the digit
    colour minus that of the background colour is at least ``MIN_CONTRAST`` (0.4). The pair of
    luminances is drawn uniformly from all pairs that meet the rule, then each colour is a random
    RGB colour moved to its luminance (mixed towards white or scaled towards black), so the rule
    holds by construction: no rejection, nothing to repair. The gray value ``d`` (0–1) sets the
    blend weight ``w = clamp((d - 0.1) / 0.8, 0, 1)`` between background and digit colour: pixels
    with ``d >= 0.9`` are exactly the digit colour, pixels with ``d <= 0.1`` exactly the
    background, and anti-aliased edges in between stay a smooth linear ramp.
``invert``
    The photographic negative (255 - x in every channel) of a random half of the images
    (Bernoulli 0.5 per image), applied after colouring and before blur and noise: light-on-dark
    becomes dark-on-light. With ``colour`` this swaps which side is lighter and keeps every
    luminance difference exactly (luminance of 1 - c is 1 - luminance of c); it is taken of the
    image's colours before they are mixed, so it equals 255 - x up to rounding (±1). Without
    ``colour`` it inverts the gray image exactly.
``texture``
    The background becomes a smooth random texture: three random sinusoid stripes (direction,
    0.5–2.5 cycles per image, phase, weight) blend the background colour with a second colour
    near it (a random 50–100 % step towards another random colour). Both colours meet the
    contrast rule against the digit colour, and luminance is linear, so every blend does too.
``patches``
    The background is overlaid with a crop of another image of the batch (a random other image,
    a random crop of 40–80 % of its side, maybe mirrored, resized to H×W), its strokes drawn in a
    third random colour that meets the contrast rule: clutter that looks like pieces of digits.
    (A batch of one image takes its patch from itself.)
``noise``
    Additive Gaussian noise, ``NOISE_SIGMA`` = 0.05 on the 0–1 scale, independent per pixel and
    channel, then clipped to 0–1.
``blur``
    Gaussian blur with a random sigma per image, uniform in ``BLUR_SIGMA`` = 0.5–1.2 pixels (for
    28×28 images; scaled by min(H, W) / 28), separable, with edge pixels repeated.
``jitter``
    A small random affine map of the gray digit before anything else (rotation ±10°, scale
    0.9–1.1, translation ±2 pixels per axis, scaled by min(H, W) / 28), bilinear, zeros outside:
    the digit stays a digit of the same class, so labels stay right.
``all``
    Preset: every option above.

``texture`` and ``patches`` imply ``colour`` (they need a digit colour to contrast against).
Options are applied in the fixed order of ``ORDER`` (jitter, colour, texture, patches, invert,
blur, noise), whatever order they are named in.

Contrast guarantee, for any combination of ``colour``, ``texture``, ``patches``, ``invert`` and
``jitter`` (without ``blur`` and ``noise``): in the uint8 output, every pixel whose (jittered)
gray value is at least 0.9 has the image's digit colour, and every pixel whose gray value is at
most 0.1 has a luminance at least ``MIN_CONTRAST`` away from it, on the same side for the whole
image (colours are drawn with a 1.5/255 margin, so rounding to uint8 cannot break the rule).
Hence the mean luminance of the digit pixels and that of the background pixels differ by at least
``MIN_CONTRAST`` too. Bilinear jitter can soften a thin stroke below 0.9 everywhere (about 0.2 %
of MNIST digits): such a digit is drawn in a blend and the rule says nothing about it.
``blur`` and ``noise`` come last and are outside the guarantee: blur mixes digit and background
near strokes, and clipped noise moves region means slightly.

Randomness: one ``torch.Generator(seed)`` draws every per-image parameter for the whole batch up
front, always the same parameters whatever the options, so adding ``noise`` to ``colour`` keeps
each image's colours. Per-pixel noise comes in blocks of 256 images (by index), each block from
its own ``torch.Generator`` seeded by that first generator, so the output does not depend on
``chunk``: images are processed ``chunk`` at a time only to bound memory. Images are never
reordered, so labels stay valid. An image's result depends on its index and on the batch size
(parameters are drawn for all N), and with ``patches`` on the other images of the batch.
Work is done on the CPU (the result goes back to the input's device). On a 2-core laptop CPU,
60,000 MNIST digits take about 0.7 s with ``colour`` and 5 s with ``all``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.data.transforms import set_channels
from cnnlab.errors import DataError, one_of

MIN_CONTRAST = 0.4  # least BT.601 luminance difference (0–1) between digit and background colours
NOISE_SIGMA = 0.05  # std of the additive Gaussian noise, on the 0–1 scale
BLUR_SIGMA = (0.5, 1.2)  # range of the blur's sigma in pixels, for 28×28 images

OPTIONS: dict[str, str] = {
    "colour": f"random digit and background colours, luminance contrast >= {MIN_CONTRAST}",
    "invert": "photographic negative of a random half of the images (dark digit on light)",
    "texture": "smooth random stripes in the background, still meeting the contrast rule",
    "patches": "background clutter cut from another image of the batch, meeting the contrast rule",
    "noise": f"additive Gaussian noise, sigma {NOISE_SIGMA} on the 0-1 scale",
    "blur": f"Gaussian blur, random sigma {BLUR_SIGMA[0]}-{BLUR_SIGMA[1]} px (at 28x28)",
    "jitter": "small random rotation (±10°), scale (0.9-1.1) and shift (±2 px) of the digit",
    "all": "preset: jitter+colour+texture+patches+invert+blur+noise",
}
ORDER = ("jitter", "colour", "texture", "patches", "invert", "blur", "noise")
_PRESETS = {"all": ORDER}
_IMPLIES = {"texture": "colour", "patches": "colour"}

_LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R BT.601
_INK, _PAPER = 0.9, 0.1  # gray values at and above which a pixel is digit, at and below background
_MARGIN = 1.5 / 255  # drawn contrast exceeds MIN_CONTRAST by this, so uint8 rounding keeps the rule
_STRIPES = 3
_NOISE_BLOCK = 256  # images per noise generator

# Columns of the per-image parameter table, each uniform in [0, 1).
_COLUMNS = {
    "lum": 2, "fg": 3, "bg": 3, "invert": 1,
    "tex_rgb": 3, "tex_lum": 1, "tex_step": 1, "stripes": 4 * _STRIPES,
    "patch_other": 1, "patch_zoom": 1, "patch_centre": 2, "patch_flip": 1, "patch_rgb": 3,
    "patch_lum": 1, "jitter": 4, "blur": 1,
}
_SLICES: dict[str, slice] = {}
_at = 0
for _name, _width in _COLUMNS.items():
    _SLICES[_name] = slice(_at, _at + _width)
    _at += _width
_WIDTH = _at
del _at, _name, _width


def alter_problem(spec: Any) -> tuple[Any, str] | None:
    """The bad part of an alteration spec and what is allowed, or None when ``spec`` is fine."""
    items = [spec] if isinstance(spec, str) else spec
    if not isinstance(items, list | tuple):
        return spec, "must be a name, a list of names or names joined by '+'"
    names = []
    for item in items:
        if not isinstance(item, str):
            return item, one_of(list(OPTIONS))
        names += [part.strip().lower() for part in item.split("+") if part.strip()]
    if not names:
        return spec, f"is empty; name at least one option, {one_of(list(OPTIONS)).removeprefix('is not ')}"
    for name in names:
        if name not in OPTIONS:
            return name, one_of(list(OPTIONS), name)
    return None


def parse_alter(spec: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """The canonical options tuple for ``spec``: in ``ORDER``, each once, presets expanded.

    Accepts "colour+noise", ["colour", "noise"] (items may also hold "+"), case-insensitively.
    ``texture`` and ``patches`` add ``colour``. None means no alteration and gives ().
    Raises DataError naming the bad value and what is allowed (`alter_problem`).
    """
    if spec is None:
        return ()
    problem = alter_problem(spec)
    if problem is not None:
        raise DataError(f"alter: {problem[0]!r} {problem[1]}")
    names = [part.strip().lower() for item in ([spec] if isinstance(spec, str) else spec)
             for part in item.split("+") if part.strip()]
    chosen: set[str] = set()
    for name in names:
        chosen.update(_PRESETS.get(name, (name,)))
    chosen.update(_IMPLIES[name] for name in list(chosen) if name in _IMPLIES)
    return tuple(name for name in ORDER if name in chosen)


def alter_name(options: tuple[str, ...] | str | list[str]) -> str:
    """Short domain suffix for metric names: ("colour",) -> "colour", ("colour", "noise") ->
    "colour+noise", every option -> "all"; the options are canonicalised first."""
    canonical = parse_alter(options)
    return "all" if canonical == ORDER else "+".join(canonical)


def _lum(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 luminance of ... × 3 colours."""
    return rgb @ _LUMA.to(rgb.device)


def _with_lum(rgb: torch.Tensor, lum: torch.Tensor) -> torch.Tensor:
    """n×3 colours ``rgb`` (0–1) moved to luminance ``lum`` (n): mixed towards white when too dark,
    scaled towards black when too light; luminance is linear, so the result has it exactly."""
    have = _lum(rgb)
    up = rgb + ((lum - have) / (1 - have).clamp_min(1e-6))[:, None] * (1 - rgb)
    down = rgb * (lum / have.clamp_min(1e-6))[:, None]
    return torch.where((have < lum)[:, None], up, down).clamp_(0, 1)


def _colours(p: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image colours (n×3, 0–1) from parameter rows ``p``: digit, background, texture and patch.

    The digit luminance exceeds every background colour's by MIN_CONTRAST + _MARGIN: the pair
    (background, digit) is uniform over all pairs in 0–1 that meet it; the texture and patch
    colours have luminances uniform in the background's allowed range 0..digit - contrast.
    """
    gap = MIN_CONTRAST + _MARGIN
    lum = p[:, _SLICES["lum"]] * (1 - gap)
    lum_bg, lum_fg = torch.minimum(lum[:, 0], lum[:, 1]), torch.maximum(lum[:, 0], lum[:, 1]) + gap
    room = lum_fg - gap  # background luminances allowed: 0..room
    bg = _with_lum(p[:, _SLICES["bg"]], lum_bg)
    tex = _with_lum(p[:, _SLICES["tex_rgb"]], p[:, _SLICES["tex_lum"]][:, 0] * room)
    step = 0.5 + 0.5 * p[:, _SLICES["tex_step"]]
    return {
        "fg": _with_lum(p[:, _SLICES["fg"]], lum_fg),
        "bg": bg,
        "tex": bg + step * (tex - bg),  # convex: its luminance stays in 0..room
        "patch": _with_lum(p[:, _SLICES["patch_rgb"]], p[:, _SLICES["patch_lum"]][:, 0] * room),
    }


def _grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``F.affine_grid(theta, [n, 1, h, w], align_corners=False)``, computed as a broadcast sum
    (twice as fast on CPU as affine_grid's batched matmul)."""
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=theta.device)
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=theta.device)
    along_x = xs[None, :, None] * theta[:, None, :, 0] + theta[:, None, :, 2]  # n×W×2
    along_y = ys[None, :, None] * theta[:, None, :, 1]  # n×H×2
    return along_x[:, None, :, :] + along_y[:, :, None, :]


def _jitter(gray: torch.Tensor, p: torch.Tensor, scale_px: float) -> torch.Tensor:
    """float n×1×H×W digits rotated ±10°, scaled 0.9–1.1 and shifted ±2·scale_px pixels."""
    _, _, h, w = gray.shape
    j = p[:, _SLICES["jitter"]]
    angle = (2 * j[:, 0] - 1) * math.radians(10)
    zoom = 0.9 + 0.2 * j[:, 1]
    shift = (2 * j[:, 2:4] - 1) * 2 * scale_px  # pixels (x, y)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # Output pixel -> input pixel: A·(out - shift) with A = R(-angle) / zoom, in pixel units,
    # converted to normalised coordinates (x spans W/2 pixels per unit, y H/2).
    a = torch.stack([torch.stack([cos, sin * h / w], 1), torch.stack([-sin * w / h, cos], 1)], 1)
    pix = torch.stack([cos * shift[:, 0] + sin * shift[:, 1], -sin * shift[:, 0] + cos * shift[:, 1]], 1)
    t = -pix / torch.tensor([w / 2, h / 2], device=gray.device)
    theta = torch.cat([a, t[:, :, None]], 2)
    return F.grid_sample(gray, _grid(theta, h, w), mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def _texture(p: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """n×1×H×W smooth texture in 0–1: a weighted mean of three random sinusoid stripes.

    sin(kx·x + ky·y + φ) = sin(kx·x)·cos(ky·y + φ) + cos(kx·x)·sin(ky·y + φ), so the weighted sum
    over stripes is one small batched matrix product.
    """
    s = p[:, _SLICES["stripes"]].view(-1, _STRIPES, 4)
    direction = s[..., 0] * math.pi
    freq = 0.5 + 2.0 * s[..., 1]  # cycles across the image
    phase = s[..., 2] * 2 * math.pi
    weight = 0.2 + s[..., 3]
    weight = weight / weight.sum(1, keepdim=True)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=p.device)
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=p.device)
    ax = (math.pi * freq * torch.cos(direction))[..., None] * xs  # n×K×W
    ay = (math.pi * freq * torch.sin(direction))[..., None] * ys + phase[..., None]  # n×K×H
    left = torch.cat([weight[..., None] * torch.cos(ay), weight[..., None] * torch.sin(ay)], 1)
    right = torch.cat([torch.sin(ax), torch.cos(ax)], 1)
    wave = torch.bmm(left.transpose(1, 2), right)  # n×H×W, in -1..1
    return wave.add_(1).mul_(0.5)[:, None]


def _patches(source: torch.Tensor, other: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """n×1×H×W crops in 0–1 (40–80 % of the side, maybe mirrored) of the gray images source[other]."""
    crops = source[other].float().div_(255)
    _, _, h, w = crops.shape
    zoom = 0.4 + 0.4 * p[:, _SLICES["patch_zoom"]][:, 0]
    centre = (2 * p[:, _SLICES["patch_centre"]] - 1) * (1 - zoom)[:, None]
    mirror = torch.where(p[:, _SLICES["patch_flip"]][:, 0] < 0.5, -1.0, 1.0)
    zero = torch.zeros_like(zoom)
    theta = torch.stack([torch.stack([zoom * mirror, zero, centre[:, 0]], 1),
                         torch.stack([zero, zoom, centre[:, 1]], 1)], 1)
    return F.grid_sample(crops, _grid(theta, h, w), mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def _blur_matrices(sigma: torch.Tensor, size: int, radius: int) -> torch.Tensor:
    """n×size×size matrices M with (M @ v) the Gaussian blur (sigma per image) of each column of v,
    edge pixels repeated: taps that fall off the edge are added to the edge pixel."""
    offsets = torch.arange(-radius, radius + 1, dtype=sigma.dtype, device=sigma.device)
    kernel = torch.exp(-offsets[None, :] ** 2 / (2 * sigma[:, None] ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)  # n×(2r+1)
    rows = torch.arange(size, device=sigma.device)
    cols = (rows[:, None] + offsets.long()[None, :]).clamp(0, size - 1)  # size×(2r+1)
    matrix = torch.zeros(len(sigma), size, size, dtype=sigma.dtype, device=sigma.device)
    index = cols[None].expand(len(sigma), -1, -1)
    return matrix.scatter_add_(2, index, kernel[:, None, :].expand(-1, size, -1).contiguous())


def _blur(images: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Separable Gaussian blur of float n×C×H×W images, sigma (n) per image, edges repeated.

    Each image is multiplied by its blur matrices along both axes (batched matmul: on CPU far
    faster than a depthwise conv2d with one group per image).
    """
    n, c, h, w = images.shape
    along_w = _blur_matrices(sigma, w, radius).transpose(1, 2)
    along_h = _blur_matrices(sigma, h, radius)
    x = torch.bmm(images.reshape(n, c * h, w), along_w).view(n, c, h, w)
    x = torch.bmm(along_h, x.transpose(1, 2).reshape(n, h, c * w))
    return x.view(n, h, c, w).transpose(1, 2)


class _Noise:
    """Standard normal noise for images start..stop: blocks of _NOISE_BLOCK images, each filled by
    its own torch.Generator seeded from ``seeds``, so the values do not depend on how images are
    chunked. Whole blocks are filled in place; a block cut by a chunk boundary is made whole and
    kept, so every block is made once for any chunk size."""

    def __init__(self, seeds: torch.Tensor, count: int, n: int):
        self.seeds, self.count, self.n = seeds.tolist(), count, n
        self.block, self.values = -1, torch.empty(0)

    def _fill(self, block: int, into: torch.Tensor) -> torch.Tensor:
        return into.normal_(generator=torch.Generator().manual_seed(self.seeds[block]))

    def __call__(self, start: int, stop: int) -> torch.Tensor:
        out = torch.empty(stop - start, self.count)
        for block in range(start // _NOISE_BLOCK, (stop - 1) // _NOISE_BLOCK + 1):
            first, last = block * _NOISE_BLOCK, min((block + 1) * _NOISE_BLOCK, self.n)
            if start <= first and last <= stop:
                self._fill(block, out[first - start:last - start])
                continue
            if block != self.block:
                self.block, self.values = block, self._fill(block, torch.empty(last - first, self.count))
            lo, hi = max(start, first), min(stop, last)
            out[lo - start:hi - start] = self.values[lo - first:hi - first]
        return out


def alter_images(images: torch.Tensor, options: tuple[str, ...] | str | list[str], seed: int, *,
                 chunk: int = 4096) -> torch.Tensor:
    """uint8 N×C×H×W images (C 1 or 3; 3 channels are first reduced to BT.601 luminance) altered by
    ``options`` (see the module docstring) into uint8 N×3×H×W, ``chunk`` images at a time.

    Deterministic: the same images, options and seed give identical output, for any ``chunk``.
    Images keep their order, so labels stay valid. Empty ``options`` gives the gray images as RGB.
    Raises DataError for unknown options or images that are not uint8 N×1/3×H×W.
    """
    opts = set(parse_alter(options)) if options else set()
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4 \
            or images.shape[1] not in (1, 3):
        what = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) \
            else type(images).__name__
        raise DataError(f"alter: images must be uint8 N×1×H×W or N×3×H×W, found {what}")
    if chunk < 1:
        raise DataError(f"alter: chunk must be at least 1, found {chunk}")
    gray = set_channels(images.cpu(), 1)
    n, _, h, w = gray.shape
    out = torch.empty((n, 3, h, w), dtype=torch.uint8)
    if n == 0:
        return out.to(images.device)
    g = torch.Generator().manual_seed(seed)
    params = torch.rand(n, _WIDTH, generator=g)
    noise = _Noise(torch.randint(0, 2**62, ((n - 1) // _NOISE_BLOCK + 1,), generator=g), 3 * h * w, n)
    # Patch source: a random other image (itself only when the batch has one image).
    step = (params[:, _SLICES["patch_other"]][:, 0] * (n - 1)).long().clamp_max(max(n - 2, 0)) + 1
    other = (torch.arange(n) + step) % n
    scale_px = min(h, w) / 28
    radius = math.ceil(3 * BLUR_SIGMA[1] * scale_px)
    low, high = BLUR_SIGMA
    sigmas = (low + (high - low) * params[:, _SLICES["blur"]][:, 0]) * scale_px
    flat_back = not ({"texture", "patches"} & opts)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        p = params[start:stop]
        flip = (p[:, _SLICES["invert"]] < 0.5)[:, :, None, None] if "invert" in opts else None
        # Everything below is on the 0–255 scale plus 0.5, so that truncating to uint8 rounds.
        # The image is an affine mix (weights summing to 1) of colours, and blur keeps such mixes:
        # offset, invert (255 - x) and blur act on the colours or on one gray channel, not on
        # three channels of pixels, whenever that gives the same result.
        d = gray[start:stop].float()
        if "jitter" in opts:
            d = _jitter(d, p, scale_px)
        if "colour" in opts:
            col = {key: value[:, :, None, None] * 255 for key, value in _colours(p).items()}
            if flip is not None:
                col = {key: torch.where(flip, 255 - value, value) for key, value in col.items()}
            col = {key: value + 0.5 for key, value in col.items()}
            weight = d.sub_(_PAPER * 255).div_((_INK - _PAPER) * 255).clamp_(0, 1)
            if "blur" in opts and flat_back:  # a flat background: blurring the weight is the same
                weight = _blur(weight, sigmas[start:stop], radius)
            back = col["bg"]
            if "texture" in opts:
                back = torch.lerp(back, col["tex"], _texture(p, h, w))
            if "patches" in opts:
                back = torch.lerp(back, col["patch"], _patches(gray, other[start:stop], p))
            x = torch.lerp(back, col["fg"], weight)  # exactly the digit colour where weight is 1
            if "blur" in opts and not flat_back:
                x = _blur(x, sigmas[start:stop], radius)
        else:
            if "blur" in opts:
                d = _blur(d, sigmas[start:stop], radius)
            if flip is not None:
                d = torch.where(flip, 255 - d, d)
            x = d.add_(0.5).expand(-1, 3, -1, -1)
        if "noise" in opts:
            x = torch.add(x, noise(start, stop).view(-1, 3, h, w), alpha=NOISE_SIGMA * 255).clamp_(0.5, 255.5)
        out[start:stop].copy_(x)  # x in 0.5..255.5 (up to float error): truncation rounds x - 0.5
    return out.to(images.device)
