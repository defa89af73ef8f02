"""Report rendering: Jinja2 templates to one self-contained HTML file and to Markdown beside its PNGs,
written atomically."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from cnnlab.files import OutputFolder, write_atomic
from cnnlab.report.content import Report

HTML_FILE = "index.html"
MARKDOWN_FILE = "report.md"
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#~]|<(?=[A-Za-z/!?])|&(?=#?\w+;))")


@dataclass(frozen=True)
class ReportFiles:
    """Where a report was written."""

    folder: Path
    html: Path
    markdown: Path
    pngs: list[Path]


def md_escape(value: Any) -> str:
    """Text for Markdown that renders as itself and reads as plain text: Markdown syntax, ``<`` where it
    could open an HTML tag and ``&`` before an entity name backslash-escaped, line breaks as spaces (so a run
    name can neither inject HTML nor break a table); ``>`` and other text stay as they are."""
    text = "" if value is None else str(value)
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return " ".join(text.splitlines())


@cache
def _environment(markdown: bool) -> Environment:
    if markdown:
        # Every {{ }} in the Markdown template goes through md_escape.
        return Environment(
            loader=PackageLoader("cnnlab.report", "templates"),
            autoescape=False,
            undefined=StrictUndefined,
            finalize=md_escape,
            trim_blocks=True,
            lstrip_blocks=True,
        )
    return Environment(
        loader=PackageLoader("cnnlab.report", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(report: Report) -> str:
    """The report as one HTML page: CSS inline, figures as data URIs, every run-derived string escaped."""
    return _environment(False).get_template(HTML_FILE).render(r=report)


def render_markdown(report: Report) -> str:
    """The report as Markdown referring to the PNG files written beside it."""
    return _environment(True).get_template(MARKDOWN_FILE).render(r=report)


def write_report_files(report: Report, folder: str | Path | OutputFolder) -> ReportFiles:
    """Write index.html, report.md and the PNGs into ``folder`` through a temporary folder (see
    `cnnlab.files.OutputFolder`: a link, a file or a folder of other files is refused); PNGs of an
    earlier report there (``fig-*.png``) that this one does not draw are removed."""
    out = folder if isinstance(folder, OutputFolder) else OutputFolder(folder, "report")
    with out as staging:
        pngs = [write_atomic(staging / fig.filename, fig.png) for fig in report.all_figures]
        markdown = write_atomic(staging / MARKDOWN_FILE, render_markdown(report))
        html = write_atomic(staging / HTML_FILE, render_html(report))
    written = [out.final(png) for png in pngs]
    for stale in set(out.path.glob("fig-*.png")) - set(written):
        stale.unlink(missing_ok=True)
    return ReportFiles(out.path, out.final(html), out.final(markdown), written)
