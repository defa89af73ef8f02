"""Rich renderings of stored runs for the CLI: the runs table and one run's detail."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from cnnlab.store.liveness import GONE
from cnnlab.store.runs import RunRecord
from cnnlab.store.schema import EPOCH_METRICS

STATUS_STYLES = {
    "created": "dim",
    "running": "cyan",
    "completed": "green",
    "stopped_early": "green",
    "interrupted": "yellow",
    GONE: "yellow",
    "diverged": "magenta",
    "failed": "bold red",
}

_EPOCH_HEADERS = {
    "train_loss": "train loss",
    "train_acc": "train acc",
    "val_loss": "val loss",
    "val_acc": "val acc",
    "test_loss": "test loss",
    "test_acc": "test acc",
    "lr": "lr",
    "seconds": "s",
    "images_per_s": "img/s",
}


def runs_table(records: Sequence[RunRecord]) -> Table:
    """One row per run: id, name, status, model, dataset, epochs, accuracies, duration, created."""
    table = Table(box=box.SIMPLE_HEAD, header_style="bold")
    table.add_column("id", no_wrap=True, style="bold")
    table.add_column("name", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("model")
    table.add_column("dataset")
    table.add_column("epochs", justify="right")
    table.add_column("best val acc", justify="right")
    table.add_column("final val acc", justify="right")
    table.add_column("test acc", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("created", no_wrap=True)
    for run in records:
        planned = run.planned_epochs
        table.add_row(
            run.id,
            run.name or "",
            status_text(run.shown_status),
            run.model,
            run.dataset,
            f"{run.epochs_done}/{planned}" if planned else str(run.epochs_done),
            format_metric("val_acc", run.best_val_acc),
            format_metric("val_acc", run.final_val_acc),
            format_metric("test_acc", run.final_test_acc),
            format_duration(run.duration_s),
            format_time(run.created_at),
        )
    if not records:
        table.caption = "no runs stored"
    return table


def run_detail(record: RunRecord, epochs: Sequence[dict[str, Any]]) -> list[RenderableType]:
    """A run's summary, its resolved config, its per-domain table (mixtures) and its per-epoch table."""
    parts: list[RenderableType] = [_summary(record), _config(record.config)]
    if domain_names(epochs):
        parts.append(domains_table(epochs, record.best_epoch))
    return [*parts, epochs_table(epochs, record.best_epoch)]


def domain_names(epochs: Sequence[dict[str, Any]]) -> list[str]:
    """Evaluation domains with per-domain metrics (``val/<domain>_acc``), in stored order."""
    names: list[str] = []
    for row in epochs:
        for key in row:
            if key.startswith(("val/", "test/")) and key.endswith("_acc"):
                name = key.split("/", 1)[1][: -len("_acc")]
                if name not in names:
                    names.append(name)
    return names


def domain_summary(epochs: Sequence[dict[str, Any]], best_epoch: int | None) -> list[dict[str, Any]]:
    """Per domain: the last measured val and test accuracy, and both at the best epoch (by overall
    val acc)."""
    def last(key: str) -> float | None:
        return next((row[key] for row in reversed(epochs) if row.get(key) is not None), None)

    best = next((row for row in epochs if row["epoch"] == best_epoch), {})
    return [{"domain": name,
             "final_val_acc": last(f"val/{name}_acc"), "best_val_acc": best.get(f"val/{name}_acc"),
             "final_test_acc": last(f"test/{name}_acc"), "best_test_acc": best.get(f"test/{name}_acc")}
            for name in domain_names(epochs)]


def domains_table(epochs: Sequence[dict[str, Any]], best_epoch: int | None = None) -> Table:
    """Accuracy per evaluation domain: last epoch and the best epoch (by overall val accuracy)."""
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", title="accuracy per domain")
    table.add_column("domain")
    at = f" (epoch {best_epoch})" if best_epoch is not None else ""
    for header in ("final val", "final test", f"val at best{at}", f"test at best{at}"):
        table.add_column(header, justify="right")
    for row in domain_summary(epochs, best_epoch):
        table.add_row(row["domain"], *(format_metric("acc", row[key]) for key in
                                       ("final_val_acc", "final_test_acc", "best_val_acc", "best_test_acc")))
    return table


