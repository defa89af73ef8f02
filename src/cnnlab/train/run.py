"""Run an experiment end to end: validate, load data, build the model, fit, store every epoch."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from rich.console import Console
from torch import nn

from cnnlab.checks import check_experiment, validate_experiment
from cnnlab.config import Experiment
from cnnlab.data import DataBundle, Split, input_shape, load_data
from cnnlab.data.augment import Augment, make_augment
from cnnlab.data.labels import data_label
from cnnlab.data.transforms import Normalizer
from cnnlab.errors import CheckpointError, LeaseLost
from cnnlab.models import Summary, build_model, rewrite_for_training, summarize
from cnnlab.models.build import resolve_channels_last
from cnnlab.store import RunRecord, RunStore
from cnnlab.store.checkpoint import load_checkpoint, load_resumable_checkpoint
from cnnlab.store.liveness import refuse_if_alive
from cnnlab.store.loading import check_checkpoint_config
from cnnlab.train.best import RESTORED_STATUSES, BestWeights, stored_model_note
from cnnlab.train.hardware import (
    busy_cpu_hint,
    physical_cores,
    resolve_device,
    resolve_precision,
    use_precision,
)
from cnnlab.train.lifecycle import (
    Checkpointer,
    EarlyStopping,
    EpochHook,
    Heartbeat,
    ProgressLine,
    Pruned,
    Pruning,
    RunLife,
    StoreLogger,
    print_closing,
)
from cnnlab.train.loop import Interrupted, StopFlag, evaluate, train_one_epoch
from cnnlab.train.losses import make_loss
from cnnlab.train.optimizers import make_optimizer
from cnnlab.train.progress import TrainingProgress
from cnnlab.train.schedules import Schedule, describe


def recipe_text(exp: Experiment, augment: Augment | None) -> str:
    """The run's training recipe in a few words ('' when it has none): schedule, augmentation,
    label smoothing, restore_best."""
    cfg = exp.train
    parts = [describe(cfg), augment.describe() if augment is not None else "",
             f"label smoothing {cfg.label_smoothing:g}" if cfg.label_smoothing else "",
             f"restore best {cfg.monitor}" if cfg.restore_best else ""]
    return ", ".join(part for part in parts if part)

# Statuses of a run that ended on its own; a failed attempt to continue one leaves it so.
FINISHED = ("completed", "stopped_early", "diverged")
# How `_fit` ends when another process took the run over (never stored).
LOST = "lost"

@dataclass
class Prepared:
    """Everything a run needs, built and checked before anything is written to the store."""

    exp: Experiment
    data: DataBundle
    model: nn.Module
    precision: str
    channels_last: bool
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


@dataclass
class RunOutcome:
    """What `train_experiment` hands back: the stored run and the data description."""

    record: RunRecord
    data_description: str
    messages: list[str] = field(default_factory=list)
    lost: bool = False  # another process took the run over; ``record`` is its state now


def set_threads(threads: int) -> int:
    """Use ``threads`` intra-op threads, or the physical core count when 0."""
    n = threads or physical_cores()
    torch.set_num_threads(n)
    return n


def prepare(exp: Experiment) -> Prepared:
    """Load data and build the model, raising on any bad setting before the store is touched."""
    check_experiment(exp)
    device = resolve_device(exp.train.device)
    data = load_data(exp.data, exp.seed)
    torch.manual_seed(exp.seed)
    model = build_model(exp.model, data.input_shape, data.num_classes).to(device)
    precision = resolve_precision(exp.train.precision, device)
    use_precision(device, precision)
    channels_last = resolve_channels_last(exp.train.memory_format, model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return Prepared(exp, data, rewrite_for_training(model), precision, channels_last, device)


def on_device(split: Split | None, device: torch.device, channels_last: bool = False) -> Split | None:
    """The split with its tensors on ``device`` (the same object on the CPU without channels_last).

    With channels_last, gathering a batch from a channels_last uint8 tensor gives a
    channels_last batch directly."""
    if split is None or (device.type == "cpu" and not channels_last):
        return split
    images = split.images.to(device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    moved = Split.__new__(Split)  # skip __post_init__'s contiguous(): keep the memory format
    moved.images, moved.labels = images, split.labels.to(device)
    return moved


def evaluation_metrics(
    model: nn.Module,
    data: DataBundle,
    splits: dict[str, Split | None],
    *,
    loss_fn: Any,
    normalize: Normalizer,
    batch_size: int,
    precision: str,
) -> dict[str, float]:
    """``val_loss``/``val_acc`` and ``test_loss``/``test_acc`` for the splits given (None: skipped;
    test evaluated once when it is the validation set), plus ``val/<domain>_acc`` … for each
    evaluation domain of a mixture, whose image-weighted means are the overall numbers."""
    metrics: dict[str, float] = {}
    domains = data.domains if len(data.domains) > 1 else []
    done: dict[int, str] = {}  # id of an evaluated split -> its name
    for name, split in splits.items():
        if split is None:
            continue
        if id(split) in done:  # data.val = "test": copy the numbers instead of evaluating again
            first = done[id(split)]
            metrics.update({name + key[len(first):]: value for key, value in list(metrics.items())
                            if key.startswith((f"{first}_", f"{first}/"))})
            continue
        if not domains:
            loss, acc = evaluate(model, split.images, split.labels, loss_fn=loss_fn, normalize=normalize,
                                 batch_size=batch_size, precision=precision)
        else:
            loss = acc = 0.0
            for domain in domains:
                part = getattr(domain, name)
                dl, da = evaluate(model, part.images, part.labels, loss_fn=loss_fn, normalize=normalize,
                                  batch_size=batch_size, precision=precision)
                metrics[f"{name}/{domain.name}_loss"], metrics[f"{name}/{domain.name}_acc"] = dl, da
                loss += dl * len(part) / len(split)
                acc += da * len(part) / len(split)
        metrics[f"{name}_loss"], metrics[f"{name}_acc"] = loss, acc
        done[id(split)] = name
    return metrics


def summarize_experiment(exp: Experiment) -> tuple[Summary, str]:
    """The model's layer-by-layer summary on the experiment's input shape, and where that shape
    came from. Known datasets need no loading; user data (imagefolder, npz) is loaded once."""
    known = input_shape(exp.data)
    if known is not None:
        shape, num_classes = known
        source = f"{data_label(exp.data.model_dump())} input {'×'.join(map(str, shape))}"
    else:
        data = load_data(exp.data, exp.seed)
        shape, num_classes = data.input_shape, data.num_classes
        source = data.description
    torch.manual_seed(exp.seed)
    model = build_model(exp.model, shape, num_classes)
    return summarize(model, shape), source


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


def train_experiment(
    exp: Experiment,
    store: RunStore,
    *,
    console: Console | None = None,
    progress: bool = True,
    on_epoch: EpochHook | None = None,
    sweep: str | None = None,
    trial: int | None = None,
    on_create: Callable[[str], None] | None = None,
) -> RunOutcome:
    """Train a new run of ``exp`` and store it; returns the stored run.

    ``sweep`` and ``trial`` link the run to a sweep's trial; ``on_create`` gets the run's id as
    soon as it is stored; ``on_epoch`` sees every epoch."""
    set_threads(exp.train.threads)
    prepared = prepare(exp)
    life = RunLife.create(store, exp, precision=prepared.precision, n_params=count_params(prepared.model),
                          device=device_label(prepared.device), sweep=sweep, trial=trial, on_create=on_create)
    return _fit(prepared, life, None, console or Console(), progress, on_epoch)


def resume_run(
    ref: str,
    store: RunStore,
    *,
    epochs: int | None = None,
    data_root: str | None = None,
    console: Console | None = None,
    progress: bool = True,
    on_epoch: EpochHook | None = None,
    threads: int | None = None,
) -> RunOutcome:
    """Continue a stored run from its last checkpoint; ``epochs`` may raise its epoch count,
    ``threads`` sets the intra-op threads of this session (e.g. a sweep worker's share).

    A run still trained by a live process is refused. The newest checkpoint that loads is used
    (the one before it when the newest is damaged); rows after it are dropped. Nothing is
    written before the run is known to be resumable."""
    record = store.get_run(ref)
    refuse_if_alive(record)
    raw = dict(record.config)
    if epochs is not None:
        raw["train"] = {**raw["train"], "epochs": epochs}
    if threads is not None:
        raw["train"] = {**raw["train"], "threads": threads}
    if data_root is not None:
        raw["data"] = {**raw["data"], "root": data_root}
    exp = validate_experiment(raw)
    paths = [store.checkpoint_path(record.id), store.previous_checkpoint_path(record.id)]
    # A run stopped inside its first epoch has no checkpoint yet: it starts again from its seed,
    # which gives exactly the run that was cut short.
    stored = store.epochs(record.id)
    state = load_resumable_checkpoint(paths, stored[-1]["epoch"] if stored else 0)
    if state is not None:
        check_checkpoint_config(state, record, paths[0])
    if state is not None and state["epoch"] >= exp.train.epochs:
        raise CheckpointError(
            f"run {record.id} already has {state['epoch']} of {exp.train.epochs} epochs; "
            f"pass -s train.epochs=N with N > {state['epoch']} to train it further"
        )
    set_threads(exp.train.threads)
    prepared = prepare(exp)
    if state is not None:
        prepared.model.load_state_dict(state["model"])
    life = RunLife(store, record.id)
    try:
        store.truncate_epochs(record.id, state["epoch"] if state is not None else 0)
        life = RunLife.take_over(store, record.id, config=exp.resolved(),
                                 device=device_label(prepared.device))
    except BaseException:
        _restore(store, record)
        raise
    return _fit(prepared, life, state, console or Console(), progress, on_epoch,
                restore=record if record.status in FINISHED else None)


def _restore(store: RunStore, record: RunRecord) -> None:
    """Put a finished run back as it was after a failed attempt to continue it: its fields, and
    its checkpoint when a newer one was renamed into place before the attempt failed."""
    if record.status not in FINISHED:
        return
    newest, previous = store.checkpoint_path(record.id), store.previous_checkpoint_path(record.id)
    if newest.exists() and previous.exists() and load_checkpoint(newest)["epoch"] > record.epochs_done:
        os.replace(previous, newest)
    store.update_run(record.id, status=record.status, error=record.error, config=record.config,
                     finished_at=record.finished_at, duration_s=record.duration_s, device=record.device)


def _fit(
    prepared: Prepared,
    life: RunLife,
    resume_state: dict[str, Any] | None,
    console: Console,
    show_progress: bool,
    on_epoch: EpochHook | None = None,
    restore: RunRecord | None = None,
) -> RunOutcome:
    exp, data, model = prepared.exp, prepared.data, prepared.model
    cfg = exp.train
    run_id = life.id
    optimizer = make_optimizer(cfg, model.parameters())
    loss_fn = make_loss(cfg.loss)
    train_loss_fn = make_loss(cfg.loss, cfg.label_smoothing)
    schedule = Schedule(cfg, math.ceil(len(data.train) / cfg.batch_size))
    augment = make_augment(exp.data, data.input_shape[-1])
    device = prepared.device
    normalize = Normalizer(data.mean, data.std, prepared.channels_last, device)
    generator = torch.Generator().manual_seed(exp.seed)
    early = EarlyStopping(cfg.monitor, cfg.patience, cfg.min_delta, enabled=data.val is not None)
    best = BestWeights(early, model.state_dict) if cfg.restore_best else None
    start_epoch = 1
    previous_seconds = 0.0
    if resume_state is not None:
        optimizer.load_state_dict(resume_state["optimizer"])
        generator.set_state(resume_state["rng"]["shuffle"])
        torch.set_rng_state(resume_state["rng"]["torch"])
        if device.type == "cuda" and "cuda" in resume_state["rng"]:
            torch.cuda.set_rng_state(resume_state["rng"]["cuda"], device)
        early = EarlyStopping(cfg.monitor, cfg.patience, cfg.min_delta, enabled=data.val is not None,
                              **resume_state["early_stopping"])
        schedule.load_state(resume_state.get("schedule"))
        if best is not None:
            best = BestWeights(early, model.state_dict)
            best.load_state(resume_state.get("best_weights"))
        start_epoch = resume_state["epoch"] + 1
        previous_seconds = float(resume_state.get("train_seconds", 0.0))

    messages = [f"data: {data.description}",
                f"run {run_id}: {exp.model.name}, {cfg.optimizer} lr {cfg.lr:g}, {cfg.loss}, "
                f"{cfg.epochs} epoch{'s' * (cfg.epochs != 1)}, batch {cfg.batch_size}, {prepared.precision}"
                f"{' (auto)' if cfg.precision == 'auto' else ''}, "
                f"{'channels_last' if prepared.channels_last else 'NCHW'}, "
                + (device_label(device) if device.type == "cuda"
                   else f"{torch.get_num_threads()} thread{'s' * (torch.get_num_threads() != 1)}")]
    if recipe := recipe_text(exp, augment):
        messages.append(f"recipe: {recipe}")
    if resume_state is not None:
        messages.append(f"resuming run {run_id} after epoch {start_epoch - 1}")
    if device.type == "cpu" and (hint := busy_cpu_hint(cfg.threads, torch.get_num_threads())):
        messages.append(hint)
    for line in messages:
        console.print(line, highlight=False, soft_wrap=True, markup=False)

    # Everything on the device once: batches are gathered there by one indexing op.
    train = on_device(data.train, device, prepared.channels_last)
    val, test = on_device(data.val, device), on_device(data.test, device)
    if data.test is data.val:
        test = val
    if len(data.domains) > 1:  # evaluated one by one (a single domain is just val and test)
        for domain in data.domains:
            domain.val, domain.test = on_device(domain.val, device), on_device(domain.test, device)
    stop = StopFlag()
    status = "running"
    error: str | None = None
    run_seconds = previous_seconds
    total = len(train) * (cfg.epochs - start_epoch + 1)
    try:
        with stop_on_signals(stop), Heartbeat([life]), TrainingProgress(console, total, show_progress) as bar:
            life.callbacks = [
                early,
                *([best] if best is not None else []),
                Checkpointer(lambda epoch: checkpoint_state(exp, data, model, optimizer, generator, early,
                                                            epoch, run_seconds, device, schedule, best)),
                StoreLogger(),
                ProgressLine(cfg.epochs, bar.log),
                *([Pruning(on_epoch)] if on_epoch is not None else []),
            ]
            for epoch in range(start_epoch, cfg.epochs + 1):
                bar.start_epoch(epoch, cfg.epochs, len(train) * (epoch - start_epoch))
                epoch_start = time.perf_counter()

                def on_batch(done: int, loss: float, acc: float, t0: float = epoch_start) -> None:
                    bar.batch(done, loss, acc, done / max(time.perf_counter() - t0, 1e-9))

                result = train_one_epoch(
                    model, train.images, train.labels, batch_size=cfg.batch_size,
                    optimizer=optimizer, loss_fn=train_loss_fn, normalize=normalize,
                    generator=generator, precision=prepared.precision, stop=stop,
                    on_batch=on_batch, augment=augment, schedule=schedule, epoch=epoch,
                )
                metrics: dict[str, float] = {
                    "train_loss": result.loss, "train_acc": result.acc,
                    "lr": optimizer.param_groups[0]["lr"],
                    "images_per_s": result.images / max(result.seconds, 1e-9),
                }
                metrics.update(evaluation_metrics(
                    model, data, {"val": val, "test": test if cfg.eval_test else None},
                    loss_fn=loss_fn, normalize=normalize, batch_size=cfg.eval_batch_size,
                    precision=prepared.precision))
                metrics["seconds"] = time.perf_counter() - epoch_start
                run_seconds += metrics["seconds"]
                if not result.diverged:
                    schedule.end_epoch(epoch, metrics)
                ended = life.end_epoch(epoch, metrics, diverged=result.diverged)
                if ended == "diverged":
                    status = "diverged"
                    error = (f"loss became {result.loss} in epoch {epoch}; stopped and kept "
                             f"{epoch} epochs (try a smaller train.lr)")
                    break
                if ended is not None:
                    status = ended
                    break
            else:
                status = "completed"
    except Pruned as exc:
        status = "pruned"
        error = f"pruned after epoch {exc}" if str(exc) else "pruned"
    except (Interrupted, KeyboardInterrupt):
        status = "interrupted"
        error = "interrupted by Ctrl-C or SIGTERM; continue with --resume " + run_id
    except LeaseLost as exc:
        status = LOST
        error = f"{exc}; this process stopped it and wrote nothing more"
    except BaseException as exc:
        status = "failed"
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if best is not None and status in RESTORED_STATUSES:
            with contextlib.suppress(LeaseLost):
                best.restore(life, status)
        _end(life, status, error, run_seconds, restore)
    if status == LOST:
        console.print(error, highlight=False, soft_wrap=True, markup=False)
        return RunOutcome(life.record(), data.description, messages, lost=True)
    record = print_closing(life, console, partial(stored_model_note, life.stored))
    return RunOutcome(record, data.description, messages)


def _end(life: RunLife, status: str, error: str | None, seconds: float, restore: RunRecord | None) -> None:
    """Store how the run ended; a finished run whose continuation failed before keeping anything
    stays as it was, and a run another process took over gets not a word more."""
    if status == LOST:
        return
    if status == "failed" and restore is not None and life.record().epochs_done == restore.epochs_done:
        _restore(life.stored, restore)
        return
    with contextlib.suppress(LeaseLost):  # failed after another process took the run over
        life.finish(status, error, seconds)


def device_label(device: torch.device) -> str:
    """What a run stores as its device: the GPU's name, or ``cpu``."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def checkpoint_state(exp: Experiment, data: DataBundle, model: nn.Module, optimizer: torch.optim.Optimizer,
                     generator: torch.Generator, early: EarlyStopping, epoch: int, train_seconds: float,
                     device: torch.device, schedule: Schedule | None = None,
                     best: BestWeights | None = None) -> dict[str, Any]:
    """What a checkpoint holds after ``epoch``: weights, optimizer state, every RNG state the next
    epoch draws from, early-stopping state, and the data facts `cnnlab inspect` needs."""
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "shuffle": generator.get_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    extra: dict[str, Any] = {}
    if schedule is not None and schedule.name == "plateau":
        extra["schedule"] = schedule.state()
    if best is not None:
        extra["best_weights"] = best.state()
    return {
        **extra,
        "epoch": epoch,
        "config": exp.resolved(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng,
        "early_stopping": early.state(),
        "train_seconds": train_seconds,
        "classes": list(data.classes),
        "input_shape": list(data.input_shape),
        "mean": list(data.mean),
        "std": list(data.std),
    }


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())
