"""Optimizers by name, built from the `train` section of an experiment."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from cnnlab.config import TrainConfig


def make_optimizer(cfg: TrainConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """SGD (momentum, nesterov), Adam, AdamW or RMSprop with the configured lr and weight decay.

    ``cfg`` comes from a checked experiment (`cnnlab.checks`), which refuses option
    combinations an optimizer does not take (nesterov without momentum or with another one)."""
    name = cfg.optimizer
    if name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    # rmsprop, with Keras' defaults (rho 0.9, eps 1e-7), as seed 002 used it.
    return torch.optim.RMSprop(params, lr=cfg.lr, alpha=0.9, eps=1e-7,
                               momentum=cfg.momentum, weight_decay=cfg.weight_decay)
