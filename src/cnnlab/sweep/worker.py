"""A sweep worker: take the study's waiting cells (one, or up to ``--vmap`` at once) and train,
resume or reuse each run.

Each trial is one stored run, linked both ways (trial user attribute ``run_id``; the run's
``sweep`` and ``trial``). Before training, the run store is searched by config hash: a finished
run of the same config and seed is reused, an interrupted or failed one (or one whose worker
died) is resumed from its checkpoint, so no config and seed is trained twice and no epoch is
stored twice. Every epoch's metric is reported to the trial, and the study's pruner may stop it.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console

from cnnlab.config import Experiment
from cnnlab.errors import CheckpointError, ConfigError, LeaseLost, LoadInterrupted, UntrustedCodeError
from cnnlab.store import RunRecord, RunStore
from cnnlab.store.liveness import process_gone
from cnnlab.store.schema import FINISHED, RESUMABLE
from cnnlab.sweep.cells import experiment, make_cell
from cnnlab.sweep.optuna_study import (
    enqueue_repeats,
    open_study,
    pop_waiting,
    quiet_optuna,
    recover_stale,
    sampled,
    worker_id,
)
from cnnlab.sweep.pruners import make_pruner
from cnnlab.sweep.retry import SPEC_ATTR, requeue
from cnnlab.sweep.space import suggest
from cnnlab.sweep.spec import SweepSpec
from cnnlab.sweep.storage import Location
from cnnlab.ticker import NullTicker, Ticker
from cnnlab.train.engine import stop_on_signals
from cnnlab.train.hardware import physical_cores, resolve_device
from cnnlab.train.lifecycle import Pruned
from cnnlab.train.loop import StopFlag
from cnnlab.train.run import RunOutcome, resume_run, train_sweep_cells
from cnnlab.trust import refuse_untrusted, trusting

POLL_S = 2.0
# Lines a worker prints even when quiet: it lost a run to another worker.
_notice = Console(stderr=True)


@dataclass(frozen=True)
class WorkerOptions:
    """What one worker process needs (picklable, for spawned processes)."""

    location: Location
    study: str
    threads: int = 0  # intra-op threads per worker; 0: all physical cores
    data_root: str | None = None
    verbose: bool = False  # print each run's lines (when no live view shows the sweep)
    poll_s: float = POLL_S
    vmap: int = 0  # > 1: take up to this many cells at once and train those that fit together vmapped
    # Modules a cell's model.name may import (named by the user's sweep file or --trust-code):
    # the spec comes from storage, which never decides on its own what is imported.
    trust_code: tuple[str, ...] = ()


@dataclass
class WorkerReport:
    """What one worker did, by outcome (trained, resumed, reused, pruned, failed, ...)."""

    outcomes: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False

    def add(self, outcome: str) -> None:
        """Count one trial's outcome."""
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def work(options: WorkerOptions, console: Console | None = None) -> WorkerReport:
    """Pull cells from the sweep's study until none is waiting or running (or Ctrl-C / SIGTERM).

    A worker that finds nothing to do while others still train waits: a cell whose worker dies is
    queued again and taken by whoever is still there."""
    console = console or Console(quiet=True)
    report = WorkerReport()
    stop = StopFlag()
    with quiet_optuna(), stop_on_signals(stop, second_interrupt_raises=False):
        storage = options.location.open_storage(create=False)
        study, _ = open_study(options.location, options.study, storage)
        assert storage is not None
        store = options.location.open_store()
        with contextlib.closing(store), trusting(options.trust_code):
            _loop(study, storage, store, options, console, stop, report)
        report.interrupted = report.interrupted or stop.requested
    return report


def _loop(study: optuna.Study, storage: optuna.storages.BaseStorage, store: RunStore,
          options: WorkerOptions, console: Console, stop: StopFlag, report: WorkerReport) -> None:
    """Take trials one by one until none is waiting and none is running (or a stop request)."""
    while not stop.requested:
        recover_stale(study, storage)
        spec = _current_spec(study)
        trial = pop_waiting(study, storage) or _sample(study, spec)
        if trial is None:
            if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                return
            _sleep(options.poll_s, stop)
            continue
        batch = [trial]
        while len(batch) < options.vmap and (more := pop_waiting(study, storage)) is not None:
            batch.append(more)
        outcomes = _run_group([_TrialRun(study, storage, spec, t, store, options, console, stop)
                               for t in batch])
        for outcome in outcomes:
            report.add(outcome)
        if "interrupted" in outcomes:
            report.interrupted = True
            return


