"""Rich renderings of sweeps: the per-cell status table, the sweeps list and the live view."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator

from rich import box
from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cnnlab.store.liveness import GONE
from cnnlab.sweep.status import CellStatus, SweepStatus, sweep_status
from cnnlab.sweep.storage import Location
from cnnlab.terminal.format import format_metric

STATE_STYLES = {
    "done": "green",
    "running": "cyan",
    "pending": "dim",
    "interrupted": "yellow",
    GONE: "yellow",
    "failed": "bold red",
    "pruned": "magenta",
    "diverged": "magenta",
}
REFRESH_S = 2.0


def summary_line(status: SweepStatus) -> Text:
    """``sweep NAME: 12 runs — 8 done, 2 running, …; best: CELL val_acc 98.10% ± 0.20``."""
    counts = status.counts()
    parts = [Text(f"{n} {state}", style=STATE_STYLES[state]) for state, n in counts.items() if n]
    text = Text.assemble(("sweep ", "bold"), (status.name, "bold"), f": {status.total} runs — ")
    text.append_text(Text(", ").join(parts) if parts else Text("none queued"))
    best = status.best()
    if best is not None:
        text.append("; best: ")
        text.append(best.label, style="bold")
        text.append(f" {status.metric_label} ")
        text.append_text(_mean(status.metric, best.mean, best.std))
    return text


def status_table(status: SweepStatus, wide: bool = False) -> Table:
    """One row per cell: its runs by state (states no cell has are left out), running epochs, and
    the metric over finished seeds; with ``wide`` also the run ids. A cell's settings take a line each."""
    best = status.best()
    rows: list[dict[str, Text]] = []
    for cell, shown_label in _cells_in_order(status):
        if cell is None:  # a grid's title
            rows.append({"cell": Text(shown_label, style="italic")})
            continue
        running = [r for r in cell.runs if r.state == "running"]
        running_text = str(len(running)) if running else ""
        if running:
            running_text += " (" + ", ".join(f"ep {r.epochs_done}/{r.epochs_planned or '?'}"
                                             for r in running) + ")"
        rows.append({
            "cell": Text(cell_lines(shown_label), style="bold" if cell is best else ""),
            "runs": Text(str(len(cell.runs))),
            "done": Text(_count(cell.count("done"))),
            "running": Text(running_text),
            "pending": Text(_count(cell.count("pending") + cell.count("interrupted") + cell.count(GONE))),
            "failed": Text(_count(cell.count("failed"))),
            "pruned": Text(_count(cell.count("pruned"))),
            "diverged": Text(_count(cell.count("diverged"))),
            "metric": _mean(status.metric, cell.mean, cell.std),
            **{f"acc {d}": format_metric("acc", cell.domain_means().get(d)) for d in _domains(status)},
            "run ids": Text(" ".join(r.run_id for r in cell.runs if r.run_id)),
        })
    if status.unsampled:
        rows.append({"cell": Text("(not sampled yet)", style="dim"), "runs": Text(str(status.unsampled)),
                     "pending": Text(str(status.unsampled))})
    headers = {"metric": f"{status.metric_label}\nmean ± sd"}
    keys = ["cell", "runs", "done", "running", "pending", "failed", "pruned", "diverged", "metric",
            *(f"acc {d}" for d in _domains(status)), *(["run ids"] if wide else [])]
    multiline = any("\n" in row["cell"].plain for row in rows)
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", title=summary_line(status),
                  title_justify="left", show_edge=False, padding=(0, 1, 0, 0), leading=int(multiline))
    shown = [key for key in keys if key in ("cell", "runs", "metric")
             or any(row.get(key, Text("")).plain for row in rows)]
    for key in shown:
        if key == "cell":
            table.add_column(key, overflow="fold")
        elif key == "run ids":
            table.add_column(key, overflow="fold", style="dim")
        else:
            table.add_column(headers.get(key, key), justify="right", no_wrap=True,
                             style=STATE_STYLES.get(key, ""),
                             min_width=max((_width(row.get(key, Text(""))) for row in rows), default=0))
    for row in rows:
        table.add_row(*(row.get(key, Text("")) for key in shown))
    if not status.cells and not status.unsampled:
        table.caption = "no cells queued"
    return table


