"""Stochastic gradient descent with momentum, updating parameters in place as PyTorch's SGD."""

from __future__ import annotations

import numpy as np

from cnnlab.errors import ConfigError, Problem
from cnnlab.scratch.layers import Parameter


class SGD:
    """``v ← μ·v + g (+ λ·w)``, ``w ← w − lr·v`` (Nesterov: ``w ← w − lr·(g + μ·v)``)."""

    def __init__(
        self,
        params: list[Parameter],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        problems = []
        if not lr > 0:
            problems.append(Problem("lr", lr, "must be > 0"))
        if not 0 <= momentum < 1:
            problems.append(Problem("momentum", momentum, "must be in [0, 1)"))
        if weight_decay < 0:
            problems.append(Problem("weight_decay", weight_decay, "must be ≥ 0"))
        if problems:
            raise ConfigError(problems)
        self.params = list(params)
        self.lr, self.momentum, self.weight_decay, self.nesterov = (
            lr,
            momentum,
            weight_decay,
            nesterov,
        )
        self.velocity = [np.zeros_like(p.data) for p in self.params]

    def step(self) -> None:
        """Move every parameter against its gradient."""
        for p, v in zip(self.params, self.velocity, strict=True):
            grad = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            if self.momentum:
                v *= self.momentum
                v += grad
                grad = grad + self.momentum * v if self.nesterov else v
            p.data -= self.lr * grad

    def zero_grad(self) -> None:
        """Reset the gradients before the next backward pass."""
        for p in self.params:
            p.grad.fill(0)