def _run_group(runs: list[_TrialRun]) -> list[str]:
    """Trials taken together (one, or up to ``--vmap``): reuse or resume each as its run allows,
    then train the new runs with `train_sweep_cells`, which vmaps those of one architecture
    together (a lone trial is a group of one, trained alone); returns each trial's outcome."""
    first = runs[0]
    outcomes: dict[int, str] = {}
    fresh: list[tuple[int, Experiment]] = []
    with _holding(runs):
        for i, run in enumerate(runs):
            exp, outcome = run.prepare()
            if outcome is not None:
                outcomes[i] = outcome
            else:
                assert exp is not None
                fresh.append((i, exp))
        if not fresh:
            return [outcomes[i] for i in range(len(runs))]
        if len(runs) > 1 and resolve_device(fresh[0][1].train.device).type == "cpu":
            first.console.print("vmap on the CPU: expect it slower than one cell at a time "
                                "(measured 0.44×, BENCHMARKS.md); it pays off on a GPU",
                                highlight=False, soft_wrap=True)
        trained: list[RunOutcome | None] = [None] * len(fresh)
        try:
            trained = train_sweep_cells(
                [exp for _, exp in fresh], first.store, sweep=first.study.study_name,
                trials=[runs[i].trial.number for i, _ in fresh], console=first.console,
                on_epoch=lambda cell, epoch, metrics: runs[fresh[cell][0]].on_epoch(epoch, metrics),
                batched=True, on_create=lambda cell, run_id: runs[fresh[cell][0]].link(run_id))
        except LoadInterrupted:  # Ctrl-C / SIGTERM while their images were decoded: nothing stored
            for i, _ in fresh:
                outcomes[i] = runs[i].ended() or runs[i]._finish("interrupted", TrialState.FAIL,
                                                                  requeue_count=False)
        except ConfigError as exc:  # the same settings would fail again: no retry
            for i, _ in fresh:
                outcomes[i] = runs[i].ended() or runs[i].fail(exc, retry=False)
        except Exception as exc:
            # Cells whose runs ended earlier in the call are told as they ended, not failed with
            # another cell's error.
            for i, _ in fresh:
                outcomes[i] = runs[i].ended() or runs[i].fail(exc, retry=True)
        for (i, _), outcome in zip(fresh, trained, strict=True):
            if i not in outcomes:
                outcomes[i] = runs[i].settle(outcome)
    return [outcomes[i] for i in range(len(runs))]


def _current_spec(study: optuna.Study) -> SweepSpec:
    """The spec as last queued (re-read each trial: a re-queued, edited file applies at once)."""
    spec = SweepSpec.from_dict(study.user_attrs[SPEC_ATTR])
    study.pruner = make_pruner(spec.pruner)
    if spec.mode != "tpe":
        study.sampler = optuna.samplers.RandomSampler()  # every trial was queued with its values
    else:
        options = {"n_startup_trials": spec.n_startup_trials} if spec.n_startup_trials is not None else {}
        # constant_liar: running trials count as bad guesses, so parallel workers spread out.
        study.sampler = optuna.samplers.TPESampler(constant_liar=True, **options)
    return spec


def _sample(study: optuna.Study, spec: SweepSpec) -> optuna.Trial | None:
    """A new tpe trial while fewer than n_trials points were sampled; None otherwise."""
    if spec.mode != "tpe" or len(sampled(study.get_trials(deepcopy=False))) >= spec.n_trials:
        return None
    trial = study.ask()
    trial.set_user_attr("worker", worker_id())
    frozen = study.get_trials(deepcopy=False)
    if trial.number < len(frozen) and not sampled([frozen[trial.number]]):
        return trial  # ask() handed over a trial queued meanwhile
    earlier = [t for t in sampled(frozen) if t.number < trial.number]
    if len(earlier) >= spec.n_trials:  # another worker sampled the last point at the same time
        trial.set_user_attr("outcome", "surplus")
        study.tell(trial, state=TrialState.FAIL)
        return None
    return trial


