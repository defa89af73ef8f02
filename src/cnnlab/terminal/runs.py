"""Rich renderings of stored runs for the CLI: the runs table, one run's detail and runs compared."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from cnnlab.analyze.cells import format_value
from cnnlab.analyze.compare import Comparison
from cnnlab.data.labels import run_dataset
from cnnlab.store import Artifact, RunRecord
from cnnlab.store.best import restored_note
from cnnlab.store.domains import domain_names, domain_summary
from cnnlab.store.liveness import shown_status
from cnnlab.store.schema import EPOCH_METRICS
from cnnlab.terminal.format import (
    format_duration,
    format_metric,
    format_size,
    format_time,
    plain_table,
    shorten,
    status_text,
)

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


NAME_WIDTH = 22  # a run name longer than this is cut with "…" unless --wide
NAME_MIN_WIDTH = 12  # a name is cut down to this before the name column is dropped
# While the runs table is wider than the terminal: columns left out, in this order, with the
# names cut shorter (down to NAME_MIN_WIDTH) before the model is dropped.
_FIT_STEPS = ("created", "time", "final val", "tags", "name width", "model", "dataset", "name")
_NUMERIC = frozenset({"epochs", "best val", "final val", "test", "time"})


def runs_table(
    records: Sequence[RunRecord],
    tags: Mapping[str, Sequence[str]] | None = None,
    width: int | None = None,
    wide: bool = False,
) -> RenderableType:
    """One row per run: id, name, tags, status, model, dataset, epochs, accuracies, duration, created.

    Columns that are empty for every run are left out. Unless ``wide``, names are cut to
    ``NAME_WIDTH`` and, while the table is wider than ``width``, the least useful columns
    are dropped (created, time, final val, tags, model, ...); numbers are never cut or wrapped.
    ``wide`` shows every column and whole names; when that table is wider than ``width``, each run
    is a block instead (its id and whole name on a line, its other columns on the next, wrapped):
    an id or a name is never cut.
    """
    tags = tags or {}
    columns: dict[str, list[Text]] = {
        "id": [Text(run.id, style="bold") for run in records],
        "name": [Text(run.name or "") for run in records],
        "tags": [Text(" ".join(tags.get(run.id, ()))) for run in records],
        "status": [status_text(shown_status(run)) for run in records],
        "model": [Text(run.model) for run in records],
        "dataset": [Text(run_dataset(run.config)) for run in records],
        "epochs": [Text(f"{run.epochs_done}/{run.planned_epochs}" if run.planned_epochs
                        else str(run.epochs_done)) for run in records],
        "best val": [format_metric("val_acc", run.best_val_acc) for run in records],
        "final val": [format_metric("val_acc", run.final_val_acc) for run in records],
        "test": [format_metric("test_acc", run.final_test_acc) for run in records],
        "time": [Text(format_duration(run.duration_s)) for run in records],
        "created": [Text(format_time(run.created_at)) for run in records],
    }
    shown = [key for key, cells in columns.items()
             if key in ("id", "status") or any(cell.plain not in ("", "–") for cell in cells)]
    if wide:
        table = _table(columns, shown, None)
        if width is None or _measure(table) <= width:
            return table
        return _blocks(columns, shown)
    name_width = NAME_WIDTH
    table = _table(columns, shown, name_width)
    for step in _FIT_STEPS if width is not None else ():
        excess = _measure(table) - width
        if excess <= 0:
            break
        if step == "name width":
            longest = max(cell.cell_len for cell in columns["name"])
            name_width = max(NAME_MIN_WIDTH, min(longest, name_width) - excess)
        elif step in shown:
            shown.remove(step)
        table = _table(columns, shown, name_width)
    if width is not None and "name" in shown and name_width < NAME_WIDTH:  # give back what is free now
        name_width = min(NAME_WIDTH, name_width + max(width - _measure(table), 0))
        table = _table(columns, shown, name_width)
    if not records:
        table.caption = "no runs stored"
    return table


def _table(columns: Mapping[str, list[Text]], shown: Sequence[str], name_width: int | None) -> Table:
    """The runs table with these columns; names cut to ``name_width`` (None, for --wide: every text
    folded onto more lines where the terminal is narrow, never cut; ids and numbers whole)."""
    table = plain_table()
    for key in shown:
        if key in _NUMERIC or key == "id":
            table.add_column(key, justify="right" if key in _NUMERIC else "left", no_wrap=True,
                             min_width=max((cell.cell_len for cell in columns[key]), default=0))
        elif name_width is None:
            table.add_column(key, overflow="fold")
        else:
            table.add_column(key, no_wrap=True, overflow="ellipsis")
    cells = {key: columns[key] for key in shown}
    if "name" in cells and name_width is not None:
        cells["name"] = [Text(shorten(cell.plain, name_width)) for cell in cells["name"]]
    for row in zip(*cells.values(), strict=True):
        table.add_row(*row)
    return table


def _blocks(columns: Mapping[str, list[Text]], shown: Sequence[str]) -> RenderableType:
    """Each run as two lines: ``id  name  [tags]`` and its other columns as ``key value`` pairs."""
    lines: list[RenderableType] = []
    for i in range(len(columns["id"])):
        head = Text.assemble(columns["id"][i], "  ", columns["name"][i].plain)
        if "tags" in shown and columns["tags"][i].plain:
            head.append(f"  [{columns['tags'][i].plain}]", style="dim")
        details = Text()
        for key in shown:
            if key in ("id", "name", "tags") or columns[key][i].plain in ("", "–"):
                continue
            if details:
                details.append(" · ", style="dim")
            details.append(f"{key} ", style="dim")
            details.append(columns[key][i])
        lines += [head, Padding(details, (0, 0, 0, 2))]
    return Group(*lines) if lines else Text("no runs stored")


def _measure(table: Table) -> int:
    """The width ``table`` takes when nothing is squeezed."""
    console = Console(width=100_000, file=io.StringIO())
    return console.measure(table).maximum


def run_detail(
    record: RunRecord,
    epochs: Sequence[dict[str, Any]],
    tags: Sequence[str] = (),
    artifacts: Sequence[Artifact] = (),
    width: int | None = None,
) -> list[RenderableType]:
    """A run's summary, its resolved config, its files, its per-domain table (mixtures) and its
    per-epoch table (made to fit ``width``)."""
    note = restored_note(record.config, record.status, epochs)
    parts: list[RenderableType] = [_summary(record, tags, note), _config(record.config)]
    if artifacts:
        parts.append(artifacts_table(artifacts))
    if domain_names(epochs):
        parts.append(domains_table(epochs, record.best_epoch))
    return [*parts, epochs_table(epochs, record.best_epoch, width)]


_COMPARED = (
    ("best val acc", "val_acc", "best_val_acc"),
    ("final val acc", "val_acc", "final_val_acc"),
    ("final test acc", "test_acc", "final_test_acc"),
    ("final train acc", "train_acc", "final_train_acc"),
    ("final val loss", "val_loss", "final_val_loss"),
    ("final train loss", "train_loss", "final_train_loss"),
)


def comparison_tables(comparison: Comparison) -> list[RenderableType]:
    """The settings that differ (one row per key) and the final metrics (one row per metric), a
    column per run; a line saying so when no setting differs."""
    records = [run.record for run in comparison.runs]
    parts: list[RenderableType] = []
    if comparison.differing:
        settings = _run_columns(records, "settings that differ")
        for key in comparison.differing:
            values = (Text(format_value(value)) for value in comparison.values(key))
            settings.add_row(Text(key, style="cyan"), *values)
        parts.append(settings)
    else:
        parts.append(Text("no setting differs between these runs"))
    metrics = _run_columns(records, "final metrics")
    metrics.add_row("status", *(status_text(shown_status(record)) for record in records))
    metrics.add_row("epochs", *(Text(str(record.epochs_done)) for record in records))
    for label, key, field in _COMPARED:
        values = [getattr(record, field) for record in records]
        if any(value is not None for value in values):
            metrics.add_row(label, *(format_metric(key, value) for value in values))
    metrics.add_row("duration", *(Text(format_duration(record.duration_s)) for record in records))
    return [*parts, metrics]


def _run_columns(records: Sequence[RunRecord], title: str) -> Table:
    table = plain_table(title=title, title_justify="left")
    table.add_column("", no_wrap=True)
    for record in records:
        header = Text(record.id)
        if record.name:
            header.append("\n" + shorten(record.name, NAME_WIDTH), style="dim")
        table.add_column(header, justify="right", overflow="fold")
    return table


def artifacts_table(artifacts: Sequence[Artifact]) -> Table:
    """The run's files: what each is, where it is and its size (``missing`` when it is gone)."""
    table = plain_table(title="files", title_justify="left")
    table.add_column("kind", no_wrap=True)
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("path", overflow="fold")
    for artifact in artifacts:
        size = Text(format_size(artifact.size)) if artifact.size is not None else Text("missing", style="red")
        table.add_row(Text(artifact.kind), size, Text(str(artifact.path)))
    return table


