"""Top-k class probabilities for a user's image files: one result or one error per file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.errors import ConfigError, DataError, Problem
from cnnlab.inspect.loading import LoadedRun
from cnnlab.inspect.output import output_dir, save_image
from cnnlab.inspect.photo import read_image, resolve_style, to_input


@dataclass
class FilePrediction:
    """One file's top classes with probabilities, or why it could not be predicted."""

    path: Path
    top: list[tuple[str, float]]
    error: str | None = None
    shown: Path | None = None  # the preprocessed input, when asked for


def predict_files(run: LoadedRun, paths: Sequence[str | Path], *, top: int = 3, style: str = "auto",
                  show_dir: str | Path | None = None) -> list[FilePrediction]:
    """Predict every file with the run's preprocessing (see `cnnlab.inspect.photo`); a file that
    cannot be read gets its error in its result and the others are still predicted. ``show_dir``
    receives each preprocessed input as ``<name>.input.png``."""
    if top < 1:
        raise ConfigError(Problem("top", top, "must be at least 1"))
    style = resolve_style(style, run.dataset, run.input_shape)
    folder = output_dir(show_dir) if show_dir is not None else None
    results: list[FilePrediction] = []
    inputs: list[torch.Tensor] = []
    for raw in paths:
        path = Path(raw)
        try:
            image = to_input(read_image(path), run.input_shape, style)
        except DataError as exc:
            message = str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}"
            results.append(FilePrediction(path, [], message))
            continue
        shown = None
        if folder is not None:
            taken = {r.shown for r in results}
            shown = folder / f"{path.stem}.input.png"
            for n in range(2, len(results) + 2):
                if shown not in taken:
                    break
                shown = folder / f"{path.stem}-{n}.input.png"
            save_image(image, shown)
        results.append(FilePrediction(path, [], None, shown))
        inputs.append(image)
    if inputs:
        probabilities = run.probabilities(torch.stack(inputs))
        k = min(top, len(run.classes))
        values, indices = probabilities.topk(k, dim=1)
        good = (r for r in results if r.error is None)
        for result, p, i in zip(good, values.tolist(), indices.tolist(), strict=True):
            result.top = [(run.classes[c], prob) for c, prob in zip(i, p, strict=True)]
    return results
