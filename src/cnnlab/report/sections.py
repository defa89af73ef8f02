"""Report building blocks (figures, sections) and the hook where other stages add sections."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field

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
    """Sections about the best run's trained model; none yet.

    This is the hook for the inspection stage (filters, feature maps, class activation maps of
    ``study.best_run``, whose checkpoint is ``store.run_dir(run.id) / "checkpoint.pt"``): draw its
    figures here as ``ReportFigure``s and return them in ``Section``s. They appear in the report
    right after the best run's curves, in HTML and Markdown alike.
    """
    return []


# Called in order for every report; each returns sections to add (possibly none).
SECTION_PROVIDERS: list[SectionProvider] = [best_model_sections]


def extra_sections(study: Study, store: RunStore) -> list[Section]:
    """The sections all providers add for this study."""
    return [section for provider in SECTION_PROVIDERS for section in provider(study, store)]