class _TrialRun:
    """One trial: decide train / resume / reuse, run it, tell the study how it ended."""

    def __init__(self, study: optuna.Study, storage: optuna.storages.BaseStorage, spec: SweepSpec,
                 trial: optuna.Trial, store: RunStore, options: WorkerOptions, console: Console,
                 stop: StopFlag) -> None:
        self.study, self.storage, self.spec, self.trial = study, storage, spec, trial
        self.store, self.options, self.console, self.stop = store, options, console, stop
        self.linked: str | None = None
        self.epochs = 0

    def give_back(self) -> None:
        """End the trial as interrupted and queue its cell again (not counting a retry), unless it
        has already ended."""
        with contextlib.suppress(Exception):
            if self.holds_trial():
                self._finish("interrupted", TrialState.FAIL, requeue_count=False)

    def prepare(self) -> tuple[Experiment | None, str | None]:
        """Everything before a new run is trained: (the experiment, None) when a new run must be
        trained, else (None, outcome) once the trial has ended (reused, resumed, failed, …)."""
        try:
            exp = self._experiment()
            if exp is not None:
                refuse_untrusted(exp.resolved(), f"sweep {self.study.study_name}, cell "
                                 f"{self.trial.user_attrs.get('label', self.trial.number)}")
        except (ConfigError, UntrustedCodeError) as exc:
            return None, self.fail(exc, retry=False)
        if exp is None:
            return None, self._finish("removed", TrialState.FAIL)
        self.epochs = exp.train.epochs
        try:
            action, record = self._find_run(exp.hash())
            if action == "reuse":
                assert record is not None
                self.link(record.id)
                return None, self._tell(record, "reused")
            if action == "stop" or self.stop.requested:  # Ctrl-C / SIGTERM before training began
                return None, self._finish("interrupted", TrialState.FAIL, requeue_count=False)
            if record is not None:
                resumed = self._resume(record)
                if resumed is not None:
                    if resumed.lost:
                        return None, self._lost(resumed.record.id)
                    return None, self._tell(resumed.record, "resumed")
        except LoadInterrupted:
            return None, self._finish("interrupted", TrialState.FAIL, requeue_count=False)
        except ConfigError as exc:
            return None, self.fail(exc, retry=False)
        except Exception as exc:
            return None, self.fail(exc, retry=True)
        return exp, None

    def settle(self, trained: RunOutcome | None) -> str:
        """End the trial from the outcome of its new run (None: never started, after Ctrl-C or
        SIGTERM stopped the group before it)."""
        if trained is None:
            return self._finish("interrupted", TrialState.FAIL, requeue_count=False)
        if trained.lost or not self.holds_trial():  # Optuna failed it as stale: another worker took over
            return self._lost(trained.record.id)
        return self._tell(trained.record, "trained")

    def ended(self) -> str | None:
        """When training stopped on another cell's error: the trial's outcome if its run had
        already ended on its own (completed, stopped early, diverged, pruned), else None."""
        run = self._linked_run()
        if run is None or run.status not in (*FINISHED, "pruned"):
            return None
        if not self.holds_trial():  # Optuna failed it as stale: another worker took over
            return self._lost(run.id)
        return self._tell(run, "trained")

    def _experiment(self) -> Experiment | None:
        """The trial's cell as an experiment with this worker's threads and data folder; None
        when the cell was removed from the sweep file since it was queued."""
        spec, trial = self.spec, self.trial
        attrs = trial.user_attrs
        if "cell" in attrs:
            queued = self.study.user_attrs[SPEC_ATTR].get("config_hashes")
            if spec.mode != "tpe" and queued is not None and attrs["config_hash"] not in queued:
                return None
            if spec.mode != "grid":
                suggest(trial, spec)  # records the (fixed) params on the trial for Optuna's views
            overrides, seed = attrs["cell"], attrs["seed"]
        else:  # a point Optuna's sampler just proposed: it runs with the first seed
            overrides, seed = suggest(trial, spec), spec.seeds[0]
            cell = make_cell(spec, overrides, seed, trial.params)
            for key, value in cell.attrs().items():
                trial.set_user_attr(key, value)
            enqueue_repeats(self.study, spec, cell)
        machine: dict[str, Any] = {"train.threads": self.options.threads or physical_cores()}
        if self.options.data_root:
            machine["data.root"] = self.options.data_root
        return experiment(spec, overrides, seed, machine)

    def _find_run(self, config_hash: str) -> tuple[str, RunRecord | None]:
        """("reuse", run) for a finished run of this config and seed, ("resume", run) for one to
        continue, ("new", None) otherwise. A run another live worker of this sweep is training
        is waited for."""
        name = self.study.study_name
        while True:
            runs = self.store.list_runs(config_hash=config_hash)
            finished = [r for r in runs if r.status in FINISHED]
            if finished:
                return "reuse", finished[0]
            resumable, busy = [], False
            for run in runs:
                if run.status in RESUMABLE:
                    resumable.append(run)
                elif run.status == "running" and run.sweep == name and run.pid is not None \
                        and not process_gone(run):
                    busy = True  # its process is alive (or paused less than the grace period)
                elif run.status in ("running", "created") and run.sweep == name and run.trial is not None:
                    trials = self.study.get_trials(deepcopy=False)
                    owner = trials[run.trial] if run.trial < len(trials) else None
                    if owner is not None and owner.state == TrialState.RUNNING \
                            and owner.number != self.trial.number:
                        busy = True
                    else:  # its worker died: the run is ours to continue
                        resumable.append(run)
            if not busy:
                resumable.sort(key=lambda r: r.sweep != name)  # this sweep's runs first, newest first
                return ("resume", resumable[0]) if resumable else ("new", None)
            if self.stop.requested:
                return "stop", None
            _sleep(self.options.poll_s, self.stop)
            recover_stale(self.study, self.storage)

    def _resume(self, record: RunRecord) -> RunOutcome | None:
        """Continue ``record`` from its checkpoint, or from its seed in the same row when it has no
        epoch yet (its worker died in the first epoch); None (and the run marked failed) when it
        has epochs but no usable checkpoint, e.g. its worker died on another machine."""
        path = self.store.checkpoint_path(record.id)
        has_checkpoint = path.is_file() or self.store.previous_checkpoint_path(record.id).is_file()
        if not has_checkpoint and self.store.epochs(record.id):
            self._unusable(record, f"no checkpoint at {path}")
            return None
        for epoch in self.store.epochs(record.id):
            self._report(epoch["epoch"], epoch)
        self.store.update_run(record.id, sweep=self.study.study_name, trial=self.trial.number)
        self.link(record.id)
        try:
            return resume_run(
                record.id, self.store, data_root=self.options.data_root, console=self.console,
                progress=False, on_epoch=self.on_epoch,
                threads=self.options.threads or physical_cores(),
            )
        except CheckpointError as exc:
            self._unusable(record, str(exc))
            self.linked = None
            return None

    def _unusable(self, record: RunRecord, why: str) -> None:
        if record.status != "failed":  # a failed run keeps the traceback of its failure
            self.store.update_run(record.id, status="failed", error=f"cannot be resumed: {why}")

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        try:
            self._report(epoch, metrics)
            # The last epoch is never pruned: the run is complete by then.
            prune = epoch < self.epochs and self.trial.should_prune()
        except optuna.exceptions.UpdateFinishedTrialError:
            # Optuna failed the trial while this worker was silent (paused): its cell is queued
            # again and its run is another worker's to continue. Stop it, writing nothing more.
            raise LeaseLost(f"run {self.linked} (trial {self.trial.number}) was taken over by another "
                            "worker after this one's heartbeat stopped") from None
        if prune:
            raise Pruned(epoch)

    def _report(self, epoch: int, metrics: dict[str, Any]) -> None:
        value = metrics.get(self.spec.metric)
        if value is not None and math.isfinite(value):
            self.trial.report(float(value), epoch)

    def link(self, run_id: str) -> None:
        self.linked = run_id
        self.trial.set_user_attr("run_id", run_id)

    def _linked_run(self) -> RunRecord | None:
        """The run this trial trains, known from the moment it was stored."""
        return self.store.get_run(self.linked) if self.linked is not None else None

    def _tell(self, record: RunRecord, outcome: str) -> str:
        """Finish the trial from its run: interrupted runs are queued again, pruned ones PRUNED,
        the rest COMPLETE with the metric of the last epoch (the worst value if not finite)."""
        self.trial.set_user_attr("run_id", record.id)
        self.trial.set_user_attr("run_status", record.status)
        if record.status == "interrupted":
            return self._finish("interrupted", TrialState.FAIL, requeue_count=False)
        if record.status == "pruned":
            return self._finish("pruned", TrialState.PRUNED)
        epochs = self.store.epochs(record.id)
        value = epochs[-1].get(self.spec.metric) if epochs else None
        if value is None or not math.isfinite(value):
            value = -math.inf if self.spec.direction == "maximize" else math.inf
        self.trial.set_user_attr("outcome", outcome)
        self.study.tell(self.trial, float(value))
        return outcome

    def holds_trial(self) -> bool:
        """Whether the trial is still RUNNING (Optuna fails it when this worker's heartbeat stops)."""
        return self.study.get_trials(deepcopy=False)[self.trial.number].state == TrialState.RUNNING

    def _lost(self, run_id: str) -> str:
        """Another worker took this trial's run over while this one was paused: say so in one
        line (the run's own line when this worker prints its runs) and leave the run, and the
        trial Optuna already failed, as they are."""
        if self.console.quiet:
            _notice.print(f"worker {worker_id()}: run {run_id} (trial {self.trial.number}) was "
                          "taken over by another worker; stopped it and wrote nothing more",
                          highlight=False, soft_wrap=True)
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            if self.holds_trial():
                self._finish("lost", TrialState.FAIL)
        return "lost"

    def fail(self, exc: BaseException, retry: bool) -> str:
        text = "".join(traceback.format_exception(exc))
        run = self._linked_run()
        if run is not None and run.pid in (None, os.getpid()):  # not a run another worker took over
            self.store.update_run(run.id, status="failed", error=text)  # with its whole traceback
            self.trial.set_user_attr("run_id", run.id)
        self.trial.set_user_attr("error", text[-4000:])
        self.console.print(f"trial {self.trial.number} failed: {type(exc).__name__}: {exc}",
                           highlight=False, soft_wrap=True, markup=False)
        return self._finish("failed", TrialState.FAIL, requeue_count=True if retry else None)

    def _finish(self, outcome: str, state: TrialState, requeue_count: bool | None = None) -> str:
        """End the trial in ``state``; ``requeue_count`` True/False queues the cell again
        (counting a retry, or not), None does not."""
        self.trial.set_user_attr("outcome", outcome)
        self.study.tell(self.trial, state=state)
        if requeue_count is not None:
            requeue(self.study, self.study.get_trials(deepcopy=False)[self.trial.number],
                    count=requeue_count)
        return outcome


