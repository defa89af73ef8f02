"""Whole-tensor image conversions: to uint8, resize, 1↔3 channels, and per-batch normalisation."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.errors import DataError

# Images converted per step, to bound temporary copies (1024 × 3 × 224² floats ≈ 620 MB).
_CHUNK = 1024
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)  # ITU-R BT.601


def to_uint8(array: np.ndarray, what: str) -> np.ndarray:
    """``array`` as uint8: integers 0–255 as they are, floats in 0–1 or 0–255 scaled and rounded.

    ``what`` names the array in the DataError raised for any other values.
    """
    if array.dtype == np.uint8:
        return array
    if array.size == 0:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise DataError(f"{what}: integer pixel values must be in 0–255, found {low}..{high}")
        return array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{what}: pixel values must be numbers, found dtype {array.dtype}")
    low, high = float(array.min()), float(array.max())
    if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high > 255:
        raise DataError(f"{what}: float pixel values must be in 0–1 or 0–255, "
                        f"found {low:g}..{high:g}")
    scale = 255.0 if high <= 1.0 else 1.0
    return np.rint(array * scale).clip(0, 255).astype(np.uint8)


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 N×C×H×W images resized to size×size (bilinear with antialias), in chunks.

    Interpolates the uint8 tensor directly (torch's fixed-point CPU kernel): no float copy.
    """
    if images.shape[-2:] == (size, size):
        return images
    out = torch.empty((*images.shape[:2], size, size), dtype=torch.uint8)
    for start in range(0, len(images), _CHUNK):
        out[start:start + _CHUNK] = F.interpolate(
            images[start:start + _CHUNK], size=(size, size), mode="bilinear", antialias=True,
            align_corners=False)
    return out


def set_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 images with ``channels`` channels: gray repeated to RGB, or RGB to BT.601 luminance."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.repeat(1, 3, 1, 1)
    if have == 3 and channels == 1:
        out = torch.empty((len(images), 1, *images.shape[2:]), dtype=torch.uint8)
        for start in range(0, len(images), _CHUNK):
            chunk = images[start:start + _CHUNK].float()
            luma = (chunk * _LUMA).sum(1, keepdim=True)
            out[start:start + _CHUNK] = luma.round_().clamp_(0, 255).to(torch.uint8)
        return out
    raise DataError(f"cannot convert images with {have} channels to {channels}")


class Normalizer:
    """uint8 N×C×H×W batch -> float32 normalised batch, with the constants computed once."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], channels_last: bool,
                 device: torch.device | str = "cpu"):
        std_t = torch.tensor(std, dtype=torch.float32, device=device).clamp_min(1e-6).view(1, -1, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -mean_t / std_t
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(torch.float32, memory_format=self.memory_format)
        return x.mul_(self.scale).add_(self.shift)