def domains_table(epochs: Sequence[dict[str, Any]], best_epoch: int | None = None) -> Table:
    """Accuracy per evaluation domain: last epoch and the best epoch (by overall val accuracy)."""
    table = plain_table(title="accuracy per domain")
    summary = domain_summary(epochs, best_epoch)
    longest = max((len(row["domain"]) for row in summary), default=0)
    table.add_column("domain", no_wrap=True, min_width=longest)
    at = f"\n(epoch {best_epoch})" if best_epoch is not None else ""
    for header in ("final\nval", "final\ntest", f"val at\nbest{at}", f"test at\nbest{at}"):
        table.add_column(header, justify="right", no_wrap=True)
    for row in summary:
        keys = ("final_val_acc", "final_test_acc", "best_val_acc", "best_test_acc")
        table.add_row(Text(row["domain"]), *(format_metric("acc", row[key]) for key in keys))
    return table


# Left out, in this order, while the epochs table is wider than the terminal (`export` has them all).
_EPOCH_FIT_ORDER = ("images_per_s", "seconds", "lr", "test_loss", "train_loss")


def epochs_table(epochs: Sequence[dict[str, Any]], best_epoch: int | None = None,
                 width: int | None = None) -> Table:
    """Per-epoch metrics; columns that are empty in every epoch are left out, extras at the end.
    While the table is wider than ``width``, img/s, s, lr, test loss and train loss are left out
    (in that order, said in the caption); a number is never cut."""
    columns: list[str] = []
    for row in epochs:
        columns += [key for key in row if key != "epoch" and key not in columns]
    standard = [key for key in EPOCH_METRICS if key in columns]
    # Per-domain losses stay in `cnnlab export`; the table shows per-domain validation accuracy.
    extra = [key for key in columns if key not in EPOCH_METRICS
             and not (key.startswith(("val/", "test/")) and key.endswith("_loss"))
             and not key.startswith("test/")]
    shown = [key for key in standard + extra if any(row.get(key) is not None for row in epochs)]
    table = _epochs_table(epochs, shown, best_epoch)
    left_out = []
    for key in _EPOCH_FIT_ORDER if width is not None else ():
        if _measure(table) <= width:
            break
        if key in shown:
            shown.remove(key)
            left_out.append(_EPOCH_HEADERS[key])
            table = _epochs_table(epochs, shown, best_epoch)
    if left_out:
        table.caption = f"{', '.join(left_out)} left out to fit: `cnnlab export` has every column"
    if not epochs:
        table.caption = "no epochs stored"
    return table


