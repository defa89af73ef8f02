"""Intermediate outputs of any model by layer name, so callers need not reach into internals."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def feature_maps(model: nn.Module, x: Tensor, layers: list[str] | None = None) -> dict[str, Tensor]:
    """Run ``x`` through ``model`` in eval mode without gradients; return the outputs of the
    named modules (default: every leaf module) keyed by name in call order. A name not in the
    model is a KeyError listing the valid ones."""
    modules = dict(model.named_modules())
    if layers is None:
        layers = [name for name, m in modules.items() if name and not any(m.children())]
    unknown = [name for name in layers if name not in modules]
    if unknown:
        valid = ", ".join(name for name in modules if name)
        raise KeyError(f"no layer {', '.join(unknown)} in the model; layers: {valid}")
    outputs: dict[str, Tensor] = {}

    def keep(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            outputs[name] = output.detach()

        return hook

    handles = [modules[name].register_forward_hook(keep(name)) for name in layers]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return outputs
