"""Train and evaluate a scratch network: minibatch SGD on in-memory arrays."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from cnnlab.errors import ConfigError, Problem
from cnnlab.scratch.layers import Module
from cnnlab.scratch.ops import softmax_cross_entropy
from cnnlab.scratch.optim import SGD


@dataclass(frozen=True)
class EpochStats:
    """What one epoch of :func:`fit` measured (validation fields are None without val data)."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float | None
    val_acc: float | None
    seconds: float


class Evaluation(NamedTuple):
    """Mean cross-entropy and accuracy (fraction correct) on a data set."""

    loss: float
    accuracy: float


def as_batch(x: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
    """Images as floats: uint8 pixels are scaled to [0, 1], other arrays only cast."""
    if x.dtype == np.uint8:
        return x.astype(dtype) * np.asarray(1 / 255, dtype=dtype)
    return x.astype(dtype, copy=False)


def _check_data(x: np.ndarray, y: np.ndarray, name: str) -> None:
    if np.ndim(x) != 4:
        raise ConfigError(Problem(name, np.shape(x), "must be images (N, C, H, W)"))
    if np.shape(y) != (len(x),):
        raise ConfigError(Problem(f"{name} labels", np.shape(y), f"must be ({len(x)},) like {name}"))


def predict(net: Module, x: np.ndarray, batch_size: int = 1000, dtype: Any = np.float32) -> np.ndarray:
    """Logits (N, classes) in evaluation mode."""
    was_training = net.training
    net.eval()
    try:
        return np.concatenate(
            [net(as_batch(x[i : i + batch_size], dtype)) for i in range(0, len(x), batch_size)]
        )
    finally:
        net.train(was_training)


def evaluate(
    net: Module, x: np.ndarray, y: np.ndarray, batch_size: int = 1000, dtype: Any = np.float32
) -> Evaluation:
    """Mean loss and accuracy of ``net`` on (x, y) in evaluation mode."""
    _check_data(x, y, "x")
    logits = predict(net, x, batch_size, dtype)
    loss = float(softmax_cross_entropy(logits, np.asarray(y)))
    return Evaluation(loss, float((logits.argmax(axis=1) == y).mean()))


def fit(
    net: Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 1,
    lr: float = 0.01,
    momentum: float = 0.9,
    batch_size: int = 64,
    weight_decay: float = 0.0,
    seed: int = 0,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    dtype: Any = np.float32,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> list[EpochStats]:
    """Train ``net`` with softmax cross-entropy and SGD with momentum; return per-epoch stats.

    ``x`` is (N, C, H, W), uint8 (scaled to [0, 1] per batch) or float; ``y`` integer labels.
    The same seed gives the same shuffles, hence the same result.
    """
    _check_data(x, y, "x")
    if epochs < 1 or batch_size < 1:
        raise ConfigError(
            Problem(
                "epochs" if epochs < 1 else "batch_size",
                min(epochs, batch_size),
                "must be an integer ≥ 1",
            )
        )
    if (x_val is None) != (y_val is None):
        raise ConfigError(Problem("x_val", None if x_val is None else "given", "needs y_val too"))
    optimizer = SGD(net.parameters(), lr, momentum, weight_decay)
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    history = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        net.train()
        order = rng.permutation(len(x))
        loss_sum, correct = 0.0, 0
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            logits = net(as_batch(x[idx], dtype))
            loss, loss_backward = softmax_cross_entropy.vjp(logits, y[idx])
            optimizer.zero_grad()
            net.backward(loss_backward(1.0))
            optimizer.step()
            # Sums, not means: the last batch may be smaller.
            loss_sum += float(loss) * len(idx)
            correct += int((logits.argmax(axis=1) == y[idx]).sum())
        val = evaluate(net, x_val, y_val, dtype=dtype) if x_val is not None else None
        stats = EpochStats(
            epoch,
            loss_sum / len(x),
            correct / len(x),
            val.loss if val else None,
            val.accuracy if val else None,
            time.perf_counter() - start,
        )
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
    return history
