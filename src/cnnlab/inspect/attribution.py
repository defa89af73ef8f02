"""Where a model looks: Grad-CAM of a conv layer and input saliency through Captum, at the input's size."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from cnnlab.errors import ConfigError, Problem, one_of
from cnnlab.inspect.capture import conv_layers


def pick_conv(model: nn.Module, x: Tensor, layer: str | None = None) -> tuple[str, nn.Conv2d]:
    """The conv layer called ``layer``, or the last one the forward pass calls; a name that is not
    a conv layer is a ConfigError listing the conv layers."""
    convs = conv_layers(model, x)
    if not convs:
        raise ConfigError(Problem("model", type(model).__name__, "has no Conv2d layer for Grad-CAM"))
    if layer is None:
        return convs[-1]
    for name, conv in convs:
        if name == layer:
            return name, conv
    raise ConfigError(Problem("layer", layer, one_of([name for name, _ in convs])))


def _without_inplace(model: nn.Module) -> nn.Module:
    """``model`` itself, or a copy with in-place activations turned off (autograd hooks need it)."""
    if not any(getattr(m, "inplace", False) for m in model.modules()):
        return model
    model = copy.deepcopy(model)
    for module in model.modules():
        if getattr(module, "inplace", False):
            module.inplace = False
    return model


def predicted_class(model: nn.Module, x: Tensor) -> int:
    """The class with the highest logit for the single input ``x`` (1×C×H×W)."""
    with torch.no_grad():
        return int(model(x).argmax(dim=1)[0])


def grad_cam(model: nn.Module, x: Tensor, target: int | None = None, layer: str | None = None,
             relu: bool = True) -> Tensor:
    """Grad-CAM (Captum's LayerGradCam) for class ``target`` (default: the predicted one) at conv
    layer ``layer`` (default: the last), upsampled bilinearly to x's H×W. ``relu=False`` keeps
    the negative part (evidence against the class), which small nets often have everywhere."""
    from captum.attr import LayerAttribution, LayerGradCam

    name, _ = pick_conv(model, x, layer)
    was_training = model.training
    model.eval()
    try:
        work = _without_inplace(model)
        conv = dict(work.named_modules())[name]
        target = predicted_class(work, x) if target is None else target
        with torch.enable_grad():
            cam = LayerGradCam(work, conv).attribute(x, target=target, relu_attributions=relu)
        cam = LayerAttribution.interpolate(cam.detach(), tuple(x.shape[-2:]), "bilinear")
    finally:
        model.train(was_training)
    return cam[0, 0]


def saliency(model: nn.Module, x: Tensor, target: int | None = None) -> Tensor:
    """Captum Saliency: |∂ logit[target] / ∂ input|, the maximum over channels, H×W."""
    from captum.attr import Saliency

    was_training = model.training
    model.eval()
    try:
        work = _without_inplace(model)
        target = predicted_class(work, x) if target is None else target
        with torch.enable_grad():
            grads = Saliency(work).attribute(x.clone().requires_grad_(True), target=target, abs=True)
    finally:
        model.train(was_training)
    return grads[0].detach().amax(dim=0)
