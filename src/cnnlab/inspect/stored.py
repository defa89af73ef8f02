"""Inspect commands for a stored run: their figures, written to a folder and registered as artifacts."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnnlab.data import Split
from cnnlab.errors import ConfigError, DataError, Problem
from cnnlab.files import OutputFolder
from cnnlab.inspect.evaluation import ClassScores, class_scores, confident_mistakes, confusion_matrix
from cnnlab.inspect.figures import confusion_figure, image_grid_figure
from cnnlab.inspect.loading import LoadedRun, load_run, load_test_split
from cnnlab.inspect.model import (
    Inspection,
    attribution_figures,
    feature_map_figures,
    filter_figures,
    inspect_model,
)
from cnnlab.inspect.output import Written, output_dir, refuse_other_image, save_figure, save_image
from cnnlab.inspect.photo import read_image, resolve_style, to_input
from cnnlab.store import RunStore

_GRID = re.compile(r"^\s*(\d+)\s*[x×*]\s*(\d+)\s*$")


def _folder(store: RunStore, run: LoadedRun, out_dir: str | Path | None) -> Path:
    return output_dir(out_dir if out_dir is not None else store.run_dir(run.record.id) / "inspect")


def _is_folder(output: str | Path | None) -> bool:
    """``-o`` names a folder (not one image file: .png, .svg, .pdf)."""
    return output is not None and Path(output).suffix.lower() not in FIGURE_SUFFIXES


def _output(out_dir: str | Path | None, force: bool) -> OutputFolder | None:
    """The user's ``-o DIR`` as an OutputFolder (checked now: a link, a file or a folder of other
    files is refused unless ``force``), or None for the run's own inspect folder."""
    return OutputFolder(out_dir, "inspect output", force=force) if out_dir is not None else None


@contextlib.contextmanager
def _writing(store: RunStore, run: LoadedRun, out: OutputFolder | None,
             files: list[Written]) -> Iterator[Path]:
    """The folder to draw into: the run's inspect folder, or a staging folder that becomes ``out``
    on success, after which ``files`` (filled in the block) name their published paths."""
    if out is None:
        yield _folder(store, run, None)
        return
    with out as staging:
        yield staging
    files[:] = [dataclasses.replace(written, path=out.final(written.path)) for written in files]


FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


def _figure_path(store: RunStore, run: LoadedRun, output: str | Path | None, default_name: str) -> Path:
    """Where a command that writes one figure writes it: ``output`` when it names an image file
    (.png, .svg, .pdf), else ``default_name`` inside the folder ``output`` (default: the run's)."""
    if output is not None and Path(output).suffix.lower() in FIGURE_SUFFIXES:
        output_dir(Path(output).parent)
        return Path(output)
    return _folder(store, run, output) / default_name


def _register(store: RunStore, run: LoadedRun, files: list[Written]) -> None:
    if store.read_only:  # the figures are written (-o DIR); a read-only store cannot list them
        return
    for written in files:
        store.add_artifact(run.record.id, written.kind, written.path)


def _test_image(split: Split, index: int) -> tuple[torch.Tensor, int]:
    if not 0 <= index < len(split):
        raise ConfigError(Problem("index", index, f"must be in 0..{len(split) - 1} "
                                  f"(the run's test split has {len(split):,} images)"))
    return split.images[index], int(split.labels[index])


def inspect_run(store: RunStore, ref: str, *, index: int | None = None, image: str | Path | None = None,
                out_dir: str | Path | None = None, layer: str | None = None, style: str = "auto",
                data_root: str | None = None, force: bool = False) -> Inspection:
    """Every inspect figure (see `inspect_model`) of run ``ref`` for test image ``index``
    (default 0) or for the image file ``image``, preprocessed as `cnnlab predict` does; into the
    run's folder, or ``out_dir`` (see `cnnlab.files.OutputFolder`; ``force`` for a foreign one)."""
    if index is not None and image is not None:
        raise ConfigError(Problem("image", str(image), "cannot be combined with index: give one"))
    out = _output(out_dir, force)
    run = load_run(store, ref)
    label = None
    files: list[Written] = []
    with _writing(store, run, out, files) as folder:
        if image is not None:
            chosen = resolve_style(style, run.dataset, run.input_shape)
            pixels = to_input(read_image(image), run.input_shape, chosen)
            description = Path(image).name
            files.append(Written(f"{description} as the model sees it",
                                 save_image(pixels, folder / "input.png"), "inspect-input"))
        else:
            index = 0 if index is None else index
            pixels, true_class = _test_image(load_test_split(run, data_root), index)
            description, label = f"test image {index}", run.classes[true_class]
        result = inspect_model(run.model, run.normalize(pixels[None]), folder, image=pixels,
                               classes=run.classes, layer=layer, description=description, label=label)
        files += result.files
    result.files = files
    _register(store, run, result.files)
    return result


@dataclass
class ConfusionResult:
    """The test split's confusion matrix (rows true, columns predicted) and per-class scores."""

    classes: list[str]
    matrix: torch.Tensor
    scores: ClassScores
    files: list[Written] = field(default_factory=list)


