"""A functional optimizer for stacked cells: K models' parameters ``{name: [K, ...]}`` stepped at once.

`StackedOptimizer` steps every cell of a vmapped group with its own learning rate, momentum,
weight decay and nesterov, following `torch.optim`'s single-tensor formulas for SGD (dampening 0),
Adam, AdamW and RMSprop (uncentred), and exports a cell's state as `torch.optim` holds it, so a
vmapped cell's checkpoint resumes as a separate run. The ``*_update`` functions are the formulas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from cnnlab.errors import VmapUnsupported

VMAP_OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


def _cells(values: Tensor, like: Tensor) -> Tensor:
    """Per-cell values of shape [K] as [K, 1, ...] in ``like``'s dtype, to broadcast over a
    stacked [K, ...] tensor."""
    out = values.to(like.dtype) if values.dtype != torch.bool else values
    return out.view(-1, *([1] * (like.ndim - 1)))


def sgd_update(
    param: Tensor,
    grad: Tensor,
    momentum_buffer: Tensor | None,
    *,
    lr: Tensor,
    momentum: Tensor | None = None,
    weight_decay: Tensor | None = None,
    nesterov: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """One `torch.optim.SGD` step (dampening 0) of stacked [K, ...] ``param``; hyperparameters
    are per-cell [K] tensors (None: zero / off for every cell). The first step's momentum buffer
    is the gradient itself, as in torch. Returns the new parameter and momentum buffer."""
    d_p = grad if weight_decay is None else grad + _cells(weight_decay, param) * param
    buf = None
    if momentum is not None:
        m = _cells(momentum, param)
        buf = d_p.clone() if momentum_buffer is None else momentum_buffer * m + d_p
        d_p = buf if nesterov is None else torch.where(_cells(nesterov, param), d_p + m * buf, buf)
    return param - _cells(lr, param) * d_p, buf


def adam_update(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: int,
    *,
    lr: Tensor,
    weight_decay: Tensor | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    decoupled: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """One `torch.optim.Adam` (``decoupled``: `AdamW`) step number ``step`` (1-based) of
    stacked [K, ...] ``param`` with per-cell [K] ``lr`` and ``weight_decay``: L2 added to the
    gradient (Adam) or ``param *= 1 - lr·wd`` first (AdamW), bias-corrected moments, ``eps`` added
    to the corrected square root. Returns the new parameter, exp_avg and exp_avg_sq."""
    beta1, beta2 = betas
    if weight_decay is not None:
        if decoupled:
            param = param * _cells(1 - lr * weight_decay, param)
        else:
            grad = grad + _cells(weight_decay, param) * param
    exp_avg = exp_avg.lerp(grad, 1 - beta1)
    exp_avg_sq = torch.addcmul(exp_avg_sq * beta2, grad, grad, value=1 - beta2)
    bias_correction1 = 1 - beta1**step
    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
    step_size = _cells(-(lr / bias_correction1), param)
    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    return param + step_size * exp_avg / denom, exp_avg, exp_avg_sq


def rmsprop_update(
    param: Tensor,
    grad: Tensor,
    square_avg: Tensor,
    momentum_buffer: Tensor | None,
    *,
    lr: Tensor,
    momentum: Tensor | None = None,
    weight_decay: Tensor | None = None,
    alpha: float = 0.99,
    eps: float = 1e-8,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """One (uncentred) `torch.optim.RMSprop` step of stacked [K, ...] ``param`` with per-cell
    [K] ``lr``, ``momentum`` and ``weight_decay``; cells with momentum 0 take torch's
    no-momentum path. Returns the new parameter, square_avg and momentum buffer."""
    if weight_decay is not None:
        grad = grad + _cells(weight_decay, param) * param
    square_avg = torch.addcmul(square_avg * alpha, grad, grad, value=1 - alpha)
    avg = square_avg.sqrt().add_(eps)
    neg_lr = _cells(-lr, param)
    plain = param + neg_lr * grad / avg
    if momentum is None:
        return plain, square_avg, None
    m = _cells(momentum, param)
    buf = momentum_buffer * m + grad / avg if momentum_buffer is not None else grad / avg
    return torch.where(m > 0, param + neg_lr * buf, plain), square_avg, buf


class StackedOptimizer:
    """A functional optimizer over stacked parameters ``{name: [K, ...]}``, K cells each with
    its own lr, momentum, weight decay and nesterov taken from its `torch.optim` param group
    (as `make_optimizer` builds it); betas, eps and alpha must be equal across cells."""

    def __init__(self, kind: str, groups: Sequence[Mapping[str, Any]], device: torch.device | str = "cpu"):
        if kind not in VMAP_OPTIMIZERS:
            raise VmapUnsupported(f"optimizer {kind!r} has no vmapped version")
        self.kind = kind
        self.groups = [dict(g) for g in groups]

        def per_cell(key: str, dtype: torch.dtype = torch.float64) -> Tensor:
            return torch.tensor([g.get(key, 0) for g in groups], dtype=dtype, device=device)

        self.lr = per_cell("lr")
        self.momentum = per_cell("momentum")
        self.weight_decay = per_cell("weight_decay")
        self.nesterov = per_cell("nesterov", torch.bool)
        for key in ("betas", "eps", "alpha"):
            if len({str(g.get(key)) for g in groups}) > 1:
                raise VmapUnsupported(f"optimizer {key} differs between cells")
        first = groups[0]
        self.betas: tuple[float, float] = tuple(first.get("betas", (0.9, 0.999)))  # type: ignore[assignment]
        self.eps = float(first.get("eps", 1e-8))
        self.alpha = float(first.get("alpha", 0.99))
        self.steps = 0
        self.state: dict[str, dict[str, Tensor]] = {}

    def _uses(self, key: str) -> bool:
        # From the Python copies of the groups: no device sync per step.
        return any(group.get(key, 0) for group in self.groups)

    def step(self, params: Mapping[str, Tensor], grads: Mapping[str, Tensor],
             mask: Tensor | None = None) -> dict[str, Tensor]:
        """New parameters after one step; cells where the bool [K] ``mask`` is False keep their
        parameters and optimizer state unchanged."""
        self.steps += 1
        momentum = self.momentum if self._uses("momentum") else None
        weight_decay = self.weight_decay if self._uses("weight_decay") else None
        nesterov = self.nesterov if self._uses("nesterov") else None
        out: dict[str, Tensor] = {}
        for name, param in params.items():
            grad = grads[name]
            state = self.state.setdefault(name, {})
            new_state: dict[str, Tensor | None]
            if self.kind == "sgd":
                new, buf = sgd_update(param, grad, state.get("momentum_buffer"), lr=self.lr,
                                      momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
                new_state = {"momentum_buffer": buf}
            elif self.kind in ("adam", "adamw"):
                new, exp_avg, exp_avg_sq = adam_update(
                    param, grad, state.get("exp_avg", torch.zeros_like(param)),
                    state.get("exp_avg_sq", torch.zeros_like(param)), self.steps, lr=self.lr,
                    weight_decay=weight_decay, betas=self.betas, eps=self.eps,
                    decoupled=self.kind == "adamw")
                new_state = {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
            else:
                new, square_avg, buf = rmsprop_update(
                    param, grad, state.get("square_avg", torch.zeros_like(param)),
                    state.get("momentum_buffer"), lr=self.lr, momentum=momentum,
                    weight_decay=weight_decay, alpha=self.alpha, eps=self.eps)
                new_state = {"square_avg": square_avg, "momentum_buffer": buf}
            keep = None if mask is None else _cells(mask, param)
            out[name] = new if keep is None else torch.where(keep, new, param)
            for key, value in new_state.items():
                if value is None:
                    continue
                old = state.get(key)
                state[key] = value if keep is None or old is None else torch.where(keep, value, old)
        return out

    def select(self, index: Tensor) -> None:
        """Keep only the cells at ``index`` (positions in the stack), in that order."""
        index = index.to(self.lr.device)
        self.lr, self.momentum = self.lr[index], self.momentum[index]
        self.weight_decay, self.nesterov = self.weight_decay[index], self.nesterov[index]
        self.groups = [self.groups[i] for i in index.tolist()]
        for state in self.state.values():
            for key, value in state.items():
                state[key] = value[index.to(value.device)]

    def torch_state(self, position: int,
                    params: Sequence[tuple[str, nn.Parameter]]) -> dict[str, dict[str, Tensor]]:
        """The state `torch.optim` would hold for the cell at ``position``, keyed by the
        cell's own parameter names; ``params`` are that cell's named parameters."""
        out: dict[str, dict[str, Tensor]] = {}
        group = self.groups[position]
        for name, _ in params:
            state = self.state.get(name, {})
            entry: dict[str, Tensor] = {}
            if self.kind == "sgd":
                if group["momentum"] != 0 and "momentum_buffer" in state:
                    entry["momentum_buffer"] = state["momentum_buffer"][position].clone()
            else:
                entry["step"] = torch.tensor(float(self.steps), dtype=torch.float32)
                if self.kind in ("adam", "adamw"):
                    entry["exp_avg"] = state["exp_avg"][position].clone()
                    entry["exp_avg_sq"] = state["exp_avg_sq"][position].clone()
                else:
                    entry["square_avg"] = state["square_avg"][position].clone()
                    if group["momentum"] > 0:
                        entry["momentum_buffer"] = state["momentum_buffer"][position].clone()
            if entry and self.steps > 0:
                out[name] = entry
        return out
