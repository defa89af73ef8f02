"""Report building blocks (figures, sections) and the hook where other stages add sections."""

from __future__ import annotations

import base64
import math
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.analyze.study import Study
from cnnlab.store import RunStore
from cnnlab.store.schema import TRAINED


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
class Table:
    """Headers and rows of strings; ``row_classes`` style rows (best, tied, problem)."""

    headers: list[str]
    rows: list[list[str]]
    row_classes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Section:
    """A titled report section: paragraphs of text, tables and figures."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    figures: list[ReportFigure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)


SectionProvider = Callable[[Study, RunStore], list[Section]]


def best_model_sections(study: Study, store: RunStore) -> list[Section]:
    """The best run's trained model from the inside: its filters, feature maps, attributions and
    confusion matrix (drawn by `cnnlab.inspect`), when its checkpoint is in the store."""
    run = study.best_run
    if run is None or not store.checkpoint_path(run.id).is_file():
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


def domain_sections(study: Study, store: RunStore) -> list[Section]:
    """Accuracy per evaluation domain (runs on mixtures, ``data.eval``): each configuration's mean
    over seeds of the last epoch's per-domain test accuracy (validation where no test was run)."""
    from cnnlab.analyze.stats import summarize
    from cnnlab.store.domains import domain_names
    from cnnlab.viz import png_bytes
    from cnnlab.viz.domains import domain_figure

    domains: list[str] = []
    for run in study.runs:
        domains += [d for d in domain_names(run.epochs) if d not in domains]
    if not domains:
        return []
    split = "test" if any(f"test/{domains[0]}_acc" in e for r in study.runs for e in r.epochs) else "val"
    labels, means, stds, rows = [], [], [], []
    for cell in study.cells:
        finished = [r for r in cell.runs if r.status in TRAINED and r.epochs]
        if not finished:
            continue
        cell_means, cell_stds, row = [], [], [cell.label or "all runs"]
        for domain in domains:
            found = summarize([v for r in finished
                               if (v := r.epochs[-1].get(f"{split}/{domain}_acc")) is not None])
            cell_means.append(found.mean)
            cell_stds.append(found.std)
            row.append("–" if not found.n else f"{100 * found.mean:.2f}%"
                       + (f" ± {100 * found.std:.2f}" if found.n > 1 else "") + f" (n={found.n})")
        labels.append(cell.label or "all runs")
        means.append(cell_means)
        stds.append(cell_stds)
        rows.append(row)
    if not rows:
        return []
    text = (f"Each evaluation domain scored on its own: the mean {split} accuracy of the last epoch over "
            "a configuration's finished seeds (± sample standard deviation), so it shows what each "
            "training mix buys on each kind of image.")
    best = [f"{domain}: {labels[i]} ({100 * means[i][j]:.2f}%)" for j, domain in enumerate(domains)
            if (i := _argmax([m[j] for m in means])) is not None]
    paragraphs = [text] + (["Best per domain: " + "; ".join(best) + "."] if len(labels) > 1 else [])
    figure = ReportFigure("domains", "Accuracy per domain", text,
                          png_bytes(domain_figure(labels, domains, means, stds, f"{split} accuracy")))
    table = Table(["configuration", *domains], rows)
    return [Section("Accuracy per domain", paragraphs, [figure], [table])]


def _argmax(values: list[float]) -> int | None:
    finite = [(v, i) for i, v in enumerate(values) if math.isfinite(v)]
    return max(finite)[1] if finite else None


def one_factor_sections(study: Study, store: RunStore) -> list[Section]:
    """A one-factor-at-a-time study: one table per factor, its levels with the base cell among them."""
    from cnnlab.analyze.design import ONE_FACTOR

    design = study.design
    if design is None or design.kind != ONE_FACTOR or design.base is None:
        return []
    metric = study.metric
    tables = []
    for arm in design.arms:
        rows, classes = [], []
        for cell in arm.cells:
            values = [metric.of(run) for run in cell.runs if run in design.scored]
            mean = sum(values) / len(values) if values else math.nan
            rows.append([
                arm.factor.label(arm.factor.level_of(cell.runs[0]))
                + (" (base cell)" if cell is design.base else ""),
                str(len(cell.runs)),
                metric.format(mean),
                ", ".join(sorted({run.status for run in cell.runs})),
            ])
            classes.append("best" if cell is design.base else "")
        tables.append(Table([arm.factor.name, "runs", f"mean {metric.name}", "statuses"], rows, classes))
    base = ", ".join(f"{f.name}={f.label(f.level_of(design.base.runs[0]))}" for f in design.factors)
    text = (f"One factor at a time around the base cell ({base}): each table is one factor's grid, the "
            "base cell listed in every one, since each level is compared with it.")
    return [Section("One factor at a time", [text], [], tables)]


# Called in order for every report; each returns sections to add (possibly none).
SECTION_PROVIDERS: list[SectionProvider] = [one_factor_sections, domain_sections, best_model_sections]


def extra_sections(study: Study, store: RunStore) -> list[Section]:
    """The sections all providers add for this study."""
    return [section for provider in SECTION_PROVIDERS for section in provider(study, store)]
