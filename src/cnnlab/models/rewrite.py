"""Exact speed rewrites of a model built for training: max-pool before ReLU, ReLU in place.

Max-pooling commutes with a clamp-like activation f (ReLU, ReLU6, Hardtanh: the identity between
two bounds, constant with zero gradient outside them): max(f(x)) = f(max(x)), and the gradient
reaches the same input element either way, so outputs and gradients are bit for bit the same while
the activation runs on a quarter of the elements. Strictly increasing activations (leaky ReLU with
a slope, ELU, SELU, sigmoid, tanh) also commute on outputs, but rounding can make two inputs of a
window equal after the activation and the gradient then goes to a different one of them, so they
are left as written. A clamp-like activation runs in place when the layer before it does not
keep its own output for the backward pass (convolution, linear, batch norm, max-pool); the
torch.fx path only reorders.

Parameters are shared with the model given and every module keeps its name, so ``state_dict()``
keys are unchanged: weights saved from the rewritten model load into the model as written.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from cnnlab.models.layers import GlobalMaxPool

MAX_POOLS: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d, GlobalMaxPool,
)
# Layers whose backward pass needs their input (or nothing), never their output: an activation
# right after one of them may overwrite that output.
KEEPS_NO_OUTPUT: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
)
_MAX_POOL_FUNCTIONS: tuple[Callable[..., torch.Tensor], ...] = (
    F.max_pool1d, F.max_pool2d, F.max_pool3d, torch.max_pool1d, torch.max_pool2d, torch.max_pool3d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
)
_RELU_FUNCTIONS: tuple[Callable[..., torch.Tensor], ...] = (F.relu, torch.relu, F.relu6, F.hardtanh)


def is_clamp_activation(module: nn.Module) -> bool:
    """True for activations that are the identity between bounds and constant outside them."""
    if isinstance(module, nn.LeakyReLU):
        return module.negative_slope == 0
    return isinstance(module, (nn.ReLU, nn.ReLU6, nn.Hardtanh))


def _is_max_pool(module: nn.Module) -> bool:
    return isinstance(module, MAX_POOLS) and not getattr(module, "return_indices", False)


def _in_place(module: nn.Module) -> nn.Module:
    """A copy of an activation that runs in place (the module itself when it cannot)."""
    if not hasattr(module, "inplace") or module.inplace:
        return module
    twin = copy.copy(module)
    twin.inplace = True
    return twin


def _rewrite_sequential(model: nn.Sequential) -> nn.Sequential:
    """Pools moved in front of the clamp-like activations before them, children rewritten, and
    activations after a layer that keeps no output made in-place; the same names throughout."""
    items = [(name, rewrite_for_training(child)) for name, child in model.named_children()]
    i = 0
    while i < len(items) - 1:
        if is_clamp_activation(items[i][1]) and _is_max_pool(items[i + 1][1]):
            items[i], items[i + 1] = items[i + 1], items[i]
            i += 2
        else:
            i += 1
    for i in range(1, len(items)):
        name, module = items[i]
        if isinstance(items[i - 1][1], KEEPS_NO_OUTPUT) and is_clamp_activation(module):
            items[i] = (name, _in_place(module))
    return nn.Sequential(OrderedDict(items)).train(model.training)


def _is_clamp_node(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return is_clamp_activation(modules[str(node.target)])
    if node.op == "call_function" and node.target in _RELU_FUNCTIONS:
        return not node.kwargs.get("inplace", False) and len(node.args) == 1
    return node.op == "call_method" and node.target == "relu"


def _is_max_pool_node(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return _is_max_pool(modules[str(node.target)])
    return (node.op == "call_function" and node.target in _MAX_POOL_FUNCTIONS
            and not node.kwargs.get("return_indices", False))


def _rewrite_traced(model: nn.Module) -> nn.Module:
    """A torch.fx rewrite of a user's module: every clamp-like activation whose only input and
    only user are plain tensors flowing into a max-pool is moved behind that pool. The model
    itself when it cannot be traced, nothing applies, or its state_dict keys would change."""
    try:
        traced = fx.symbolic_trace(model)
    except Exception:  # control flow on values, unsupported ops: left as written
        return model
    modules = dict(traced.named_modules())
    moved = 0
    for act in list(traced.graph.nodes):
        if not _is_clamp_node(act, modules) or len(act.users) != 1 or not act.args:
            continue
        source, pool = act.args[0], next(iter(act.users))
        if (not isinstance(source, fx.Node) or len(source.users) != 1
                or not _is_max_pool_node(pool, modules) or pool.args[0] is not act):
            continue
        pool.replace_all_uses_with(act)
        pool.update_arg(0, source)
        act.update_arg(0, pool)
        pool.append(act)
        moved += 1
    if not moved:
        return model
    traced.graph.lint()
    traced.recompile()
    if list(traced.state_dict()) != list(model.state_dict()):
        return model
    return traced


def rewrite_for_training(model: nn.Module) -> nn.Module:
    """``model`` with the exact rewrites applied (see the module docstring); a plain
    nn.Sequential stays one, other modules with children go through torch.fx where they trace."""
    if type(model) is nn.Sequential:
        return _rewrite_sequential(model)
    if not any(True for _ in model.children()):
        return model
    return _rewrite_traced(model)