def _cells_in_order(status: SweepStatus) -> list[tuple[CellStatus | None, str]]:
    """The cells with the label to show: one after another, or grouped under each of several
    ``[[grid]]`` tables (a grid's title row, then its cells), a cell shared by grids listed under each
    and marked ``(base cell)`` when every grid shares it."""
    if not status.grids:
        return [(cell, cell.label) for cell in status.cells]
    by_hash = {cell.cell_hash: cell for cell in status.cells}
    shared = status.shared_cells()
    everywhere = {h for h in shared if all(h in {m for _, m in members} for _, members in status.grids)}
    out: list[tuple[CellStatus | None, str]] = []
    listed: set[str] = set()
    for title, members in status.grids:
        out.append((None, f"{title}:"))
        for shown, cell_hash in members:
            if cell_hash in by_hash:
                out.append((by_hash[cell_hash], shown + (" (base cell)" if cell_hash in everywhere else "")))
                listed.add(cell_hash)
    out += [(cell, cell.label) for cell in status.cells if cell.cell_hash not in listed]  # left the file
    return out


def cell_lines(label: str) -> str:
    """A cell label with one setting per line, so a narrow table never breaks a setting."""
    return _SETTING_BREAK.sub("\n", label)


_SETTING_BREAK = re.compile(r", (?=[\w.]+=)")


def _domains(status: SweepStatus) -> list[str]:
    domains: list[str] = []
    for cell in status.cells:
        domains += [d for d in cell.domain_means() if d not in domains]
    return domains


def failures(status: SweepStatus) -> list[str]:
    """One line per failed run: cell, seed, trial and the last line of its error."""
    return [f"{cell.label} seed {run.seed} (trial {run.trial}"
            + (f", run {run.run_id}" if run.run_id else "") + f"): {run.error or 'failed'}"
            for cell in status.cells for run in cell.runs if run.state == "failed"]


def sweep_detail(status: SweepStatus, wide: bool = False) -> list[RenderableType]:
    """The status table (``wide``: with run ids) followed by the failed runs' errors."""
    out: list[RenderableType] = [status_table(status, wide)]
    lines = failures(status)
    if lines:
        out.append(Text("failed runs:", style="bold red"))
        out += [Text(line, style="red") for line in lines]
    return out


def sweeps_table(statuses: list[SweepStatus]) -> Table:
    """One row per sweep: mode, cells, runs by state (states no sweep has are left out) and the
    best cell, one setting per line."""
    rows: list[dict[str, Text]] = []
    for status in statuses:
        counts = status.counts()
        best = status.best()
        rows.append({
            "sweep": Text(status.name, style="bold"),
            "mode": Text(status.mode),
            "cells": Text(str(len(status.cells))),
            "runs": Text(str(status.total)),
            "done": Text(_count(counts["done"] + counts["diverged"])),
            "running": Text(_count(counts["running"])
                            + (f" ({counts[GONE]} {GONE})" if counts[GONE] else "")),
            "pending": Text(_count(counts["pending"] + counts["interrupted"])),
            "failed": Text(_count(counts["failed"])),
            "best cell": Text(cell_lines(best.label)) if best else Text(""),
            "metric": Text.assemble(f"{status.metric_label}\n", _mean(status.metric, best.mean, best.std))
            if best else Text(""),
        })
    keys = ["sweep", "mode", "cells", "runs", "done", "running", "pending", "failed", "best cell", "metric"]
    shown = [key for key in keys if key in ("sweep", "mode", "cells", "runs")
             or any(row[key].plain for row in rows)]
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", show_edge=False, padding=(0, 1, 0, 0))
    for key in shown:
        if key in ("sweep", "best cell"):
            table.add_column(key, overflow="fold")
        else:
            table.add_column(key, justify="right" if key != "mode" else "left", no_wrap=True,
                             style=STATE_STYLES.get(key, ""),
                             min_width=max((_width(row[key]) for row in rows), default=0))
    for row in rows:
        table.add_row(*(row[key] for key in shown))
    return table