@contextlib.contextmanager
def _holding(runs: list[_TrialRun]) -> Iterator[None]:
    """While trials are worked on: Optuna's heartbeat for each, and on Ctrl-C outside training
    or a bug in this worker, every trial not yet ended given back unharmed."""
    first = runs[0]
    study_id = first.storage.get_study_id_from_name(first.study.study_name)
    with contextlib.ExitStack() as beats:
        for run in runs:
            trial_id = first.storage.get_trial_id_from_study_id_trial_number(study_id, run.trial.number)
            beats.enter_context(_heartbeat(first.storage, trial_id))
        try:
            yield
        except BaseException:
            for run in runs:
                run.give_back()
            raise


def _heartbeat(storage: optuna.storages.BaseStorage, trial_id: int) -> NullTicker:
    """Optuna's heartbeat for the trial while it runs (database storages), so a dead worker's
    trial is found stale and retried."""
    interval = storage.get_heartbeat_interval() if isinstance(storage, optuna.storages.RDBStorage) else None
    if not interval:
        return NullTicker()
    return Ticker(lambda: storage.record_heartbeat(trial_id), interval, name="cnnlab-heartbeat", first=True)


def _sleep(seconds: float, stop: StopFlag) -> None:
    end = time.monotonic() + seconds
    while not stop.requested and time.monotonic() < end:
        time.sleep(min(0.2, seconds))
