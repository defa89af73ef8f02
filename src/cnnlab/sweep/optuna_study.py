"""The Optuna study behind a sweep: its stored spec, its queue of cells, and trial recovery.

A sweep is one study (study name = sweep name). The command that queues a sweep stores the
spec in the study's user attributes and enqueues every grid or random cell as a WAITING trial
carrying the cell in its user attributes, so workers on any machine need only the database.
Dead workers' trials are failed and queued again (a copy in Optuna's retry format) up to the
sweep's retry limit.
"""

from __future__ import annotations

import contextlib
import os
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from cnnlab.errors import ConfigError, Problem, StoreError
from cnnlab.store.liveness import pid_alive
from cnnlab.sweep.cells import Cell, expand_cells, make_cell
from cnnlab.sweep.retry import SPEC_ATTR, gave_up, requeue
from cnnlab.sweep.space import distributions
from cnnlab.sweep.spec import SweepSpec
from cnnlab.sweep.storage import Location

# Trials that hold (or will hold) their cell's run; a FAIL trial does not, so its cell is queued again.
COVERING = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
# A RUNNING trial that no worker signed within this time was taken by a worker that died.
UNSIGNED_GRACE_S = 120


@dataclass
class QueueResult:
    """What queueing a sweep did: its study, how many runs it has and how many were added now."""

    name: str
    runs: int
    queued: int
    storage: str


def open_study(location: Location, name: str, storage: optuna.storages.BaseStorage | None = None,
               **kwargs: Any) -> tuple[optuna.Study, SweepSpec]:
    """Load an existing sweep's study and its spec; StoreError when there is no such sweep."""
    storage = storage or location.open_storage(create=False, repair=False)
    if storage is None:
        raise StoreError(f"no sweeps at {location.describe()} yet: start one with `cnnlab sweep FILE`")
    try:
        study = optuna.load_study(study_name=name, storage=storage, **kwargs)
    except KeyError:
        known = optuna.get_all_study_names(storage)
        shown = ", ".join(known) if known else "none"
        raise StoreError(f"no sweep named {name!r} at {location.describe()} (sweeps: {shown})") from None
    data = study.user_attrs.get(SPEC_ATTR)
    if data is None:
        raise StoreError(f"study {name!r} at {location.describe()} was not made by cnnlab sweep")
    return study, SweepSpec.from_dict(data)


def queue_sweep(spec: SweepSpec, location: Location) -> QueueResult:
    """Create or update the sweep's study and enqueue every cell × seed not already done, queued or
    running. Everything is validated first; nothing is written when a cell is invalid."""
    cells = expand_cells(spec)
    storage = location.open_storage()
    assert storage is not None
    direction = optuna.study.StudyDirection.MAXIMIZE if spec.direction == "maximize" \
        else optuna.study.StudyDirection.MINIMIZE
    with quiet_optuna():
        study = optuna.create_study(study_name=spec.name, storage=storage, direction=spec.direction,
                                    load_if_exists=True)
    if study.direction != direction:
        raise ConfigError(Problem("direction", spec.direction, f"differs from sweep {spec.name!r}, "
                                  f"which {study.direction.name.lower()}s: give the sweep a new name"))
    if spec.mode == "tpe":
        _check_distributions(study, spec)
    data = spec.to_dict()
    data["config_hashes"] = [cell.config_hash for cell in cells]
    study.set_user_attr(SPEC_ATTR, data)
    recover_stale(study, storage)
    covered = {t.user_attrs.get("config_hash") for t in study.get_trials(deepcopy=False)
               if t.state in COVERING or gave_up(t)}
    queued = 0
    for cell in cells:
        if cell.config_hash not in covered:
            _enqueue(study, cell)
            queued += 1
    runs = len(cells) if spec.mode != "tpe" else spec.n_trials * len(spec.seeds)
    return QueueResult(spec.name, runs, queued, location.describe())


def _enqueue(study: optuna.Study, cell: Cell) -> None:
    study.enqueue_trial(cell.params, user_attrs=cell.attrs())


def enqueue_repeats(study: optuna.Study, spec: SweepSpec, first: Cell) -> None:
    """A freshly sampled tpe point runs with the first seed; queue it for the other seeds."""
    for seed in spec.seeds[1:]:
        _enqueue(study, make_cell(spec, first.overrides, seed, first.params))


def _check_distributions(study: optuna.Study, spec: SweepSpec) -> None:
    """Optuna cannot change a parameter's distribution within a study: say so before training."""
    wanted = distributions(spec)
    for trial in study.get_trials(deepcopy=False):
        for key, dist in trial.distributions.items():
            if key in wanted:
                try:
                    optuna.distributions.check_distribution_compatibility(dist, wanted[key])
                except ValueError as exc:
                    raise ConfigError(Problem(f"tpe.{key}", spec.space[key], f"changed in a way sweep "
                                              f"{spec.name!r} cannot take ({exc}); give the sweep a "
                                              "new name")) from None


# -- trials ----------------------------------------------------------------------------------


def pop_waiting(study: optuna.Study, storage: optuna.storages.BaseStorage) -> optuna.Trial | None:
    """Take the first WAITING trial for this worker (atomically: one worker wins each trial)."""
    study_id = storage.get_study_id_from_name(study.study_name)
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                trial = optuna.Trial(study, trial_id)
                trial.set_user_attr("worker", worker_id())
                return trial
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def runnable(study: optuna.Study, spec: SweepSpec) -> int:
    """Runs a new worker could start now: queued trials plus tpe points not yet sampled."""
    trials = study.get_trials(deepcopy=False)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    if spec.mode == "tpe":
        waiting += max(0, spec.n_trials - len(sampled(trials))) * len(spec.seeds)
    return waiting


def sampled(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Trials that Optuna's sampler proposed (neither enqueued nor retries)."""
    return [t for t in trials
            if "fixed_params" not in t.system_attrs and "failed_trial" not in t.system_attrs]


def recover_stale(study: optuna.Study, storage: optuna.storages.BaseStorage) -> int:
    """Fail and queue again the RUNNING trials whose worker is dead: by Optuna's heartbeat on a
    database (its callback queues them), and by process id for workers on this machine. The new
    trial continues the same run and uses up no retry. Returns how many this machine found dead."""
    with quiet_optuna():
        optuna.storages.fail_stale_trials(study)
    study_id = storage.get_study_id_from_name(study.study_name)
    recovered = 0
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = frozen.user_attrs.get("worker")
        if worker is None:  # its worker died between taking it and signing it
            started = frozen.datetime_start
            now = datetime.now(started.tzinfo if started else None)  # storages differ on time zones
            if started is None or (now - started).total_seconds() < UNSIGNED_GRACE_S:
                continue
        elif is_alive(worker) is not False:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
        try:
            storage.set_trial_user_attr(trial_id, "outcome", "worker died")
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                requeue(study, storage.get_trial(trial_id), count=False, died=True)
                recovered += 1
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker recovered it first
    return recovered


# -- workers ---------------------------------------------------------------------------------


def worker_id() -> str:
    """``host/pid-namespace/pid``: enough to tell whether a worker on this machine is alive."""
    return f"{socket.gethostname()}/{_pid_namespace()}/{os.getpid()}"


def is_alive(worker: str) -> bool | None:
    """Whether the worker process is alive; None when it ran on another machine (or is unknown)."""
    host, _, rest = worker.partition("/")
    namespace, _, pid_text = rest.rpartition("/")
    if host != socket.gethostname() or namespace != _pid_namespace() or not pid_text.isdigit():
        return None
    return pid_alive(int(pid_text))


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        return "-"


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna without its INFO log lines and experimental-feature warnings."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield
