"""Reports on stored runs: one self-contained HTML page and a Markdown version with PNG figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cnnlab.files import OutputFolder
from cnnlab.report.content import Report, Table, build_report
from cnnlab.report.render import ReportFiles, md_escape, render_html, render_markdown, write_report_files
from cnnlab.report.sections import SECTION_PROVIDERS, ReportFigure, Section, best_model_sections
from cnnlab.store import RunStore

__all__ = [
    "SECTION_PROVIDERS",
    "Report",
    "ReportFigure",
    "ReportFiles",
    "Section",
    "Table",
    "best_model_sections",
    "build_report",
    "md_escape",
    "render_html",
    "render_markdown",
    "write_report",
    "write_report_files",
]


def write_report(
    store: RunStore,
    refs: Sequence[str],
    output: str | Path,
    metric: str | None = None,
    exclude: Sequence[str] = (),
    numeric: Sequence[str] = (),
    force: bool = False,
) -> ReportFiles:
    """Analyse the runs named by ``refs`` (sweeps or runs, minus ``exclude``) and write the report to
    the folder ``output``; ``numeric`` settings enter the factorial analysis as numbers, not levels.
    A link, a file, or a folder with files that are not an earlier cnnlab report is refused before
    anything is analysed (``force``: write into such a folder anyway)."""
    from cnnlab.analyze import analyze_stored

    out = OutputFolder(output, "report", force=force)
    study = analyze_stored(store, refs, metric=metric, exclude=exclude, numeric=numeric)
    return write_report_files(build_report(study, store), out)
