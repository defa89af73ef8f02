"""Where a sweep stands: every cell's runs as done, running, pending, failed, pruned or diverged."""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState

from cnnlab.analyze.stats import summarize
from cnnlab.errors import StoreError
from cnnlab.store import RunRecord, RunStore
from cnnlab.store.liveness import GONE, process_gone
from cnnlab.store.schema import FINISHED
from cnnlab.sweep.optuna_study import open_study, quiet_optuna, sampled
from cnnlab.sweep.retry import SKIPPED, SPEC_ATTR
from cnnlab.sweep.spec import SweepSpec
from cnnlab.sweep.storage import Location

STATES = ("done", "running", "pending", "interrupted", GONE, "failed", "pruned", "diverged")


@dataclass
class SeedRun:
    """One cell × seed: its state, run and objective value (from its latest trial)."""

    seed: int
    state: str
    trial: int
    run_id: str | None = None
    epochs_done: int = 0
    epochs_planned: int | None = None
    value: float | None = None
    error: str | None = None
    # Mixtures: the last epoch's accuracy per evaluation domain (test, else val), for done runs.
    domains: dict[str, float] = field(default_factory=dict)


@dataclass
class CellStatus:
    """One cell (a setting combination) and its runs, one per seed."""

    label: str
    cell_hash: str
    runs: list[SeedRun] = field(default_factory=list)

    def count(self, state: str) -> int:
        """Runs in ``state``."""
        return sum(run.state == state for run in self.runs)

    @property
    def values(self) -> list[float]:
        """Objective values of the finished (done or diverged) runs."""
        return [r.value for r in self.runs
                if r.state in ("done", "diverged") and r.value is not None and math.isfinite(r.value)]

    def domain_means(self) -> dict[str, float]:
        """Mean accuracy per evaluation domain over the done runs that measured it."""
        names: list[str] = []
        for run in self.runs:
            names += [n for n in run.domains if n not in names]
        return {name: summarize(values).mean for name in names
                if (values := [r.domains[name] for r in self.runs if r.state == "done" and name in r.domains
                               and math.isfinite(r.domains[name])])}

    @property
    def mean(self) -> float | None:
        """Mean objective over finished seeds."""
        return summarize(self.values).mean if self.values else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation over finished seeds (None below two)."""
        return summarize(self.values).std if len(self.values) > 1 else None


@dataclass
class SweepStatus:
    """A sweep's cells and runs; ``unsampled`` counts tpe runs not sampled yet."""

    name: str
    mode: str
    metric: str
    direction: str
    storage: str
    cells: list[CellStatus] = field(default_factory=list)
    unsampled: int = 0
    # Several [[grid]] tables: each grid's title and its cells as (label within the grid, cell hash);
    # a cell shared by several grids (the base cell of one-factor-at-a-time grids) is in each.
    grids: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)

    def shared_cells(self) -> set[str]:
        """Hashes of the cells that belong to more than one grid."""
        seen: dict[str, int] = {}
        for _, members in self.grids:
            for _, cell_hash in members:
                seen[cell_hash] = seen.get(cell_hash, 0) + 1
        return {cell_hash for cell_hash, n in seen.items() if n > 1}

    @property
    def metric_label(self) -> str:
        """What the objective values are: the metric of each run's last epoch (``final val_acc``), not
        the best epoch that reports rank by."""
        return f"final {self.metric}"

    def counts(self) -> dict[str, int]:
        """Runs per state (every state in STATES, zeros included)."""
        counts = dict.fromkeys(STATES, 0)
        for cell in self.cells:
            for run in cell.runs:
                counts[run.state] += 1
        counts["pending"] += self.unsampled
        return counts

    @property
    def total(self) -> int:
        """All runs of the sweep, sampled or not."""
        return sum(len(c.runs) for c in self.cells) + self.unsampled

    @property
    def finished(self) -> bool:
        """Nothing pending, interrupted or running."""
        counts = self.counts()
        return counts["pending"] + counts["running"] + counts["interrupted"] + counts[GONE] == 0

    def best(self) -> CellStatus | None:
        """The cell with the best mean objective over its finished seeds."""
        scored = [c for c in self.cells if c.mean is not None]
        if not scored:
            return None
        sign = 1.0 if self.direction == "maximize" else -1.0
        return max(scored, key=lambda c: sign * (c.mean or 0.0))


