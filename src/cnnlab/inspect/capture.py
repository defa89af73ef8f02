"""Every layer's output for one input, captured with forward hooks, optionally with pooling skipped."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

# Windowed pooling layers: skipped in the "without pooling" view. Adaptive and global pools are
# not skipped, and a model that pools with torch.nn.functional cannot have its pooling skipped.
POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.LPPool2d, nn.FractionalMaxPool2d)
# Layers that are the identity at inference: their output would repeat the previous figure.
_IDENTITY = (nn.modules.dropout._DropoutNd, nn.Identity)


@dataclass
class LayerOutput:
    """One call of one leaf module whose output is an image-shaped C×H×W tensor."""

    name: str  # module name; "relu#2" for a module's second call
    module: nn.Module
    output: Tensor  # C×H×W, for the first image of the batch

    @property
    def title(self) -> str:
        """``conv2 · 64×14×14``."""
        return f"{self.name} · {'×'.join(str(d) for d in self.output.shape)}"


class _Stop(Exception):
    """Raised by a hook to end a forward pass once there are no more feature maps to see."""


def leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every module without children, in registration order."""
    return [(name, m) for name, m in model.named_modules() if name and not any(m.children())]


def layer_outputs(model: nn.Module, x: Tensor, *, skip_pooling: bool = False) -> list[LayerOutput]:
    """Run ``x`` (1×C×H×W, normalised) through ``model`` in eval mode and return the C×H×W output
    of every leaf-module call, in call order, skipping dropout and identity layers.

    With ``skip_pooling`` the windowed pooling layers pass their input through unchanged (the same
    filters applied without pooling) and the pass stops at the first layer that needs a flat or
    fixed-size input (Flatten, Linear, a non-image input, or any shape error further on).
    """
    outputs: list[LayerOutput] = []
    calls: dict[str, int] = {}

    def before(module: nn.Module, args: tuple) -> None:
        flat = isinstance(module, nn.Flatten | nn.Linear)
        image = bool(args) and isinstance(args[0], Tensor) and args[0].dim() == 4
        if flat or not image:
            raise _Stop

    def after(name: str) -> Callable[..., Tensor | None]:
        def hook(module: nn.Module, args: tuple, output: object) -> Tensor | None:
            if skip_pooling and isinstance(module, POOLING):
                return args[0]
            calls[name] = calls.get(name, 0) + 1
            if isinstance(output, Tensor) and output.dim() == 4 and not isinstance(module, _IDENTITY):
                label = name if calls[name] == 1 else f"{name}#{calls[name]}"
                outputs.append(LayerOutput(label, module, output[0].detach().float().clone()))
            return None

        return hook

    handles = []
    for name, module in leaf_modules(model):
        if skip_pooling:
            handles.append(module.register_forward_pre_hook(before))
        handles.append(module.register_forward_hook(after(name)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    except _Stop:
        pass
    except RuntimeError:
        if not skip_pooling:
            raise  # without pooling the later layers may not fit: keep what ran
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return outputs


def conv_layers(model: nn.Module, x: Tensor | None = None) -> list[tuple[str, nn.Conv2d]]:
    """The model's Conv2d layers: in call order when an input ``x`` is given, else as registered."""
    convs = [(name, m) for name, m in leaf_modules(model) if isinstance(m, nn.Conv2d)]
    if x is None:
        return convs
    order = {id(layer.module): i for i, layer in reversed(list(enumerate(layer_outputs(model, x))))}
    called = [c for c in convs if id(c[1]) in order]
    return sorted(called, key=lambda c: order[id(c[1])])
