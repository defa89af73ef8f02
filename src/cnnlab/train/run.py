"""Run an experiment end to end: validate, load data, build the model, fit, store every epoch."""

from __future__ import annotations

import contextlib
import math
import platform
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import torch
from rich.console import Console
from torch import nn

from cnnlab.config import Experiment, validate_experiment
from cnnlab.data import DataBundle, Split, input_shape, load_data
from cnnlab.errors import CheckpointError, ConfigError, Problem
from cnnlab.models import Summary, build_model, rewrite_for_training, summarize
from cnnlab.store import RunRecord, RunStore
from cnnlab.train.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.train.hardware import (
    busy_cpu_hint,
    physical_cores,
    resolve_channels_last,
    resolve_device,
    resolve_precision,
    use_precision,
)
from cnnlab.train.loop import Interrupted, Normalizer, StopFlag, evaluate, train_one_epoch
from cnnlab.train.losses import make_loss
from cnnlab.train.optimizers import make_optimizer
from cnnlab.train.progress import TrainingProgress, epoch_line

CHECKPOINT = "checkpoint.pt"

# Called after each epoch is stored with (epoch, metrics); it may raise Pruned to stop the run.
EpochHook = Callable[[int, dict[str, float]], None]


class Pruned(Exception):
    """Raised by an epoch hook (e.g. an Optuna pruner) to stop a run that is not worth finishing."""


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
class EarlyStopping:
    """Patience on a validation metric; its state is checkpointed so a resume continues it."""

    monitor: str
    patience: int
    min_delta: float
    best: float | None = None
    best_epoch: int = 0
    wait: int = 0

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Record this epoch; True when training should stop."""
        value = metrics[self.monitor]
        sign = -1.0 if self.monitor == "val_loss" else 1.0
        if self.best is None or sign * (value - self.best) > self.min_delta:
            self.best, self.best_epoch, self.wait = value, epoch, 0
        else:
            self.wait += 1
        return self.patience > 0 and self.wait >= self.patience

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}


@dataclass
class RunOutcome:
    """What `train_experiment` hands back: the stored run and the data description."""

    record: RunRecord
    data_description: str
    messages: list[str] = field(default_factory=list)


def environment() -> tuple[str, dict[str, str]]:
    """Host description and versions of the packages that decide a run's numbers."""
    versions = {"python": platform.python_version()}
    for pkg in ("cnnlab", "torch", "torchvision", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    host = f"{socket.gethostname()} ({platform.machine()}, {platform.system()}, {physical_cores()} cores)"
    return host, versions


def set_threads(threads: int) -> int:
    """Use ``threads`` intra-op threads, or the physical core count when 0."""
    n = threads or physical_cores()
    torch.set_num_threads(n)
    return n


def run_problems(exp: Experiment) -> list[Problem]:
    """Settings that are valid one by one but cannot run together (checked without data)."""
    problems = []
    if exp.train.patience > 0 and exp.data.val == 0:
        problems.append(Problem("train.patience", exp.train.patience,
                                "needs a validation split: set data.val > 0 or 'test'"))
    return problems


def prepare(exp: Experiment) -> Prepared:
    """Load data and build the model, raising on any bad setting before the store is touched."""
    problems = run_problems(exp)
    if problems:
        raise ConfigError(problems)
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
        source = f"{exp.data.dataset} input {'×'.join(map(str, shape))}"
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
) -> RunOutcome:
    """Train a new run of ``exp`` and store it; returns the stored run.

    ``sweep`` and ``trial`` link the run to a sweep's trial; ``on_epoch`` sees every epoch."""
    set_threads(exp.train.threads)
    prepared = prepare(exp)
    host, versions = environment()
    run_id = store.create_run(
        name=exp.name, config=exp.resolved(), config_hash=exp.hash(),
        cell_hash=exp.hash(include_seed=False), seed=exp.seed, host=host, versions=versions,
        sweep=sweep, trial=trial,
    )
    store.update_run(run_id, precision=prepared.precision, n_params=count_params(prepared.model),
                     device=device_label(prepared.device))
    return _fit(prepared, store, run_id, None, console or Console(), progress, on_epoch)


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
    ``threads`` sets the intra-op threads of this session (e.g. a sweep worker's share)."""
    record = store.get_run(ref)
    raw = dict(record.config)
    if epochs is not None:
        raw["train"] = {**raw["train"], "epochs": epochs}
    if threads is not None:
        raw["train"] = {**raw["train"], "threads": threads}
    if data_root is not None:
        raw["data"] = {**raw["data"], "root": data_root}
    exp = validate_experiment(raw)
    path = store.run_dir(record.id) / CHECKPOINT
    # A run stopped inside its first epoch has no checkpoint yet: it starts again from its seed,
    # which gives exactly the run that was cut short.
    state = load_checkpoint(path) if path.exists() or store.epochs(record.id) else None
    if state is not None and state["epoch"] >= exp.train.epochs:
        raise CheckpointError(
            f"run {record.id} already has {state['epoch']} of {exp.train.epochs} epochs; "
            f"pass -s train.epochs=N with N > {state['epoch']} to train it further"
        )
    set_threads(exp.train.threads)
    prepared = prepare(exp)
    if state is not None:
        prepared.model.load_state_dict(state["model"])
        store.truncate_epochs(record.id, state["epoch"])
    store.update_run(record.id, status="running", config=exp.resolved(), error=None,
                     device=device_label(prepared.device))
    return _fit(prepared, store, record.id, state, console or Console(), progress, on_epoch)


def _fit(
    prepared: Prepared,
    store: RunStore,
    run_id: str,
    resume_state: dict[str, Any] | None,
    console: Console,
    show_progress: bool,
    on_epoch: EpochHook | None = None,
) -> RunOutcome:
    exp, data, model = prepared.exp, prepared.data, prepared.model
    cfg = exp.train
    optimizer = make_optimizer(cfg, model.parameters())
    loss_fn = make_loss(cfg.loss)
    device = prepared.device
    normalize = Normalizer(data.mean, data.std, prepared.channels_last, device)
    generator = torch.Generator().manual_seed(exp.seed)
    early = EarlyStopping(cfg.monitor, cfg.patience, cfg.min_delta)
    start_epoch = 1
    previous_seconds = 0.0
    if resume_state is not None:
        optimizer.load_state_dict(resume_state["optimizer"])
        generator.set_state(resume_state["rng"]["shuffle"])
        torch.set_rng_state(resume_state["rng"]["torch"])
        if device.type == "cuda" and "cuda" in resume_state["rng"]:
            torch.cuda.set_rng_state(resume_state["rng"]["cuda"], device)
        early = EarlyStopping(cfg.monitor, cfg.patience, cfg.min_delta, **resume_state["early_stopping"])
        start_epoch = resume_state["epoch"] + 1
        previous_seconds = float(resume_state.get("train_seconds", 0.0))

    messages = [f"data: {data.description}",
                f"run {run_id}: {exp.model.name}, {cfg.optimizer} lr {cfg.lr:g}, {cfg.loss}, "
                f"{cfg.epochs} epochs, batch {cfg.batch_size}, {prepared.precision}"
                f"{' (auto)' if cfg.precision == 'auto' else ''}, "
                f"{'channels_last' if prepared.channels_last else 'NCHW'}, "
                + (device_label(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads")]
    if resume_state is not None:
        messages.append(f"resuming run {run_id} after epoch {start_epoch - 1}")
    if device.type == "cpu" and (hint := busy_cpu_hint(cfg.threads, torch.get_num_threads())):
        messages.append(hint)
    for line in messages:
        console.print(line, highlight=False, soft_wrap=True)

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
        with stop_on_signals(stop), TrainingProgress(console, total, show_progress) as bar:
            for epoch in range(start_epoch, cfg.epochs + 1):
                bar.start_epoch(epoch, cfg.epochs, len(train) * (epoch - start_epoch))
                epoch_start = time.perf_counter()

                def on_batch(done: int, loss: float, acc: float, t0: float = epoch_start) -> None:
                    bar.batch(done, loss, acc, done / max(time.perf_counter() - t0, 1e-9))

                result = train_one_epoch(
                    model, train.images, train.labels, batch_size=cfg.batch_size,
                    optimizer=optimizer, loss_fn=loss_fn, normalize=normalize,
                    generator=generator, precision=prepared.precision, stop=stop,
                    on_batch=on_batch,
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
                store.log_epoch(run_id, epoch, metrics)
                bar.log(epoch_line(epoch, cfg.epochs, metrics))
                if result.diverged:
                    status = "diverged"
                    error = (f"loss became {result.loss} in epoch {epoch}; stopped and kept "
                             f"{epoch} epochs (try a smaller train.lr)")
                    break
                should_stop = val is not None and early.update(epoch, metrics)
                save_checkpoint(store.run_dir(run_id) / CHECKPOINT, checkpoint_state(
                    exp, data, model, optimizer, generator, early, epoch, run_seconds, device))
                if on_epoch is not None:
                    on_epoch(epoch, metrics)
                if should_stop:
                    status = "stopped_early"
                    break
            else:
                status = "completed"
    except Pruned as exc:
        status = "pruned"
        error = f"pruned after epoch {exc}" if str(exc) else "pruned"
    except (Interrupted, KeyboardInterrupt):
        status = "interrupted"
        error = "interrupted by Ctrl-C or SIGTERM; continue with --resume " + run_id
    except BaseException as exc:
        status = "failed"
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        finish_run(store, run_id, status, error, run_seconds)
    record = store.get_run(run_id)
    console.print(closing_line(record, store), highlight=False, soft_wrap=True)
    return RunOutcome(record, data.description, messages)


def device_label(device: torch.device) -> str:
    """What a run stores as its device: the GPU's name, or ``cpu``."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def checkpoint_state(exp: Experiment, data: DataBundle, model: nn.Module, optimizer: torch.optim.Optimizer,
                     generator: torch.Generator, early: EarlyStopping, epoch: int, train_seconds: float,
                     device: torch.device) -> dict[str, Any]:
    """What a checkpoint holds after ``epoch``: weights, optimizer state, every RNG state the next
    epoch draws from, early-stopping state, and the data facts `cnnlab inspect` needs."""
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "shuffle": generator.get_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return {
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


def finish_run(store: RunStore, run_id: str, status: str, error: str | None, seconds: float) -> None:
    """Store a run's end: its status and error, duration, and the summary fields read from its
    epochs (final and best accuracies and losses, best epoch)."""
    epochs = store.epochs(run_id)
    summary: dict[str, Any] = {"epochs_done": len(epochs)}
    if epochs:
        last = epochs[-1]
        for split in ("train", "val", "test"):
            for metric in ("loss", "acc"):
                summary[f"final_{split}_{metric}"] = last.get(f"{split}_{metric}")
        with_val = [e for e in epochs if e.get("val_acc") is not None and math.isfinite(e["val_acc"])]
        if with_val:
            best = max(with_val, key=lambda e: e["val_acc"])
            summary["best_val_acc"] = best["val_acc"]
            summary["best_epoch"] = best["epoch"]
        val_losses = [e["val_loss"] for e in epochs
                      if e.get("val_loss") is not None and math.isfinite(e["val_loss"])]
        if val_losses:
            summary["best_val_loss"] = min(val_losses)
    store.update_run(run_id, status=status, error=error, finished_at=datetime.now(UTC),
                     duration_s=seconds, **summary)


def closing_line(record: RunRecord, store: RunStore) -> str:
    """The line printed when a run ends: status, epochs, time, accuracies, error, where it is stored."""
    parts = [f"run {record.id} {record.status} after {record.epochs_done} epochs "
             f"in {record.duration_s or 0:.1f} s"]
    if record.final_test_acc is not None:
        parts.append(f"test accuracy {100 * record.final_test_acc:.2f}%")
    if record.best_val_acc is not None:
        parts.append(f"best val accuracy {100 * record.best_val_acc:.2f}% (epoch {record.best_epoch})")
    if record.error:
        parts.append(record.error)
    return "; ".join(parts) + f"\nstored in {store.url}"
