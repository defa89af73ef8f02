"""Loss functions by name; every loss takes raw logits and integer class targets."""

from __future__ import annotations

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


def make_loss(name: str) -> LossFn:
    """The loss function called ``name``."""
    if name not in _LOSSES:
        raise ConfigError(Problem("train.loss", name, one_of(LOSSES)))
    return _LOSSES[name]
