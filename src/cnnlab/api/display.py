"""Notebook display: escaped HTML tables, inline PNGs, and progress that does not flood a cell."""

from __future__ import annotations

import base64
import contextlib
import html
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from cnnlab._notebook import in_notebook
from cnnlab.ticker import Ticker

# How often a sweep's progress line is read again from its study.
SWEEP_POLL_S = 2.0


def console() -> Console:
    """The console training prints to: plain text lines in a notebook, Rich in a terminal (text
    with control characters escaped, see `cnnlab.terminal.printable`)."""
    from cnnlab.terminal import printable

    printable.install()
    if in_notebook():
        return Console(force_jupyter=False, force_terminal=False, width=120)
    return Console()


def table_html(headers: Sequence[str], rows: Sequence[Sequence[Any]], caption: str | None = None,
               bold_row: int | None = None) -> str:
    """An HTML table of escaped text; ``bold_row`` marks one row (e.g. the best configuration)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        style = ' style="font-weight:bold"' if i == bold_row else ""
        body.append(f"<tr{style}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
    title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{title}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def fields_html(title: str, fields: Sequence[tuple[str, Any]]) -> str:
    """A two-column table of (name, value) under a bold title, every text escaped."""
    rows = "".join(f"<tr><th style=\"text-align:left\">{html.escape(name)}</th>"
                   f"<td style=\"text-align:left\">{html.escape(str(value))}</td></tr>"
                   for name, value in fields)
    return f"<div><strong>{html.escape(title)}</strong><table>{rows}</table></div>"


def png_html(path: Path, title: str) -> str:
    """A PNG file inlined as an <img> under its escaped title."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure style=\"margin:0 0 1em 0\"><figcaption>{html.escape(title)}</figcaption>"
            f"<img src=\"data:image/png;base64,{data}\" alt=\"{html.escape(title, quote=True)}\"/></figure>")


@contextlib.contextmanager
def polled_line(read: Callable[[], str], enabled: bool = True) -> Iterator[None]:
    """While the body runs, show ``read()`` as one line that a notebook updates in place (re-read
    every SWEEP_POLL_S in a background thread); the last reading stays when the body ends."""
    if not enabled:
        yield
        return
    from IPython.display import HTML, display

    def render() -> HTML:
        try:
            text = read()
        except Exception as exc:  # a busy database or a study not queued yet: say so, keep polling
            text = f"({type(exc).__name__}: {exc})"
        return HTML(f"<pre style=\"margin:0\">{html.escape(text)}</pre>")

    handle = display(render(), display_id=True)
    with Ticker(lambda: handle.update(render()), SWEEP_POLL_S, name="cnnlab-progress", last=True):
        yield
