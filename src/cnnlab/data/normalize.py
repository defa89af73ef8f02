"""uint8 image batches as the float batches a model trains on: (x/255 − mean)/std."""

from __future__ import annotations

import torch


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