def epochs_table(epochs: Sequence[dict[str, Any]], best_epoch: int | None = None) -> Table:
    """Per-epoch metrics; columns that are empty in every epoch are left out, extras at the end."""
    columns: list[str] = []
    for row in epochs:
        columns += [key for key in row if key != "epoch" and key not in columns]
    standard = [key for key in EPOCH_METRICS if key in columns]
    # Per-domain losses stay in `cnnlab export`; the table shows per-domain validation accuracy.
    extra = [key for key in columns if key not in EPOCH_METRICS
             and not (key.startswith(("val/", "test/")) and key.endswith("_loss"))
             and not key.startswith("test/")]
    shown = [key for key in standard + extra if any(row.get(key) is not None for row in epochs)]
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", title="epochs")
    table.add_column("epoch", justify="right")
    for key in shown:
        table.add_column(_EPOCH_HEADERS.get(key, key.replace("/", " ").removesuffix("_acc")), justify="right")
    for row in epochs:
        style = "bold green" if best_epoch is not None and row["epoch"] == best_epoch else None
        cells = [format_metric(key, row.get(key)) for key in shown]
        table.add_row(str(row["epoch"]), *cells, style=style)
    if not epochs:
        table.caption = "no epochs stored"
    return table


def status_text(status: str) -> Text:
    """The status word in its colour."""
    return Text(status, style=STATUS_STYLES.get(status, ""))


def format_metric(key: str, value: float | None) -> Text:
    """A metric for display: accuracies as percent, NaN/inf in red, missing as a dim dash."""
    if value is None:
        return Text("–", style="dim")
    if math.isnan(value):
        return Text("NaN", style="bold red")
    if math.isinf(value):
        return Text("inf" if value > 0 else "-inf", style="bold red")
    if key.endswith("acc"):
        return Text(f"{100 * value:.2f}%")
    if key.endswith("loss"):
        return Text(f"{value:.4f}")
    if key == "lr":
        return Text(f"{value:.3g}")
    if key == "seconds":
        return Text(f"{value:.1f}")
    if key == "images_per_s":
        return Text(f"{value:,.0f}")
    return Text(f"{value:.4g}")


def format_duration(seconds: float | None) -> str:
    """``12.3s``, ``4m 05s`` or ``1h 02m``; empty when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_time(moment: datetime | None) -> str:
    """A UTC timestamp in local time, to the minute."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M") if moment else ""


def _summary(run: RunRecord) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    status = status_text(run.shown_status)
    grid.add_row("run", Text.assemble((run.id, "bold"), "  ", run.name or "", "  ", status))
    grid.add_row("model", f"{run.model} on {run.dataset}, seed {run.seed}")
    planned = f" of {run.planned_epochs}" if run.planned_epochs else ""
    grid.add_row("epochs", f"{run.epochs_done}{planned}")
    if run.best_val_acc is not None:
        best = format_metric("val_acc", run.best_val_acc)
        at = f" (epoch {run.best_epoch})" if run.best_epoch is not None else ""
        grid.add_row("best val acc", Text.assemble(best, at))
    for label, key, value in (
        ("final val acc", "val_acc", run.final_val_acc),
        ("final test acc", "test_acc", run.final_test_acc),
        ("final val loss", "val_loss", run.final_val_loss),
    ):
        if value is not None:
            grid.add_row(label, format_metric(key, value))
    grid.add_row("created", format_time(run.created_at))
    if run.finished_at:
        grid.add_row("finished", format_time(run.finished_at))
    if run.duration_s is not None:
        grid.add_row("duration", format_duration(run.duration_s))
    grid.add_row("config hash", f"{run.config_hash} (cell {run.cell_hash})")
    for label, value in (
        ("parameters", f"{run.n_params:,}" if run.n_params is not None else None),
        ("precision", run.precision),
        ("device", run.device),
        ("sweep", f"{run.sweep}, trial {run.trial}" if run.sweep else None),
    ):
        if value:
            grid.add_row(label, value)
    grid.add_row("host", run.host)
    grid.add_row("versions", ", ".join(f"{k} {v}" for k, v in run.versions.items()))
    if run.error:
        grid.add_row("error", Text(run.error, style="red"))
    return grid


def _config(config: dict[str, Any]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.title = "config"
    grid.add_column(style="cyan")
    grid.add_column(overflow="fold")
    for key, value in _flatten(config):
        grid.add_row(key, json.dumps(value) if not isinstance(value, str) else value)
    return grid


def _flatten(config: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in config.items():
        if isinstance(value, dict) and value:
            items += _flatten(value, f"{prefix}{key}.")
        elif value is not None:
            items.append((f"{prefix}{key}", value))
    return items
