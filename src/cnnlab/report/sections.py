"""Report building blocks (figures, sections) and the hook where other stages add sections."""

from __future__ import annotations

import base64
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.analyze.study import Study
from cnnlab.store import RunStore


@dataclass(frozen=True)
class ReportFigure:
    """One figure as PNG bytes, with a title and a caption."""

    slug: str
    title: str
    caption: str
    png: bytes

    @property
    def filename(self) -> str:
        """The PNG's file name beside report.md (letters, digits and dashes only)."""
        return "fig-" + re.sub(r"[^a-z0-9]+", "-", self.slug.lower()).strip("-") + ".png"

    @property
    def data_uri(self) -> str:
        """The PNG inlined as a ``data:`` URI for the self-contained HTML."""
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass(frozen=True)
class Section:
    """A titled report section: paragraphs of text and figures."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    figures: list[ReportFigure] = field(default_factory=list)


SectionProvider = Callable[[Study, RunStore], list[Section]]


def best_model_sections(study: Study, store: RunStore) -> list[Section]:
    """The best run's trained model from the inside: its filters, feature maps, attributions and
    confusion matrix (drawn by `cnnlab.inspect`), when its checkpoint is in the store."""
    run = study.best_run
    from cnnlab.train.run import CHECKPOINT

    if run is None or not (store.run_dir(run.id) / CHECKPOINT).is_file():
        return []
    from cnnlab.errors import CnnlabError
    from cnnlab.inspect import report_figures

    with tempfile.TemporaryDirectory() as tmp:
        try:
            drawn = report_figures(store, run.id, tmp, register=False)
        except CnnlabError as exc:
            return [Section(f"Inside the best model, {run.label}",
                            [f"Its figures could not be drawn: {exc}"])]
        figures = [ReportFigure(f"inspect-{i}-{Path(path).stem}", title, title, Path(path).read_bytes())
                   for i, (title, path) in enumerate(drawn)]
    text = (f"The best run of the best configuration, {run.label}, seen from the inside: each "
            "convolution layer's filters, its feature maps for one test image, where the network "
            "looks (Grad-CAM and saliency) and the confusion matrix on the test split.")
    return [Section(f"Inside the best model, {run.label}", [text], figures)]


# Called in order for every report; each returns sections to add (possibly none).
SECTION_PROVIDERS: list[SectionProvider] = [best_model_sections]


def extra_sections(study: Study, store: RunStore) -> list[Section]:
    """The sections all providers add for this study."""
    return [section for provider in SECTION_PROVIDERS for section in provider(study, store)]
