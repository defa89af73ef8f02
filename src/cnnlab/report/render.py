"""Report rendering: Jinja2 templates to one self-contained HTML file and to Markdown beside its PNGs,
written atomically."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from cnnlab.errors import ConfigError, Problem
from cnnlab.files import write_atomic
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


def write_report_files(report: Report, folder: str | Path) -> ReportFiles:
    """Write index.html, report.md and the PNGs into ``folder`` (created), each atomically; PNGs
    of an earlier report there (``fig-*.png``) that this one does not draw are removed."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(Problem("--output", str(folder), "is a file; give a folder for the report"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(Problem("--output", str(folder), f"cannot be created: {exc.strerror}")) from None
    try:
        pngs = [write_atomic(folder / fig.filename, fig.png) for fig in report.all_figures]
        markdown = write_atomic(folder / MARKDOWN_FILE, render_markdown(report))
        html = write_atomic(folder / HTML_FILE, render_html(report))
    except OSError as exc:
        raise ConfigError(Problem("--output", str(folder), f"cannot be written: {exc.strerror}")) from None
    for stale in set(folder.glob("fig-*.png")) - set(pngs):
        stale.unlink(missing_ok=True)
    return ReportFiles(folder, html, markdown, pngs)