def sweep_status(location: Location, name: str, store: RunStore | None = None) -> SweepStatus:
    """Read a sweep's state from its study and the run store (``store``: one already open, as the
    dashboard's; else the location's, opened read-only for this reading)."""
    with quiet_optuna(), _reading(location, store) as runs_store:
        study, spec = open_study(location, name)
        return _status(study, spec, location, runs_store)


def list_sweeps(location: Location, store: RunStore | None = None) -> list[SweepStatus]:
    """Every sweep in the storage, by name."""
    with quiet_optuna():
        storage = location.open_storage(create=False, repair=False)
        if storage is None:
            return []
        out = []
        with _reading(location, store) as runs_store:
            for name in sorted(optuna.get_all_study_names(storage)):
                try:
                    study, spec = open_study(location, name, storage)
                except StoreError:
                    continue  # a study of another program in the same database
                out.append(_status(study, spec, location, runs_store))
        return out


@contextlib.contextmanager
def _reading(location: Location, store: RunStore | None) -> Iterator[RunStore | None]:
    """``store``, or the location's run store opened read-only and closed after; None while no
    run store exists yet (a sweep queued, nothing trained)."""
    if store is not None:
        yield store
        return
    if not location.has_store():
        yield None
        return
    with contextlib.closing(location.open_store(read_only=True)) as opened:
        yield opened


def _status(study: optuna.Study, spec: SweepSpec, location: Location, store: RunStore | None) -> SweepStatus:
    trials = study.get_trials(deepcopy=False)
    queued = study.user_attrs[SPEC_ATTR].get("config_hashes")
    latest: dict[str, FrozenTrial] = {}
    first: dict[str, int] = {}  # cell hash -> number of its first trial: cells in queue order
    for trial in trials:
        config_hash = trial.user_attrs.get("config_hash")
        if config_hash is None or trial.user_attrs.get("outcome") in SKIPPED:
            continue
        if spec.mode != "tpe" and queued is not None and config_hash not in queued:
            continue  # a cell since removed from the sweep file
        latest[config_hash] = trial  # trials come in number order: the last one wins
        first.setdefault(trial.user_attrs["cell_hash"], trial.number)
    runs = {r.id: r for r in store.list_runs(sweep=study.study_name)} if store is not None else {}
    by_trial = {r.trial: r for r in reversed(list(runs.values())) if r.trial is not None}
    status = SweepStatus(spec.name, spec.mode, spec.metric, spec.direction, location.describe())
    cells: dict[str, CellStatus] = {}
    for trial in sorted(latest.values(), key=lambda t: t.user_attrs.get("seed", 0)):
        attrs = trial.user_attrs
        cell = cells.setdefault(attrs["cell_hash"], CellStatus(attrs["label"], attrs["cell_hash"]))
        record = _record(trial, runs, by_trial, store)
        run = _seed_run(trial, record)
        if store is not None:
            _settle(run, record, spec, store)
        cell.runs.append(run)
    if spec.mode != "tpe" and queued is not None and set(queued) - set(latest):
        _add_untracked(cells, first, set(latest), runs, spec, store)
    status.cells = sorted(cells.values(), key=lambda c: first[c.cell_hash])
    status.grids = _grids(spec)
    if spec.mode == "tpe":
        real = [t for t in sampled(trials) if t.user_attrs.get("outcome") not in SKIPPED]
        status.unsampled = max(0, spec.n_trials - len(real)) * len(spec.seeds)
    return status


def _settle(run: SeedRun, record: RunRecord | None, spec: SweepSpec, store: RunStore) -> None:
    """The run store is the truth: a run it holds as finished is done (or diverged) whatever its
    trial says (the trial's end may be lost with a damaged journal); a running run whose process
    died is said so."""
    if record is None:
        return
    if record.status in FINISHED and run.state not in ("done", "diverged"):
        run.state = "diverged" if record.status == "diverged" else "done"
        epochs = store.epochs(record.id)
        value = epochs[-1].get(spec.metric) if epochs else None
        run.value = float(value) if value is not None else None
        run.error = None
    if run.state == "running" and process_gone(record):
        run.state = GONE
    if run.state == "done" and _has_domains(record):
        run.domains = _domain_accuracies(store.epochs(record.id))