def confusion_run(store: RunStore, ref: str, *, out_dir: str | Path | None = None,
                  data_root: str | None = None, force: bool = False) -> ConfusionResult:
    """Evaluate run ``ref`` on its test split; write ``confusion.png`` (counts and normalised)."""
    out = _output(out_dir, force)
    run = load_run(store, ref)
    files: list[Written] = []
    with _writing(store, run, out, files) as folder:
        result = _confusion(run, load_test_split(run, data_root), folder)
        files += result.files
    result.files = files
    _register(store, run, result.files)
    return result


def _confusion(run: LoadedRun, split: Split, folder: Path) -> ConfusionResult:
    predictions = run.probabilities(split.images).argmax(dim=1)
    matrix = confusion_matrix(split.labels, predictions, len(run.classes))
    scores = class_scores(matrix)
    title = (f"run {run.record.id} ({run.record.model} on {run.dataset}) · {len(split):,} test "
             f"images · accuracy {100 * scores.accuracy:.2f}%")
    path = save_figure(confusion_figure(matrix, run.classes, title), folder / "confusion.png")
    return ConfusionResult(run.classes, matrix, scores,
                           [Written("confusion matrix", path, "inspect-confusion")])


def parse_grid(text: str) -> tuple[int, int]:
    """``"10x10"`` → (10, 10); anything else is a ConfigError."""
    match = _GRID.match(text)
    if not match or not all(0 < int(g) <= 50 for g in match.groups()):
        raise ConfigError(Problem("grid", text, "must be ROWSxCOLS with 1–50 each, e.g. 5x5 or 10x10"))
    return int(match.group(1)), int(match.group(2))


@dataclass
class SamplesResult:
    """How many images the grid shows, out of how many test images, and the figure (if any)."""

    shown: int
    total: int
    mistakes: int = 0  # test images the run gets wrong
    files: list[Written] = field(default_factory=list)


def samples_run(store: RunStore, ref: str, *, grid: str = "5x5", errors: bool = False,
                out_dir: str | Path | None = None, data_root: str | None = None,
                force: bool = False) -> SamplesResult:
    """The first test images with their true and predicted classes (``samples.png``), or with
    ``errors`` the most confident mistakes with their probabilities (``mistakes.png``)."""
    rows, cols = parse_grid(grid)
    refuse_other_image(out_dir, FIGURE_SUFFIXES)
    out = _output(out_dir, force) if _is_folder(out_dir) else None
    run = load_run(store, ref)
    split = load_test_split(run, data_root)
    probabilities = run.probabilities(split.images)
    confidence, predictions = probabilities.max(dim=1)
    if errors:
        chosen = confident_mistakes(probabilities, split.labels, rows * cols)
        stem, what = "mistakes", "most confident mistakes"
    else:
        chosen = torch.arange(min(rows * cols, len(split)))
        stem, what = "samples", "first test images"
    result = SamplesResult(len(chosen), len(split), int((predictions != split.labels).sum()))
    if not len(chosen):
        return result
    names = run.classes
    captions, wrong = [], []
    for i in chosen.tolist():
        true, pred = names[int(split.labels[i])], names[int(predictions[i])]
        wrong.append(true != pred)
        if errors:
            captions.append(f"true {true}\npred {pred} {confidence[i]:.2f}")
        else:
            captions.append(true if true == pred else f"{true} → {pred}")
    counted = (f"{len(chosen)} of {result.mistakes:,} mistakes on {len(split):,} test images" if errors
               else f"{len(chosen)} of {len(split):,} test images")
    title = (f"run {run.record.id} · {what} ({counted})"
             + ("" if errors else "\ncaption: true class, → prediction when wrong"))
    fig = image_grid_figure(split.images[chosen], captions, rows, cols, title, wrong)
    if out is None:  # the run's folder, or one image file named with -o
        path = save_figure(fig, _figure_path(store, run, out_dir, f"{stem}.png"))
        result.files.append(Written(what, path, f"inspect-{stem}"))
    else:
        with _writing(store, run, out, result.files) as folder:
            result.files.append(Written(what, save_figure(fig, folder / f"{stem}.png"), f"inspect-{stem}"))
    _register(store, run, result.files)
    return result


def report_figures(store: RunStore, run_id: str, out_dir: str | Path | None = None, *,
                   index: int = 0, register: bool = True) -> list[tuple[str, Path]]:
    """(title, path) of the figures a report shows for one run: every conv layer's filters, then,
    when its test data loads, each conv layer's feature maps and the attributions for test image
    ``index``, and the confusion matrix. Written into ``out_dir`` (default: the run's inspect
    folder) and registered as the run's artifacts unless ``register`` is False (a temporary
    folder)."""
    run = load_run(store, run_id)
    folder = _folder(store, run, out_dir)
    files = filter_figures(run.model, torch.zeros(1, *run.input_shape), folder)
    try:
        split = load_test_split(run)
    except DataError:
        split = None  # the data moved or is offline: the filters need none
    if split is not None:
        pixels, true_class = _test_image(split, index)
        x = run.normalize(pixels[None])
        files += feature_map_figures(run.model, x, folder, only_conv=True)
        files += attribution_figures(run.model, x, folder, image=pixels, classes=run.classes,
                                     title=f"test image {index} · true {run.classes[true_class]}")
        files += _confusion(run, split, folder).files
    if register:
        _register(store, run, files)
    return [(w.title, w.path) for w in files]