@contextlib.contextmanager
def live_status(location: Location, name: str, console: Console, enabled: bool = True) -> Iterator[None]:
    """Show the sweep's status table, refreshed from the database, while the body runs; when the
    output is not a terminal (a log file, nohup, CI), one line per finished epoch or run instead."""
    if not enabled:
        yield
        return
    if not console.is_terminal:
        with progress_lines(location, name, console, every_s=REFRESH_S):
            yield
        return
    last: list[RenderableType] = [Text(f"sweep {name}: starting workers…")]
    polled = [0.0]

    def render() -> RenderableType:
        if time.monotonic() - polled[0] >= REFRESH_S:
            polled[0] = time.monotonic()
            with contextlib.suppress(Exception):  # a busy database: show the last table again
                last[0] = status_table(sweep_status(location, name))
        return last[0]

    with Live(console=console, get_renderable=render, refresh_per_second=1, transient=True):
        yield


# A sweep run's states (`cnnlab.sweep.status`) that end it: not store.schema.FINISHED (run statuses).
SWEEP_ENDED = ("done", "failed", "pruned", "diverged")


def progress_lines(location: Location, name: str, console: Console, every_s: float = REFRESH_S,
                   ) -> contextlib.AbstractContextManager[None]:
    """While the body runs, write a line (flushed) for each epoch a run of the sweep finishes and for
    each run that ends, read from the database every ``every_s`` seconds and once more at the end."""
    seen: dict[str, tuple[str, int]] = {}

    def lines(status: SweepStatus) -> list[str]:
        out = []
        finished = sum(run.state in SWEEP_ENDED for cell in status.cells for run in cell.runs)
        for cell in status.cells:
            for run in cell.runs:
                if run.run_id is None:
                    continue
                before = seen.get(run.run_id, ("pending", 0))
                seen[run.run_id] = (run.state, run.epochs_done)
                where = f"sweep {name}: run {run.run_id} ({cell.label}, seed {run.seed})"
                planned = f"/{run.epochs_planned}" if run.epochs_planned else ""
                if run.state == "running" and run.epochs_done > before[1]:
                    out.append(f"{where} epoch {run.epochs_done}{planned}")
                elif run.state in SWEEP_ENDED and before[0] != run.state:
                    value = "" if run.value is None else f", {status.metric_label} " + \
                        format_metric(status.metric, run.value).plain
                    out.append(f"{where} {run.state} after {run.epochs_done}{planned} epochs{value}; "
                               f"{finished} of {status.total} runs finished")
                elif run.state not in ("running", "pending", *SWEEP_ENDED) and before[0] != run.state:
                    out.append(f"{where} {run.state} after {run.epochs_done}{planned} epochs")
        return out

    def report() -> None:
        with contextlib.suppress(Exception):  # a busy database: the next poll catches up
            for line in lines(sweep_status(location, name)):
                console.print(line, markup=False, highlight=False, soft_wrap=True)
            console.file.flush()

    @contextlib.contextmanager
    def polling() -> Iterator[None]:
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(every_s):
                report()

        thread = threading.Thread(target=loop, name="cnnlab-sweep-progress", daemon=True)
        with contextlib.suppress(Exception):
            for cell in sweep_status(location, name).cells:  # what was finished before this command
                seen.update({r.run_id: (r.state, r.epochs_done) for r in cell.runs if r.run_id})
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            report()

    return polling()


def _width(text: Text) -> int:
    """The widest line of ``text``."""
    return max(cell_len(line) for line in text.plain.split("\n"))


def _count(n: int) -> str:
    return str(n) if n else ""


def _mean(metric: str, mean: float | None, std: float | None) -> Text:
    if mean is None:
        return Text("–", style="dim")
    text = format_metric(metric, mean)
    if std is not None:
        spread = format_metric(metric, std).plain.rstrip("%")
        text.append(f" ± {spread}")
    return text
