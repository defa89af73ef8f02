"""One epoch of training and the evaluation of a model, over in-memory uint8 tensors."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cnnlab.data import DataBundle, Split
from cnnlab.data.augment import Augment
from cnnlab.data.transforms import Normalizer
from cnnlab.train.losses import LossFn


@dataclass
class EpochResult:
    loss: float
    acc: float
    images: int
    seconds: float
    diverged: bool




class StopFlag:
    """Set by a signal handler; checked between batches so no write is ever cut in half."""

    def __init__(self) -> None:
        self.requested = False


class Interrupted(Exception):
    """Training stopped between batches because Ctrl-C or SIGTERM was received."""


def autocast_context(precision: str, device_type: str = "cpu") -> contextlib.AbstractContextManager:
    """bf16 autocast (weights and optimizer state stay fp32) for precision 'bf16'; nothing for 'fp32'."""
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_one_epoch(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    normalize: Normalizer,
    generator: torch.Generator,
    precision: str = "fp32",
    stop: StopFlag | None = None,
    on_batch: Callable[[int, float, float], None] | None = None,
    before_step: Callable[[int], None] | None = None,
    augment: Augment | None = None,
    first_step: int = 0,
) -> EpochResult:
    """Shuffle with ``generator``, then one optimizer step per batch; stops early on NaN/inf loss.

    ``on_batch(images_done, running_loss, running_acc)`` is called every few batches for progress.
    ``before_step(first_step + i)`` is called before batch i's forward pass (a stepper sets the
    scheduled learning rate there); ``augment`` transforms each uint8 batch before normalisation,
    drawing from ``generator`` (so a resumed run draws what the uninterrupted one drew).
    """
    model.train()
    n = len(labels)
    # One permutation per epoch from the run's own generator: checkpointing its state makes
    # a resumed run draw exactly the batches the uninterrupted run would have drawn.
    device = images.device
    order = torch.randperm(n, generator=generator).to(device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    diverged = False
    start = time.perf_counter()
    report_every = max(1, 2048 // batch_size)
    for step, begin in enumerate(range(0, n, batch_size)):
        if stop is not None and stop.requested:
            raise Interrupted
        idx = order[begin : begin + batch_size]
        batch = images[idx]
        x = normalize(augment(batch, generator) if augment is not None else batch)
        y = labels[idx]
        if before_step is not None:
            before_step(first_step + step)
        with autocast_context(precision, device.type):
            logits = model(x)
            loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # A non-finite loss means the weights are already ruined: stop before stepping on them.
        if not math.isfinite(loss.item()):
            diverged = True
            loss_sum += loss.detach().double() * len(y)
            seen += len(y)
            break
        optimizer.step()
        loss_sum += loss.detach().double() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
        if on_batch is not None and (step % report_every == 0 or begin + batch_size >= n):
            on_batch(seen, loss_sum.item() / seen, correct.item() / seen)
    seconds = time.perf_counter() - start
    return EpochResult(loss_sum.item() / max(seen, 1), correct.item() / max(seen, 1), seen,
                       seconds, diverged)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    loss_fn: LossFn,
    normalize: Normalizer,
    batch_size: int = 1024,
    precision: str = "fp32",
) -> tuple[float, float]:
    """Mean loss and accuracy over a whole split, in large no-grad batches, in eval mode."""
    model.eval()
    device = images.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for begin in range(0, len(labels), batch_size):
        x = normalize(images[begin : begin + batch_size])
        y = labels[begin : begin + batch_size]
        with autocast_context(precision, device.type):
            logits = model(x)
            loss = loss_fn(logits, y)
        loss_sum += loss.double() * len(y)
        correct += (logits.argmax(1) == y).sum()
    n = max(len(labels), 1)
    return loss_sum.item() / n, correct.item() / n


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
