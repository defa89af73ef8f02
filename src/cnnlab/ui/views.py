"""What each dashboard page shows, as JSON-ready dicts built from the store, the sweeps and analyze/."""

from __future__ import annotations

import csv
import io
import json
import math
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cnnlab.analyze import RunData, analyze_runs, diagnose_run, stored_claim, varying_keys
from cnnlab.analyze.cells import format_value
from cnnlab.analyze.compare import differing_keys, filled_settings
from cnnlab.analyze.diagnose import NOT_CONVERGED, outcome_numbers
from cnnlab.analyze.study import Study
from cnnlab.data.labels import run_dataset
from cnnlab.errors import StoreError
from cnnlab.store import RunRecord, RunStore
from cnnlab.store.domains import domain_names
from cnnlab.store.liveness import shown_status
from cnnlab.ui.source import Source

CURVE_KEYS = ("train_loss", "val_loss", "test_loss", "train_acc", "val_acc", "test_acc")
# A run's stored status as a sweep state, for sweeps whose Optuna study is not reachable.
_STATE_OF_STATUS = {"completed": "done", "stopped_early": "done", "running": "running",
                    "created": "pending", "interrupted": "interrupted", "failed": "failed",
                    "pruned": "pruned", "diverged": "diverged"}


def number(value: Any) -> float | None:
    """A float for JSON: None for missing, NaN and ±inf (JSON has none of them)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def metric_text(key: str, value: Any) -> str:
    """A metric as the CLI prints it (``98.25%`` for accuracies, ``0.0312`` for losses, ``–`` when
    missing): the one rounding every table of the dashboard shows."""
    value = number(value)
    if value is None:
        return "–"
    return f"{100 * value:.2f}%" if key.endswith("acc") else f"{value:.4f}"


def when_text(moment: Any) -> str:
    """A time as the CLI writes it: ``2026-12-06 23:26`` (local time)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone()
    return moment.strftime("%Y-%m-%d %H:%M")


SUMMARY_KEYS = ("best_val_acc", "final_val_acc", "final_test_acc")


