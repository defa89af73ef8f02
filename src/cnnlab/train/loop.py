"""One epoch of training and one pass of evaluation over in-memory uint8 tensors."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.data.augment import Augment
from cnnlab.data.transforms import Normalizer
from cnnlab.train.losses import LossFn
from cnnlab.train.schedules import Schedule, set_lr


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
    augment: Augment | None = None,
    schedule: Schedule | None = None,
    epoch: int = 1,
) -> EpochResult:
    """Shuffle with ``generator``, then one optimizer step per batch; stops early on NaN/inf loss.

    ``augment`` transforms each uint8 batch (drawing from ``generator``) before normalisation;
    ``schedule`` sets the lr before each step of epoch ``epoch`` (1-based).
    ``on_batch(images_done, running_loss, running_acc)`` is called every few batches for progress.
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
    steps_per_epoch = -(-n // batch_size)
    scheduled = schedule is not None and not schedule.constant
    for step, begin in enumerate(range(0, n, batch_size)):
        if stop is not None and stop.requested:
            raise Interrupted
        if scheduled and (step == 0 or schedule.per_batch):  # type: ignore[union-attr]
            set_lr(optimizer, schedule.lr((epoch - 1) * steps_per_epoch + step))  # type: ignore[union-attr]
        idx = order[begin : begin + batch_size]
        batch = images[idx]
        x = normalize(augment(batch, generator) if augment is not None else batch)
        y = labels[idx]
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
