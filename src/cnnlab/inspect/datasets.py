"""Sample grids straight from a dataset, with or without alterations: see what a run will train on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.config import DataConfig
from cnnlab.data import load_data
from cnnlab.data.alter import alter_images, alter_name, parse_alter
from cnnlab.data.labels import domain_label
from cnnlab.data.mixture import derived_seed
from cnnlab.data.splits import limit
from cnnlab.errors import DataError, Problem, one_of
from cnnlab.inspect.figures import image_grid_figure
from cnnlab.inspect.output import output_dir, refuse_other_image, save_figure

SPLITS = ("train", "test")


@dataclass
class DatasetSamples:
    """Where the grid went and what it shows."""

    path: Path
    shown: int
    description: str


def dataset_samples(dataset: str, *, alter: str | list[str] | None = None, grid: tuple[int, int] = (8, 8),
                    split: str = "test", seed: int = 0, size: int | None = None,
                    output: str | Path | None = None, data_root: str | None = None,
                    path: str | None = None) -> DatasetSamples:
    """The first rows×cols images of ``dataset``'s ``split``, altered with ``alter`` (drawn from
    ``seed``), captioned with their class, as one PNG. ``output`` is a .png file or a folder
    (default: the current folder)."""
    if split not in SPLITS:
        raise DataError(str(Problem("--split", split, one_of(SPLITS))))
    refuse_other_image(output, (".png",))
    options = parse_alter(alter) if alter else ()
    rows, cols = grid
    count = rows * cols
    # The whole dataset is loaded, so that the description gives the true split sizes; the grid
    # shows a random `count` of the split, as `limit` would have chosen them.
    bundle = load_data(DataConfig(dataset=dataset, path=path, root=data_root, size=size, val=0.0), seed)
    whole = bundle.test if split == "test" else bundle.train
    chosen = limit(whole, count, torch.Generator().manual_seed(seed))
    images = chosen.images
    if options:
        images = alter_images(images, options, derived_seed(seed, dataset, alter_name(options), split))
    name = domain_label({"dataset": dataset, "alter": alter})
    captions = [bundle.classes[int(label)] for label in chosen.labels]
    title = (f"{name}: {len(images)} {split} images, seed {seed}"
             + (f" · alter {' + '.join(options)}" if options else "") + "\ncaption: class")
    fig = image_grid_figure(images, captions, rows, cols, title)
    target = Path(output) if output is not None else Path.cwd()
    if target.suffix.lower() != ".png":
        target = output_dir(target) / f"samples-{name}.png"
    else:
        output_dir(target.parent)
    return DatasetSamples(save_figure(fig, target), len(images), bundle.description)
