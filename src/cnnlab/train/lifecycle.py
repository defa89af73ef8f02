"""The life of a stored run, the same for every training path: create → per epoch → finish.

Each epoch ends in one order: early stopping decides, the checkpoint is renamed into place
(the previous one kept), then the epoch row is committed, then the line is printed and the
pruner may stop the run. A crash between checkpoint and row leaves a checkpoint one epoch ahead
of the rows; resume then takes the previous one, whose epoch is stored. The reverse, rows
without a checkpoint, cannot happen. The steps are small Keras-style callbacks
(`EpochCallback`), run by the one engine (`cnnlab.train.engine`) for a lone run, vmapped cells
and sweep trials alike; the sweep worker learns its run id from ``on_create`` the moment the run
exists.

The process that creates or takes over a run holds its fencing token (``lease``): every write
(checkpoint rename, epoch row, heartbeat, final status) checks it in the same transaction, so a
process whose run was taken over (say it was paused past the heartbeat grace) writes nothing
more. Host, pid and a heartbeat (every epoch, and from a thread while epochs train) tell others
whether the run's process is alive (`cnnlab.store.liveness`).
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console

from cnnlab.config import Experiment, TrainConfig
from cnnlab.errors import LeaseLost
from cnnlab.openmp import WAIT_POLICY
from cnnlab.store import RunRecord, RunStore
from cnnlab.store.checkpoint import save_checkpoint
from cnnlab.store.liveness import heartbeat_interval_s
from cnnlab.ticker import Ticker
from cnnlab.train.hardware import physical_cores
from cnnlab.train.progress import epoch_line

# Called after each epoch is stored with (epoch, metrics); it may raise Pruned to stop the run.
EpochHook = Callable[[int, dict[str, float]], None]


class Pruned(Exception):
    """Raised by an epoch hook (e.g. an Optuna pruner) to stop a run that is not worth finishing."""


@dataclass
class EpochEnd:
    """What callbacks see at the end of an epoch; ``stop`` is set to a final status to end the run."""

    epoch: int
    metrics: dict[str, float]
    diverged: bool = False
    stop: str | None = None


class EpochCallback:
    """A step at the end of every epoch, and one when the run ends; the base does nothing."""

    def on_epoch_end(self, run: RunLife, end: EpochEnd) -> None:
        """Called once per epoch, in the order the callbacks were given."""

    def on_run_end(self, run: RunLife, status: str) -> None:
        """Called once with the run's final status, just before it is stored."""


@dataclass
class EarlyStopping(EpochCallback):
    """Patience on a validation metric; its state is checkpointed so a resume continues it."""

    monitor: str
    patience: int
    min_delta: float
    best: float | None = None
    best_epoch: int = 0
    wait: int = 0
    enabled: bool = True  # False without a validation split

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Record this epoch; True when training should stop."""
        value = metrics[self.monitor]
        sign = -1.0 if self.monitor == "val_loss" else 1.0
        if self.best is None or sign * (value - self.best) > self.min_delta:
            self.best, self.best_epoch, self.wait = value, epoch, 0
        else:
            self.wait += 1
        return self.patience > 0 and self.wait >= self.patience

    @classmethod
    def configured(cls, train: TrainConfig, *, enabled: bool,
                   state: dict[str, Any] | None = None) -> EarlyStopping:
        """Early stopping as ``train`` sets it up (``enabled``: there is a validation split),
        continuing from a checkpoint's ``state``."""
        return cls(train.monitor, train.patience, train.min_delta, enabled=enabled, **(state or {}))

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of it."""
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def on_epoch_end(self, run: RunLife, end: EpochEnd) -> None:
        if not end.diverged and self.enabled and self.update(end.epoch, end.metrics):
            end.stop = "stopped_early"


@dataclass
class Checkpointer(EpochCallback):
    """Renames the epoch's checkpoint into place (keeping the previous one) before its row."""

    state: Callable[[int], dict[str, Any]]  # epoch -> checkpoint contents

    def on_epoch_end(self, run: RunLife, end: EpochEnd) -> None:
        if not end.diverged:  # a diverged epoch's weights are not worth resuming from
            path = run.stored.checkpoint_path(run.id)
            staged = run.stored.staged_path(path, run.lease)
            save_checkpoint(staged, self.state(end.epoch))  # written whole before the run is locked
            run.put_file(staged, path, run.stored.previous_checkpoint_path(run.id))


class StoreLogger(EpochCallback):
    """Commits the epoch's row and refreshes the run's heartbeat."""

    def on_epoch_end(self, run: RunLife, end: EpochEnd) -> None:
        run.stored.log_epoch(run.id, end.epoch, end.metrics, lease=run.lease)
        run.beat()


@dataclass
class ProgressLine(EpochCallback):
    """Prints the epoch's line (through a progress bar's log when one is shown)."""

    epochs: int
    print_line: Callable[[str], None]
    prefix: str = ""

    def on_epoch_end(self, run: RunLife, end: EpochEnd) -> None:
        self.print_line(self.prefix + epoch_line(end.epoch, self.epochs, end.metrics))


@dataclass
class Pruning(EpochCallback):
    """Hands each stored, finite epoch to a hook (a sweep's pruner) that may raise `Pruned`."""

    hook: EpochHook

    def on_epoch_end(self, run: RunLife, end: EpochEnd) -> None:
        if not end.diverged:
            self.hook(end.epoch, end.metrics)