def live_summary(epochs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What a running run's row will hold when it ends, from the epochs stored so far: best and last
    validation accuracy, last test accuracy and the time its epochs took."""
    val = [row["val_acc"] for row in epochs if number(row.get("val_acc")) is not None]
    test = [row["test_acc"] for row in epochs if number(row.get("test_acc")) is not None]
    seconds = [row["seconds"] for row in epochs if number(row.get("seconds")) is not None]
    return {"best_val_acc": max(val) if val else None, "final_val_acc": val[-1] if val else None,
            "final_test_acc": test[-1] if test else None, "duration_s": sum(seconds) if seconds else None}


def run_row(run: RunRecord, tags: Sequence[str] = (), epochs: Sequence[dict[str, Any]] | None = None,
            ) -> dict[str, Any]:
    """One run as a row of the runs table; ``epochs`` (a running run's, so far) fill in the numbers
    its row gets only when it ends."""
    row = {
        "id": run.id,
        "name": run.name or "",
        "model": run.model,
        "dataset": run_dataset(run.config),
        "status": shown_status(run),
        "epochs_done": run.epochs_done,
        "epochs_planned": run.planned_epochs,
        "best_val_acc": number(run.best_val_acc),
        "final_val_acc": number(run.final_val_acc),
        "final_test_acc": number(run.final_test_acc),
        "duration_s": number(run.duration_s),
        "created": run.created_at.isoformat(),
        "created_text": when_text(run.created_at),
        "sweep": run.sweep,
        "tags": list(tags),
    }
    if epochs is not None:
        row["epochs_done"] = len(epochs)
        row.update({key: number(value) for key, value in live_summary(epochs).items()})
    row["text"] = {key: metric_text(key, row[key]) for key in SUMMARY_KEYS}
    return row


def runs_view(store: RunStore) -> dict[str, Any]:
    """Every run, newest first, with its tags; running runs show the numbers of their stored epochs
    (the run row has them only at the end)."""
    records = store.list_runs()
    running = [r.id for r in records if shown_status(r) == "running"]
    live = store.epochs_of(running)
    tags = store.tags([r.id for r in records])
    rows = [run_row(record, tags.get(record.id, ()), live.get(record.id)) for record in records]
    sweeps = sorted({r.sweep for r in records if r.sweep})
    return {"runs": rows, "sweeps": sweeps, "running": len(running),
            "tags": sorted({tag for run_tags in tags.values() for tag in run_tags})}


def curves(epochs: Sequence[dict[str, Any]], keys: Sequence[str] = CURVE_KEYS) -> dict[str, Any]:
    """Epoch numbers and each metric in ``keys`` that any epoch has, as JSON lists."""
    present = [key for key in keys if any(row.get(key) is not None for row in epochs)]
    return {"epoch": [row["epoch"] for row in epochs],
            **{key: [number(row.get(key)) for row in epochs] for key in present}}


def run_view(source: Source, ref: str) -> dict[str, Any]:
    """One run: summary, curves (per domain too), config, diagnosis, artifacts, checkpoint or not."""
    store = source.store
    record = store.get_run(ref)
    epochs = store.epochs(record.id)
    data = RunData(record, epochs)
    running = shown_status(record) == "running"
    diagnosis = diagnose_run(data)
    findings = diagnosis.findings
    outcome = diagnosis.outcome
    planned = record.planned_epochs
    if running:  # the curves so far: "train longer" is what it is doing
        findings = [f for f in findings if f.kind != NOT_CONVERGED]
        of = f" of {planned}" if planned else ""
        numbers = outcome_numbers(data)
        if not epochs:
            outcome = f"still training, 0{of} epochs done (no numbers yet)"
        elif numbers:
            outcome = f"still training, epoch {len(epochs)}{of}: {'; '.join(numbers)} (its curves so far)"
        else:
            outcome = f"still training, epoch {len(epochs)}{of} (no numbers yet)"
    domains = domain_names(epochs)
    domain_keys = [f"{split}/{name}_acc" for name in domains for split in ("val", "test")]
    return {
        "run": run_row(record, store.tags([record.id]).get(record.id, ()), epochs if running else None) | {
            "seed": record.seed, "host": record.host, "error": record.error, "best_epoch": record.best_epoch,
            "n_params": record.n_params, "device": record.device, "precision": record.precision,
            "trial": record.trial, "config_hash": record.config_hash,
        },
        "loss": data.settings.get("train.loss") or "loss",
        "curves": curves(epochs),
        "domains": domains,
        "domain_curves": curves(epochs, domain_keys),
        "config": [[key, value if isinstance(value, str) else json.dumps(value, default=str)]
                   for key, value in data.settings.items() if value is not None],
        "diagnosis": {"outcome": outcome,
                      "findings": [{"kind": f.kind, "evidence": f.evidence, "advice": f.advice}
                                   for f in findings]},
        "artifacts": artifact_links(store, record.id),
        "has_checkpoint": source.store.checkpoint_path(record.id).is_file(),
    }


def _served_artifacts(store: RunStore, run_id: str) -> dict[str, tuple[str, Path]]:
    """The run's recorded artifacts the dashboard may serve, by name (their path inside the run's
    folder): regular files that are recorded in the store and lie, links resolved, in that folder.
    Anything else a store records (a path elsewhere, a link out) is never served."""
    folder = store.checkpoint_path(run_id).parent.resolve()
    served: dict[str, tuple[str, Path]] = {}
    for artifact in store.artifacts(run_id):
        if "://" in artifact["path"]:
            continue
        path = Path(artifact["path"]).resolve()
        if path.is_relative_to(folder) and path.is_file():
            served.setdefault(path.relative_to(folder).as_posix(), (artifact["kind"], path))
    return served


def artifact_links(store: RunStore, run_id: str) -> list[dict[str, Any]]:
    """The run's artifacts, each with its URL ``/files/RUN/NAME`` when the dashboard serves it."""
    served = {path: name for name, (_, path) in _served_artifacts(store, run_id).items()}
    links = []
    for artifact in store.artifacts(run_id):
        name = None if "://" in artifact["path"] else served.get(Path(artifact["path"]).resolve())
        links.append({"kind": artifact["kind"], "name": Path(artifact["path"]).name, "path": artifact["path"],
                      "url": f"/files/{run_id}/{quote(name)}" if name is not None else None})
    return links


def artifact_path(source: Source, run_id: str, name: str) -> Path | None:
    """The file of run ``run_id``'s recorded artifact ``name`` (see `artifact_links`), else None."""
    try:
        record = source.store.get_run(run_id)
    except StoreError:
        return None
    if record.id != run_id:  # an id prefix or a name is not an artifact's address
        return None
    found = _served_artifacts(source.store, record.id).get(name)
    return found[1] if found is not None else None


def load_run_data(store: RunStore, records: Sequence[RunRecord]) -> list[RunData]:
    """Runs with their epochs, read in one query."""
    epochs = store.epochs_of([r.id for r in records])
    return [RunData(record, epochs[record.id]) for record in records]


def _by_trial(records: list[RunRecord]) -> list[RunRecord]:
    """Runs in trial order, as `cnnlab report` loads a sweep."""
    return sorted(records, key=lambda r: (r.trial if r.trial is not None else math.inf, r.created_at, r.id))


class Analyses:
    """Each sweep's analysis (``analyze_runs``, the code behind `cnnlab report`), kept while its runs,
    their statuses and their stored epochs are unchanged: a page polling a finished sweep, or a
    running sweep between two epochs, costs two small queries instead of a new analysis."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[Any, ...], Study | None]] = {}

    def __call__(self, name: str) -> Study | None:
        """The analysis of sweep ``name``'s runs; None when it has none."""
        records = _by_trial(self.store.list_runs(sweep=name))
        running = [r.id for r in records if r.status == "running"]
        live = self.store.epochs_of(running)
        key = tuple((r.id, r.status, r.epochs_done, len(live.get(r.id, ()))) for r in records)
        with self._lock:
            cached = self._cache.get(name)
            if cached is None or cached[0] != key:
                runs = load_run_data(self.store, records)
                cached = (key, analyze_runs(runs, claim=stored_claim(self.store, name)) if runs else None)
                self._cache[name] = cached
        return cached[1]


def study_view(source: Source, name: str, analyses: Analyses) -> dict[str, Any]:
    """A sweep: cells and their states, live progress, the ranking with confidence intervals, the
    conclusions and every run's curve of the ranking metric."""
    study = analyses(name)
    cells, counts, total, cells_metric = _cell_states(source, name, study)
    if study is None and not cells:
        raise StoreError(f"no sweep named {name!r} in {source.shown}")
    return {
        "name": name,
        "counts": counts,
        "total": total,
        "cells": cells,
        "cells_metric": cells_metric,
        "analysis": _analysis(study) if study else None,
        "figures_key": figures_key(study.runs if study else []),
    }


def figures_key(runs: Sequence[RunData]) -> str:
    """Changes when a run is added or changes status: the study's figures are drawn again then."""
    return f"{len(runs)}-{abs(hash(tuple((run.id, run.status) for run in runs))):x}"


CellStates = tuple[list[dict[str, Any]], dict[str, int], int, str]


def _cell_states(source: Source, name: str, study: Study | None) -> CellStates:
    """Cells with their runs' states from the sweep's Optuna study (pending cells included); from the
    stored runs when the study cannot be read (a sweep stored without one)."""
    from cnnlab.sweep.status import STATES, sweep_status  # imports torch: only once a sweep is shown

    try:
        status = sweep_status(source.location, name, source.store)
    except StoreError:
        status = None
    if status is not None:
        cells = [{"label": cell.label, "states": {s: cell.count(s) for s in STATES},
                  "mean": number(cell.mean), "std": number(cell.std),
                  "text": _mean_sd(status.metric, cell.mean, cell.std),
                  "runs": [{"id": r.run_id, "state": r.state, "epochs": r.epochs_done,
                            "planned": r.epochs_planned} for r in cell.runs]} for cell in status.cells]
        return cells, status.counts(), status.total, status.metric_label
    if study is None:
        return [], dict.fromkeys(STATES, 0), 0, ""
    counts = Counter(_STATE_OF_STATUS.get(run.status, run.status) for run in study.runs)
    summaries = {row.cell.label: row.summary for row in study.ranking.rows}  # ranked runs only
    cells = []
    for cell in study.cells:
        states = Counter(_STATE_OF_STATUS.get(run.status, run.status) for run in cell.runs)
        summary = summaries.get(cell.label)
        mean, std = (summary.mean, summary.std if summary.n >= 2 else None) if summary else (None, None)
        cells.append({"label": cell.label, "states": {s: states.get(s, 0) for s in STATES},
                      "mean": number(mean), "std": number(std),
                      "text": _mean_sd(study.metric.column, mean, std),
                      "runs": [{"id": run.id, "state": _STATE_OF_STATUS.get(run.status, run.status),
                                "epochs": len(run.epochs), "planned": run.record.planned_epochs}
                               for run in cell.runs]})
    return cells, {s: counts.get(s, 0) for s in STATES}, len(study.runs), study.metric.name


def _mean_sd(metric: str, mean: Any, std: Any) -> str:
    """``91.25% ± 0.40`` (accuracies) or ``0.2310 ± 0.0100``, rounded as every other number shown."""
    if number(mean) is None:
        return "–"
    text = metric_text(metric, mean)
    if number(std) is not None:
        text += " ± " + metric_text(metric, std).rstrip("%")
    return text


def _analysis(study: Study) -> dict[str, Any]:
    metric = study.metric
    ranking = []
    for row in study.ranking.rows:
        s = row.summary
        low, high = metric.interval(s)
        ranking.append({
            "rank": row.rank, "label": row.cell.label, "verdict": row.verdict, "against": row.verdict_text,
            "mean": metric.format(s.mean), "sd": metric.format(s.std, unit=False) if s.n >= 2 else "–",
            "ci": f"{metric.format(low, unit=False)} – {metric.format(high)}" if s.n >= 2 else "–",
            "n": s.n, "runs": [run.id for run in row.cell.runs],
        })
    labels = {run.id: cell.label for cell in study.cells for run in cell.runs}
    varying = varying_keys(study.runs)
    best = study.best_run
    return {
        "metric": {"name": metric.name, "description": metric.description, "column": metric.column,
                   "percent": metric.higher_is_better},
        "method": study.ranking.method,
        "noise_note": study.ranking.noise_note,
        "ranking": ranking,
        "conclusions": study.conclusions.sentences(),
        "best_run": best.id if best else None,
        "findings": sum(len(d.findings) for d in study.diagnoses),
        "runs": [{"id": run.id, "label": run.label, "cell": labels.get(run.id, ""), "status": run.status,
                  "epoch": [row["epoch"] for row in run.epochs],
                  "value": [number(row.get(metric.column)) for row in run.epochs],
                  "settings": {key: format_value(run.settings.get(key)) for key in varying},
                  "result": number(metric.of(run)) if run.epochs else None} for run in study.runs],
        "varying": varying,
    }


COMPARED = (("best val acc", "best_val_acc"), ("final val acc", "final_val_acc"),
            ("final test acc", "final_test_acc"), ("final train acc", "final_train_acc"),
            ("final val loss", "final_val_loss"), ("final train loss", "final_train_loss"))


def compare_view(store: RunStore, refs: Sequence[str]) -> dict[str, Any]:
    """Runs side by side: their curves, the settings that differ and their final metrics (as
    `cnnlab compare`); runs trained with different loss functions have their losses drawn as
    loss ÷ epoch-1 loss, as the report and `study.plot()` draw them."""
    records: dict[str, RunRecord] = {}
    for ref in refs:
        record = store.get_run(ref)
        records.setdefault(record.id, record)
    runs = load_run_data(store, list(records.values()))
    keys = differing_keys(runs)  # as `cnnlab compare`: a model default set explicitly is no difference
    filled = [filled_settings(run) for run in runs]
    losses = [str(run.settings.get("train.loss") or "loss") for run in runs]
    metrics = [["status", *(shown_status(run.record) for run in runs)],
               ["epochs", *(str(len(run.epochs)) for run in runs)]]
    for label, field in COMPARED:
        values = [getattr(run.record, field) for run in runs]
        if any(number(value) is not None for value in values):
            metrics.append([label, *(metric_text(field, value) for value in values)])
    metrics.append(["time", *(f"{run.record.duration_s:.1f} s" if number(run.record.duration_s) is not None
                              else "–" for run in runs)])
    return {
        "runs": [{"id": run.id, "label": run.label, "status": shown_status(run.record),
                  "seed": run.record.seed, "loss": loss, "curves": curves(run.epochs)}
                 for run, loss in zip(runs, losses, strict=True)],
        "normalise_loss": len(set(losses)) > 1,
        "losses": sorted(set(losses)),
        "settings": [[key, *(format_value(flat.get(key)) for flat in filled)] for key in keys],
        "metrics": metrics,
    }


def study_results(study: Study | None) -> list[dict[str, Any]]:
    """One row per run of a sweep: id, configuration, seed, status, the settings that vary, the
    ranking metric and the final metrics (the sweep's results download)."""
    if study is None:
        return []
    varying = varying_keys(study.runs)
    labels = {run.id: cell.label for cell in study.cells for run in cell.runs}
    rows = []
    for run in study.runs:
        record = run.record
        row: dict[str, Any] = {"run": run.id, "configuration": labels.get(run.id, ""), "seed": record.seed,
                               "status": shown_status(record), "epochs": len(run.epochs)}
        row.update({key: run.settings.get(key) for key in varying})
        row[study.metric.name] = number(study.metric.of(run)) if run.epochs else None
        row.update({field: number(getattr(record, field)) for _, field in COMPARED})
        row["duration_s"] = number(record.duration_s)
        rows.append(row)
    return rows


def rows_text(rows: Sequence[dict[str, Any]], fmt: str) -> str:
    """Rows (dicts with the same keys) as CSV or JSON text; lists and tables in cells as JSON."""
    columns = list(rows[0]) if rows else []
    if fmt == "json":
        return json.dumps([dict(row) for row in rows], indent=2, default=str) + "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row[c] is None else row[c] if isinstance(row[c], str | int | float)
                         else json.dumps(row[c], default=str) for c in columns])
    return buffer.getvalue()
