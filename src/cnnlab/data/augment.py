"""Augmentation of training batches: random pad-and-crop and horizontal flips on uint8 tensors.

Applied to each training batch on the in-memory uint8 images, before normalisation, with a few
batched tensor operations (no per-image Python): one gather does the crop and the flip of every
image at once. Validation and test images are never augmented (the training loops call this on
training batches only). The random offsets and flips are drawn from the generator the loop
passes, the run's shuffle generator, so a run is reproducible by its seed, a resumed run draws
what the uninterrupted one would have drawn (the generator's state is checkpointed), and a
vmapped cell draws exactly what its separate run draws.

``data.augment`` names a policy, and each transform has a key of its own that overrides it:

- ``crop``: pad by ``crop_padding`` pixels (zeros) and crop back to the image size at a random
  offset (torchvision's ``RandomCrop(size, padding)``); the default padding is an eighth of the
  image size (4 for 32×32, 3 for 28×28).
- ``crop_flip``: ``crop``, then flip half of the images left-right (``RandomHorizontalFlip``),
  the CIFAR recipe of torchvision's references. Flipping digits is refused unless
  ``data.flip = true`` is set explicitly (`cnnlab.checks`): a flipped 2 is not a 2.
- ``none`` (the default): no augmentation, unless ``crop_padding`` or ``flip`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cnnlab.config import DataConfig


@dataclass(frozen=True)
class Augment:
    """Random pad-and-crop by up to ``padding`` pixels each way, and left-right flips when ``flip``."""

    padding: int
    flip: bool

    def __call__(self, images: torch.Tensor, generator: torch.Generator | Sequence[torch.Generator],
                 ) -> torch.Tensor:
        """Augmented copies of uint8 N×C×H×W ``images`` (same shape and dtype). With a list of
        generators (vmapped cells), the images are that many equal blocks, one per generator, and
        each block draws from its own generator exactly what a call on the block alone draws."""
        n, height, width = len(images), images.shape[2], images.shape[3]
        generators = [generator] if isinstance(generator, torch.Generator) else list(generator)
        block = n // len(generators)
        rows, cols = [], []
        for g in generators:
            r, c = self._draw(block, height, width, g)
            rows.append(r)
            cols.append(c)
        return self._apply(images, torch.cat(rows), torch.cat(cols))

    def _draw(self, n: int, height: int, width: int, generator: torch.Generator,
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """The source rows (n×H) and columns (n×W) of each image's output, in the padded image."""
        p = self.padding
        # Offsets and flips are drawn on the CPU (the generator's device) and moved once.
        rows = torch.arange(height).expand(n, height)
        cols = torch.arange(width).expand(n, width)
        if p:
            rows = rows + torch.randint(0, 2 * p + 1, (n, 1), generator=generator)
            cols = cols + torch.randint(0, 2 * p + 1, (n, 1), generator=generator)
        if self.flip:
            flipped = torch.rand(n, 1, generator=generator) < 0.5
            cols = torch.where(flipped, cols.flip(1), cols)
        return rows, cols

    def _apply(self, images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        n, channels, height, width = images.shape
        p = self.padding
        source = F.pad(images, (p, p, p, p)) if p else images
        device = images.device
        # Two gathers (rows, then columns) cost half of one four-index gather on the CPU.
        rows = rows.to(device).view(n, 1, height, 1).expand(n, channels, height, source.shape[3])
        picked = torch.gather(source, 2, rows)
        cols = cols.to(device).view(n, 1, 1, width).expand(n, channels, height, width)
        return torch.gather(picked, 3, cols)

    def describe(self) -> str:
        """A few words for the run's opening line."""
        parts = [f"crop (padding {self.padding})"] if self.padding else []
        if self.flip:
            parts.append("flip")
        return "augment " + " + ".join(parts)


def make_augment(data: DataConfig, image_size: int) -> Augment | None:
    """The augmentation ``data`` asks for on images of ``image_size`` pixels, or None."""
    policy = data.augment
    padding = data.crop_padding
    if padding is None:
        padding = max(1, image_size // 8) if policy in ("crop", "crop_flip") else 0
    flip = data.flip if data.flip is not None else policy == "crop_flip"
    if not padding and not flip:
        return None
    return Augment(padding, flip)
