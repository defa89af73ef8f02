"""Loss functions by name; every loss takes raw logits and integer class targets."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F

from cnnlab.config import LOSSES
from cnnlab.errors import ConfigError, Problem, one_of

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy on logits."""
    return F.cross_entropy(logits, targets)


def mse(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error between softmax probabilities and one-hot targets.

    This is what seed 000's Keras runs compute with `loss="mse"` on a softmax output layer:
    the mean over batch and classes of (p_k − y_k)².
    """
    probs = torch.softmax(logits.float(), dim=1)
    # Not F.one_hot: it checks its input's range, a data-dependent branch torch.vmap refuses.
    classes = torch.arange(logits.shape[1], device=targets.device)
    one_hot = (targets.unsqueeze(1) == classes).to(probs.dtype)
    return F.mse_loss(probs, one_hot)


def nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of log-softmax outputs (seed 001's `F.nll_loss`).

    log_softmax is applied first, so models may return logits or log-probabilities
    (log_softmax leaves log-probabilities unchanged); on logits it equals cross-entropy.
    """
    return F.nll_loss(F.log_softmax(logits, dim=1), targets)


_LOSSES: dict[str, LossFn] = {"cross_entropy": cross_entropy, "mse": mse, "nll": nll}
assert tuple(_LOSSES) == LOSSES, "config.LOSSES and train.losses disagree"


def smoothed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, *, smoothing: float) -> torch.Tensor:
    """Cross-entropy against targets smoothed to ``1 − ε + ε/K`` for the true class and ``ε/K``
    for the others (torch's ``label_smoothing``, Keras' ``CategoricalCrossentropy(label_smoothing)``).
    log_softmax is applied first, so it also serves ``nll`` (models returning log-probabilities)."""
    return F.cross_entropy(F.log_softmax(logits, dim=1), targets, label_smoothing=smoothing)


def make_loss(name: str, label_smoothing: float = 0.0) -> LossFn:
    """The loss function called ``name``; ``label_smoothing`` > 0 (cross_entropy and nll only,
    which `cnnlab.checks` enforces) gives the smoothed loss that training minimises. Evaluation
    uses the plain loss (``label_smoothing`` 0), so validation losses stay comparable between runs."""
    if name not in _LOSSES:
        raise ConfigError(Problem("train.loss", name, one_of(LOSSES)))
    if label_smoothing > 0:
        if name == "mse":
            raise ConfigError(Problem("train.label_smoothing", label_smoothing,
                                      "applies only to train.loss 'cross_entropy' or 'nll'"))
        return functools.partial(smoothed_cross_entropy, smoothing=label_smoothing)
    return _LOSSES[name]