def _add_untracked(cells: dict[str, CellStatus], first: dict[str, int], tracked: set[str],
                   runs: dict[str, RunRecord], spec: SweepSpec, store: RunStore | None) -> None:
    """Cells × seeds the sweep queued that no trial holds (lost with a damaged journal): as the run
    store has them, else pending."""
    from cnnlab.sweep.cells import planned_cells

    by_hash: dict[str, RunRecord] = {}
    for record in runs.values():  # newest first: keep the newest run of each config
        by_hash.setdefault(record.config_hash, record)
    after = max(first.values(), default=0) + 1  # cells no trial holds come after the others
    for planned in planned_cells(spec):
        if planned.config_hash in tracked:
            continue
        cell = cells.setdefault(planned.cell_hash, CellStatus(planned.label, planned.cell_hash))
        first.setdefault(planned.cell_hash, after + len(first))
        record = by_hash.get(planned.config_hash)
        run = SeedRun(seed=planned.seed, state="pending", trial=-1)
        if record is not None:
            run.run_id, run.epochs_done = record.id, record.epochs_done
            run.epochs_planned = record.planned_epochs
            run.state = {"running": "running", "interrupted": "interrupted", "failed": "failed",
                         "pruned": "pruned"}.get(record.status, "pending")
            if store is not None:
                _settle(run, record, spec, store)
        cell.runs.append(run)


def _grids(spec: SweepSpec) -> list[tuple[str, list[tuple[str, str]]]]:
    """Each of several ``[[grid]]`` tables with its cells (label within the grid, cell hash)."""
    from cnnlab.errors import ConfigError
    from cnnlab.sweep.cells import label, make_cell

    if spec.mode != "grid" or len(spec.grids) < 2:
        return []
    grids = []
    for grid in spec.grids:
        members = []
        for values in itertools.product(*grid.values()):
            overrides = dict(zip(grid, values, strict=True))
            zipped = zip(*spec.zip.values(), strict=True)
            rows = [dict(zip(spec.zip, row, strict=True)) for row in zipped] or [{}]
            for row in rows:
                try:
                    cell = make_cell(spec, {**overrides, **row}, spec.seeds[0])
                except ConfigError:
                    continue
                members.append((label({**overrides, **row}), cell.cell_hash))
        grids.append((" × ".join(grid), members))
    return grids


def _has_domains(record: RunRecord) -> bool:
    data = record.config.get("data") or {}
    return bool(data.get("train") or data.get("eval"))


def _domain_accuracies(epochs: list[dict]) -> dict[str, float]:
    from cnnlab.store.domains import domain_names

    if not epochs:
        return {}
    last = epochs[-1]
    out = {}
    for name in domain_names(epochs):
        value = last.get(f"test/{name}_acc", last.get(f"val/{name}_acc"))
        if value is not None:
            out[name] = value
    return out


def _record(trial: FrozenTrial, runs: dict[str, RunRecord], by_trial: dict[int, RunRecord],
            store: RunStore | None) -> RunRecord | None:
    run_id = trial.user_attrs.get("run_id")
    if run_id is None:
        return by_trial.get(trial.number)
    if run_id in runs or store is None:
        return runs.get(run_id)
    try:  # a run reused from another sweep
        return store.get_run(run_id)
    except StoreError:
        return None


def _seed_run(trial: FrozenTrial, record: RunRecord | None) -> SeedRun:
    attrs = trial.user_attrs
    if trial.state == TrialState.WAITING:
        state = "interrupted" if "resumes" in attrs else "pending"
    elif trial.state == TrialState.RUNNING:
        state = "running"
    elif trial.state == TrialState.COMPLETE:
        state = "diverged" if attrs.get("run_status") == "diverged" else "done"
    elif trial.state == TrialState.PRUNED:
        state = "pruned"
    else:
        state = "failed"
    run = SeedRun(seed=attrs.get("seed", 0), state=state, trial=trial.number,
                  value=trial.value if trial.state == TrialState.COMPLETE else None)
    if state == "failed":
        text = str(attrs.get("error") or attrs.get("outcome") or "").strip()
        run.error = text.splitlines()[-1] if text else None
    if record is not None:
        run.run_id = record.id
        run.epochs_done = record.epochs_done
        run.epochs_planned = record.planned_epochs
    return run