def _epochs_table(epochs: Sequence[dict[str, Any]], shown: Sequence[str], best_epoch: int | None) -> Table:
    table = plain_table(title="epochs")
    table.add_column("epoch", justify="right", no_wrap=True)
    rows = [[format_metric(key, row.get(key)) for key in shown] for row in epochs]
    for i, key in enumerate(shown):
        header = _EPOCH_HEADERS.get(key, key.replace("/", " ").removesuffix("_acc"))
        # Numbers are never cut: the header takes a line per word instead ("train\nloss",
        # "val\nmnist-\ncolour").
        table.add_column(Text(header.replace(" ", "\n").replace("-", "-\n")), justify="right", no_wrap=True,
                         min_width=max((cells[i].cell_len for cells in rows), default=0))
    for row, cells in zip(epochs, rows, strict=True):
        style = "bold green" if best_epoch is not None and row["epoch"] == best_epoch else None
        table.add_row(str(row["epoch"]), *cells, style=style)
    return table


def _summary(run: RunRecord, tags: Sequence[str] = (), stored_model: str | None = None) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    status = status_text(shown_status(run))
    grid.add_row("run", Text.assemble((run.id, "bold"), "  ", run.name or "", "  ", status))
    if tags:
        grid.add_row("tags", Text(" ".join(tags)))
    grid.add_row("model", Text(f"{run.model} on {run_dataset(run.config)}, seed {run.seed}"))
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
    legacy = f"; {run.legacy_hash} before defaults were filled in" if run.legacy_hash else ""
    grid.add_row("config hash", f"{run.config_hash} (cell {run.cell_hash}{legacy})")
    for label, value in (
        ("parameters", f"{run.n_params:,}" if run.n_params is not None else None),
        ("precision", run.precision),
        ("device", run.device),
        ("sweep", f"{run.sweep}, trial {run.trial}" if run.sweep else None),
    ):
        if value:
            grid.add_row(label, Text(value))
    grid.add_row("host", Text(run.host))
    grid.add_row("versions", Text(", ".join(f"{k} {v}" for k, v in run.versions.items())))
    if stored_model:
        grid.add_row("stored model", Text(stored_model.removeprefix("stored model: ")))
    if run.error:
        grid.add_row("error", Text(run.error, style="red"))
    return grid


def _config(config: dict[str, Any]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.title = "config"
    grid.add_column(style="cyan")
    grid.add_column(overflow="fold")
    for key, value in _flatten(config):
        grid.add_row(Text(key), Text(json.dumps(value) if not isinstance(value, str) else value))
    return grid


def _flatten(config: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in config.items():
        if isinstance(value, dict) and value:
            items += _flatten(value, f"{prefix}{key}.")
        elif value is not None:
            items.append((f"{prefix}{key}", value))
    return items
