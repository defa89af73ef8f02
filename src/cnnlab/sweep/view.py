"""Rich renderings of sweeps: the per-cell status table, the sweeps list and the live view."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from rich import box
from rich.console import Console, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cnnlab.store.tables import format_metric
from cnnlab.sweep.status import SweepStatus, sweep_status
from cnnlab.sweep.storage import Location

STATE_STYLES = {
    "done": "green",
    "running": "cyan",
    "pending": "dim",
    "interrupted": "yellow",
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


def status_table(status: SweepStatus) -> Table:
    """One row per cell: its runs by state, running epochs, and the metric over finished seeds."""
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", title=summary_line(status),
                  title_justify="left")
    table.add_column("cell", overflow="fold")
    table.add_column("runs", justify="right")
    for state in ("done", "running", "pending", "failed", "pruned", "diverged"):
        table.add_column(state, justify="right", style=STATE_STYLES[state])
    table.add_column(f"{status.metric_label} (mean ± sd)", justify="right")
    domains: list[str] = []
    for cell in status.cells:
        domains += [d for d in cell.domain_means() if d not in domains]
    for domain in domains:
        table.add_column(f"acc {domain}", justify="right")
    table.add_column("run ids", overflow="fold", style="dim")
    best = status.best()
    for cell in status.cells:
        running = [r for r in cell.runs if r.state == "running"]
        running_text = str(len(running)) if running else ""
        if running:
            running_text += " (" + ", ".join(f"ep {r.epochs_done}/{r.epochs_planned or '?'}"
                                             for r in running) + ")"
        pending = cell.count("pending") + cell.count("interrupted")
        table.add_row(
            Text(cell.label, style="bold" if cell is best else ""),
            str(len(cell.runs)),
            _count(cell.count("done")),
            running_text,
            _count(pending),
            _count(cell.count("failed")),
            _count(cell.count("pruned")),
            _count(cell.count("diverged")),
            _mean(status.metric, cell.mean, cell.std),
            *(format_metric("acc", cell.domain_means().get(d)) for d in domains),
            " ".join(r.run_id for r in cell.runs if r.run_id),
        )
    if status.unsampled:
        table.add_row(Text("(not sampled yet)", style="dim"), str(status.unsampled), "", "",
                      str(status.unsampled), "", "", "", "", *([""] * len(domains)), "")
    if not status.cells and not status.unsampled:
        table.caption = "no cells queued"
    return table


def failures(status: SweepStatus) -> list[str]:
    """One line per failed run: cell, seed, trial and the last line of its error."""
    return [f"{cell.label} seed {run.seed} (trial {run.trial}"
            + (f", run {run.run_id}" if run.run_id else "") + f"): {run.error or 'failed'}"
            for cell in status.cells for run in cell.runs if run.state == "failed"]


def sweep_detail(status: SweepStatus) -> list[RenderableType]:
    """The status table followed by the failed runs' errors."""
    out: list[RenderableType] = [status_table(status)]
    lines = failures(status)
    if lines:
        out.append(Text("failed runs:", style="bold red"))
        out += [Text(line, style="red") for line in lines]
    return out


def sweeps_table(statuses: list[SweepStatus]) -> Table:
    """One row per sweep: mode, cells, runs by state and the best cell."""
    table = Table(box=box.SIMPLE_HEAD, header_style="bold")
    table.add_column("sweep", style="bold", overflow="fold")
    table.add_column("mode")
    table.add_column("cells", justify="right")
    table.add_column("runs", justify="right")
    for state in ("done", "running", "pending", "failed"):
        table.add_column(state, justify="right", style=STATE_STYLES[state])
    table.add_column("best cell", overflow="fold")
    table.add_column("metric", justify="right")
    for status in statuses:
        counts = status.counts()
        best = status.best()
        table.add_row(
            status.name, status.mode, str(len(status.cells)), str(status.total),
            _count(counts["done"] + counts["diverged"]), _count(counts["running"]),
            _count(counts["pending"] + counts["interrupted"]), _count(counts["failed"]),
            best.label if best else "",
            (Text.assemble(f"{status.metric_label} ", _mean(status.metric, best.mean, best.std))
             if best else ""),
        )
    if not statuses:
        table.caption = "no sweeps yet: start one with `cnnlab sweep FILE`"
    return table


@contextlib.contextmanager
def live_status(location: Location, name: str, console: Console, enabled: bool = True) -> Iterator[None]:
    """Show the sweep's status table, refreshed from the database, while the body runs."""
    if not enabled:
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