def environment() -> tuple[str, dict[str, str]]:
    """Host description, versions of the packages that decide a run's numbers, and the OpenMP wait
    policy its threads ran with."""
    versions = {"python": platform.python_version()}
    for pkg in ("cnnlab", "torch", "torchvision", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    versions["openmp_wait_policy"] = WAIT_POLICY.describe()
    host = f"{socket.gethostname()} ({platform.machine()}, {platform.system()}, {physical_cores()} cores)"
    return host, versions


@dataclass
class RunLife:
    """One stored run while this process trains it: its id, its callbacks and its heartbeat
    (``store`` None: cells trained without a store, whose epochs only go to the callbacks)."""

    store: RunStore | None
    id: str
    callbacks: list[EpochCallback] = field(default_factory=list)
    lease: int | None = None  # this process's fencing token for the run

    @classmethod
    def create(cls, store: RunStore, exp: Experiment, *, precision: str, n_params: int, device: str,
               data_facts: dict[str, int] | None = None, sweep: str | None = None, trial: int | None = None,
               on_create: Callable[[str], None] | None = None) -> RunLife:
        """Store a new run of ``exp`` owned by this process (``data_facts``: its class count and
        split sizes); ``on_create`` gets its id at once."""
        host, versions = environment()
        run_id = store.create_run(
            name=exp.name, config=exp.resolved(), config_hash=exp.hash(),
            cell_hash=exp.hash(include_seed=False), seed=exp.seed, host=host, versions=versions,
            sweep=sweep, trial=trial,
        )
        lease = store.acquire(run_id)
        store.update_run(run_id, lease=lease, precision=precision, n_params=n_params, device=device,
                         data_facts=data_facts, pid=os.getpid(), heartbeat_at=datetime.now(UTC))
        if on_create is not None:
            on_create(run_id)
        return cls(store, run_id, lease=lease)

    @classmethod
    def take_over(cls, store: RunStore, run_id: str, **fields: Any) -> RunLife:
        """Continue a stored run in this process (resume): it becomes ``running`` and ours; its
        fencing token grows, so a process that owned it before can write nothing more."""
        host, _ = environment()
        lease = store.acquire(run_id)
        store.update_run(run_id, lease=lease, status="running", error=None, host=host, pid=os.getpid(),
                         heartbeat_at=datetime.now(UTC), **fields)
        return cls(store, run_id, lease=lease)

    def end_epoch(self, epoch: int, metrics: dict[str, float], diverged: bool = False) -> str | None:
        """Run the callbacks for one epoch; the status that ends the run, or None to go on."""
        end = EpochEnd(epoch, metrics, diverged)
        for callback in self.callbacks:
            callback.on_epoch_end(self, end)
        return "diverged" if diverged else end.stop

    @property
    def stored(self) -> RunStore:
        """The store, for callbacks that only stored runs have."""
        if self.store is None:
            raise RuntimeError("this run is not stored")
        return self.store

    def beat(self) -> None:
        """Tell the store this process is alive and training the run."""
        if self.store is not None:
            self.store.update_run(self.id, lease=self.lease, heartbeat_at=datetime.now(UTC))

    def put_file(self, staged: Path, target: Path, keep_previous: Path | None = None) -> None:
        """Rename a complete file into place (the one there kept as ``keep_previous``) only while
        this process owns the run: `RunStore.put_fenced`."""
        if self.lease is None:
            if keep_previous is not None and target.exists():
                os.replace(target, keep_previous)
            os.replace(staged, target)
            return
        self.stored.put_fenced(self.id, self.lease, staged, target, keep_previous)

    def finish(self, status: str, error: str | None, seconds: float) -> None:
        """Tell the callbacks how the run ended, then store its end and summary; the process no
        longer owns it. A callback that fails (restoring the best weights on a full disk) does not
        keep the end from being stored: its error is added to the run's."""
        failures = []
        for callback in self.callbacks:
            try:
                callback.on_run_end(self, status)
            except LeaseLost:
                raise  # another process owns the run: nothing more is written for it
            except Exception as exc:
                failures.append(str(exc) or type(exc).__name__)
        if failures:
            error = "; ".join([error, *failures] if error else failures)
        self.stored.finish(self.id, status, error, seconds, lease=self.lease)

    def record(self) -> RunRecord:
        """The run as stored now."""
        return self.stored.get_run(self.id)


def heartbeat(lives: Sequence[RunLife], interval_s: float | None = None) -> Ticker:
    """A ticker refreshing the heartbeat of ``lives`` while epochs train (a long epoch must not make
    a live run look dead); one run's missed beat does not skip the others'."""

    def beat() -> None:
        for life in lives:
            with contextlib.suppress(Exception):  # a missed beat is retried next interval
                life.beat()

    return Ticker(beat, interval_s or heartbeat_interval_s(), name="cnnlab-run-heartbeat")


def closing_line(record: RunRecord, store: RunStore, note: str | None = None) -> str:
    """The line printed when a run ends: status, epochs, time, accuracies, error, ``note`` (which
    epoch's weights were stored, with train.restore_best), where it is stored."""
    epochs = f"{record.epochs_done} epoch{'s' * (record.epochs_done != 1)}"
    parts = [f"run {record.id} {record.status} after {epochs} in {record.duration_s or 0:.1f} s"]
    if record.final_test_acc is not None:
        parts.append(f"test accuracy {100 * record.final_test_acc:.2f}%")
    if record.best_val_acc is not None:
        parts.append(f"best val accuracy {100 * record.best_val_acc:.2f}% (epoch {record.best_epoch})")
    if record.error:
        parts.append(record.error)
    if note:
        parts.append(note)
    return "; ".join(parts) + f"\nstored in {store.url}"


def print_closing(life: RunLife, console: Console, note: Callable[[RunRecord], str | None] | None = None,
                  ) -> RunRecord:
    """Print the run's closing line (``note`` adds to it from the stored run); returns the stored run."""
    record = life.record()
    text = closing_line(record, life.stored, note(record) if note is not None else None)
    console.print(text, highlight=False, soft_wrap=True, markup=False)
    return record
