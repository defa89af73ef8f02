"""The one run engine: the life of every run, whether a lone model, vmapped cells or sweep trials.

`Engine` owns a run's life from its first epoch to its closing line; what differs between a
lone model and K stacked cells is the `Stepper` it drives. Each epoch: the stepper trains every
cell still in training, then for each cell the engine evaluates it, ends the epoch through its
`RunLife` (early stopping decides, the checkpoint is renamed into place, the epoch row is
committed, the epoch's line is printed, the sweep's pruner may stop it) and lets cells that
ended leave the stepper. Around the loop: Ctrl-C / SIGTERM stop it between batches, a ticker
keeps every run's heartbeat while epochs train, and at the end each run is finished (or, when
a continuation of a finished run failed before keeping anything, restored) and its closing line
printed.

The state machine of one cell::

    running ─┬─▶ completed       every epoch trained
             ├─▶ stopped_early   early stopping's patience ran out
             ├─▶ diverged        the training loss became NaN/inf (the cell is frozen before that step)
             ├─▶ pruned          the sweep's pruner raised `Pruned`
             ├─▶ interrupted     Ctrl-C or SIGTERM (every cell still running)
             ├─▶ failed          any other exception (every cell still running; it is raised again)
             └─▶ lost            another process took the run over (`LeaseLost`): never stored,
                                 this process writes nothing more for it

Every status text is spelled here once (`diverged_text`, `pruned_text`, ...).

The stepper protocol (`Stepper`), with two implementations: `cnnlab.train.single.ModelStepper`
(one model on `cnnlab.train.loop`) and `cnnlab.train.vmap.VmapCells` (stacked cells under
`torch.func`). A stepper numbers its cells 0..K-1 (a lone model is cell 0) and offers:

* ``train_images``: images one epoch trains per cell (for the progress bar);
* ``train_epoch(epoch, stop, on_batch)``: one epoch for every cell still in it, as
  ``{cell: EpochResult}``; raises `Interrupted` between batches once ``stop.requested``;
* ``evaluate(cell)``: the cell's validation/test metrics (``val_loss``, ``val_acc``, ...);
* ``lr(cell)``: the learning rate the cell ended the epoch with;
* ``checkpoint(cell, epoch, early, seconds)``: the cell's checkpoint contents;
* ``recipe_callbacks(cell, early)``: the epoch steps of the cell's training recipe, which follow
  its early stopping and come before its checkpoint (the plateau schedule, restore_best);
* ``drop(cells)``: those cells ended; train them no more.

Training recipes plug in as small objects the steppers call, never as branches in a loop: each
cell has a `cnnlab.train.recipe.Recipe` (its lr schedule, asked for the lr before every step;
its batch augmentation, applied to uint8 training batches with the cell's shuffle generator; its
training loss), so a recipe works the same in a lone run, vmapped cells and sweep trials.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from rich.console import Console

from cnnlab import startup
from cnnlab.errors import LeaseLost
from cnnlab.store import RunRecord, RunStore
from cnnlab.store.checkpoint import load_checkpoint
from cnnlab.store.schema import FINISHED
from cnnlab.train.best import stored_model_note
from cnnlab.train.lifecycle import (
    Checkpointer,
    EarlyStopping,
    EpochCallback,
    EpochHook,
    ProgressLine,
    Pruned,
    Pruning,
    RunLife,
    StoreLogger,
    heartbeat,
    print_closing,
)
from cnnlab.train.loop import EpochResult, Interrupted, StopFlag
from cnnlab.train.progress import TrainingProgress

RUNNING = "running"
# How a run ends when another process took it over (never stored).
LOST = "lost"

# Called every few batches with (images done, running loss, running accuracy), for progress.
BatchHook = Callable[[int, float, float], None]


def diverged_text(loss: float, epoch: int) -> str:
    """The error of a run whose training loss became NaN/inf in ``epoch``."""
    return f"loss became {loss} in epoch {epoch}; stopped and kept {epoch} epochs (try a smaller train.lr)"


def pruned_text(exc: Pruned) -> str:
    """The error of a run a pruner stopped (`Pruned` carries the epoch)."""
    return f"pruned after epoch {exc}" if str(exc) else "pruned"


def interrupted_text(run_id: str) -> str:
    """The error of a run stopped by Ctrl-C or SIGTERM."""
    return "interrupted by Ctrl-C or SIGTERM; continue with --resume " + run_id


def lost_text(exc: LeaseLost) -> str:
    """The line printed (never stored) when another process took the run over."""
    return f"{exc}; this process stopped it and wrote nothing more"


def failed_text(exc: BaseException) -> str:
    """The error of a run that failed on an exception."""
    return f"{type(exc).__name__}: {exc}"


class Stepper(Protocol):
    """What the engine drives: one model, or K stacked cells (see the module's docstring)."""

    train_images: int

    def train_epoch(self, epoch: int, stop: StopFlag, on_batch: BatchHook | None) -> dict[int, EpochResult]:
        """Train every cell still in the stepper for one epoch."""
        ...

    def evaluate(self, cell: int) -> dict[str, float]:
        """The cell's evaluation metrics after the epoch just trained."""
        ...

    def lr(self, cell: int) -> float:
        """The learning rate the cell ended the epoch with."""
        ...

    def checkpoint(self, cell: int, epoch: int, early: EarlyStopping, seconds: float) -> dict[str, Any]:
        """The cell's checkpoint after ``epoch`` (``seconds``: its training time so far)."""
        ...

    def recipe_callbacks(self, cell: int, early: EarlyStopping) -> list[EpochCallback]:
        """The cell's recipe steps at the end of an epoch, after early stopping."""
        ...

    def drop(self, cells: Sequence[int]) -> None:
        """These cells have ended: train them no more."""
        ...


@dataclass
class CellRun:
    """One cell's run while the engine drives it, and how it ended.

    ``restore``: a finished run being continued, put back as it was when the continuation fails
    before keeping an epoch. ``hook``: the sweep's pruner, which sees every stored, finite epoch."""

    life: RunLife
    early: EarlyStopping
    seconds: float = 0.0  # training time so far (a resumed run starts from its checkpoint's)
    restore: RunRecord | None = None
    hook: EpochHook | None = None
    status: str = RUNNING
    error: str | None = None
    epochs: list[dict[str, float]] = field(default_factory=list)  # this session's epochs
    record: RunRecord | None = None  # the run as stored when the engine returned

    @property
    def lost(self) -> bool:
        """Another process took the run over."""
        return self.status == LOST


@contextlib.contextmanager
def stop_on_signals(stop: StopFlag, second_interrupt_raises: bool = True) -> Iterator[None]:
    """Ctrl-C or SIGTERM sets ``stop.requested``, so the loop stops at its next check (training:
    after the current batch); with ``second_interrupt_raises`` a second Ctrl-C interrupts at once.
    Handlers are only installed in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if second_interrupt_raises and stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.requested = True

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def restore(store: RunStore, record: RunRecord) -> None:
    """Put a finished run back as it was after a failed attempt to continue it: its fields, and
    its checkpoint when a newer one was renamed into place before the attempt failed."""
    if record.status not in FINISHED:
        return
    newest, previous = store.checkpoint_path(record.id), store.previous_checkpoint_path(record.id)
    if newest.exists() and previous.exists() and load_checkpoint(newest)["epoch"] > record.epochs_done:
        os.replace(previous, newest)
    store.update_run(record.id, status=record.status, error=record.error, config=record.config,
                     finished_at=record.finished_at, duration_s=record.duration_s, device=record.device)


class Engine:
    """Drives ``stepper``'s cells (``runs[i]`` is cell i) from ``start_epoch`` to ``epochs``.

    ``console``: where epoch lines, lost-run lines and closing lines go (None: nowhere);
    ``progress``: a progress bar over the batches; ``prefix_lines``: start each epoch line with
    the run's id (several runs print into one console)."""

    def __init__(self, stepper: Stepper, runs: Sequence[CellRun], *, epochs: int, start_epoch: int = 1,
                 console: Console | None = None, progress: bool = False, prefix_lines: bool = False) -> None:
        self.stepper, self.runs = stepper, list(runs)
        self.epochs, self.start_epoch = epochs, start_epoch
        self.console = console or Console(quiet=True)
        self.progress = progress
        self.stop = StopFlag()
        for cell, run in enumerate(self.runs):
            life = run.life
            stored = [] if life.store is None else [
                Checkpointer(lambda epoch, cell=cell, run=run: stepper.checkpoint(
                    cell, epoch, run.early, run.seconds)),
                StoreLogger(),
                ProgressLine(epochs, self._print, prefix=f"{life.id} " if prefix_lines else ""),
            ]
            pruning = [Pruning(run.hook)] if run.hook is not None else []
            recipe = stepper.recipe_callbacks(cell, run.early)
            life.callbacks = [run.early, *recipe, *stored, *pruning, *life.callbacks]

    def run(self) -> list[CellRun]:
        """Train until every cell has ended; finish each stored run and print its closing line.
        An exception other than an interruption marks the running cells failed and is raised."""
        startup.resume()  # training starts: the collector paused for the start runs again
        lives = [run.life for run in self.runs]
        total = self.stepper.train_images * max(self.epochs - self.start_epoch + 1, 0)
        try:
            with stop_on_signals(self.stop), heartbeat(lives), \
                    TrainingProgress(self.console, total, self.progress) as bar:
                self._train(bar)
        except (Interrupted, KeyboardInterrupt):
            for run in self._running():
                run.status, run.error = "interrupted", interrupted_text(run.life.id)
        except BaseException as exc:
            for run in self._running():
                run.status, run.error = "failed", failed_text(exc)
            raise
        finally:
            self._finish()
        for run in self.runs:
            if run.life.store is None:
                continue
            if run.lost:
                self._print(run.error or "")
                run.record = run.life.record()
            else:
                note = partial(stored_model_note, run.life.stored)
                run.record = print_closing(run.life, self.console, note)
        return self.runs

    def _running(self) -> list[CellRun]:
        return [run for run in self.runs if run.status == RUNNING]

    def _train(self, bar: TrainingProgress) -> None:
        for epoch in range(self.start_epoch, self.epochs + 1):
            if not self._running():
                return
            bar.start_epoch(epoch, self.epochs, self.stepper.train_images * (epoch - self.start_epoch))
            start = time.perf_counter()

            def on_batch(done: int, loss: float, acc: float, t0: float = start) -> None:
                bar.batch(done, loss, acc, done / max(time.perf_counter() - t0, 1e-9))

            trained = self.stepper.train_epoch(epoch, self.stop, on_batch)
            train_seconds = time.perf_counter() - start
            for cell, result in trained.items():
                self._end_epoch(cell, epoch, result, train_seconds)
            self.stepper.drop([cell for cell in trained if self.runs[cell].status != RUNNING])
        for run in self._running():
            run.status = "completed"

    def _end_epoch(self, cell: int, epoch: int, result: EpochResult, train_seconds: float) -> None:
        """Evaluate the cell and end its epoch through its life; a final status ends the cell."""
        run = self.runs[cell]
        eval_start = time.perf_counter()
        metrics: dict[str, float] = {
            "train_loss": result.loss, "train_acc": result.acc, "lr": self.stepper.lr(cell),
            "images_per_s": result.images / max(result.seconds, 1e-9),
        }
        metrics.update(self.stepper.evaluate(cell))
        metrics["seconds"] = train_seconds + time.perf_counter() - eval_start
        run.seconds += metrics["seconds"]
        run.epochs.append(metrics)
        try:
            ended = run.life.end_epoch(epoch, metrics, diverged=result.diverged)
        except Pruned as exc:
            run.status, run.error = "pruned", pruned_text(exc)
            return
        except LeaseLost as exc:
            run.status, run.error = LOST, lost_text(exc)
            return
        if ended == "diverged":
            run.status, run.error = "diverged", diverged_text(result.loss, epoch)
        elif ended is not None:
            run.status = ended

    def _finish(self) -> None:
        """Store how each run ended; a finished run whose continuation failed before keeping an
        epoch stays as it was, and a run another process took over gets not a word more."""
        for run in self.runs:
            life = run.life
            if run.lost or life.store is None:
                continue
            if run.status == "failed" and run.restore is not None \
                    and life.record().epochs_done == run.restore.epochs_done:
                restore(life.stored, run.restore)
                continue
            with contextlib.suppress(LeaseLost):  # failed after another process took the run over
                life.finish(run.status, run.error, run.seconds)

    def _print(self, line: str) -> None:
        self.console.print(line, highlight=False, soft_wrap=True, markup=False)
