"""Optimizers by name, built from the `train` section of an experiment."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from cnnlab.config import OPTIMIZERS, TrainConfig
from cnnlab.errors import ConfigError, Problem, one_of


def make_optimizer(cfg: TrainConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """SGD (momentum, nesterov), Adam, AdamW or RMSprop with the configured lr and weight decay."""
    name = cfg.optimizer
    if name == "sgd":
        if cfg.nesterov and cfg.momentum == 0:
            raise ConfigError(Problem("train.nesterov", True, "needs train.momentum > 0"))
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    if cfg.nesterov:
        raise ConfigError(Problem("train.nesterov", True, "applies only to train.optimizer 'sgd'"))
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "rmsprop":
        # Keras' RMSprop defaults (rho 0.9, eps 1e-7), as seed 002 used it.
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=0.9, eps=1e-7,
                                   momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ConfigError(Problem("train.optimizer", name, one_of(OPTIMIZERS)))
