"""Every figure of one model on one input: filters, feature maps with and without pooling, attribution."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from cnnlab.inspect.attribution import grad_cam, pick_conv, saliency
from cnnlab.inspect.capture import POOLING, conv_layers, layer_outputs
from cnnlab.inspect.figures import attribution_figure, feature_map_figure, filters_figure
from cnnlab.inspect.output import Written, output_dir, save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class Inspection:
    """What `inspect_model` wrote and what the model predicted for the input."""

    description: str
    top: list[tuple[str, float]]
    files: list[Written] = field(default_factory=list)
    label: str | None = None  # the true class, when known


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name)


def _save(fig: Figure, folder: Path, stem: str, title: str, kind: str) -> Written:
    path = save_figure(fig, folder / f"{stem}.png")
    return Written(title, path, kind)


def filter_figures(model: nn.Module, x: Tensor, out_dir: str | Path) -> list[Written]:
    """One figure per conv layer, in call order, with its kernels (see `filters_figure`)."""
    folder = output_dir(out_dir)
    return [_save(filters_figure(name, conv), folder, f"filters-{i:02d}-{_safe(name)}",
                  f"filters of {name}", "inspect-filters")
            for i, (name, conv) in enumerate(conv_layers(model, x), start=1)]


def feature_map_figures(model: nn.Module, x: Tensor, out_dir: str | Path, *,
                        skip_pooling: bool = False, only_conv: bool = False) -> list[Written]:
    """One figure per conv, activation and pooling output (every image-shaped layer output) for
    the input ``x``; ``skip_pooling`` gives the same filters applied without the pooling layers,
    ``only_conv`` keeps only the conv layers' outputs."""
    folder = output_dir(out_dir)
    stem, note = ("maps-nopool", " · pooling skipped") if skip_pooling else ("maps", "")
    written = []
    layers = layer_outputs(model, x, skip_pooling=skip_pooling)
    for i, layer in enumerate(layers, start=1):
        if only_conv and not isinstance(layer.module, nn.Conv2d):
            continue
        written.append(_save(feature_map_figure(layer, note), folder,
                             f"{stem}-{i:02d}-{_safe(layer.name)}", layer.title + note,
                             "inspect-feature-maps"))
    return written


def display_image(x: Tensor) -> Tensor:
    """A normalised 1×C×H×W input rescaled to 0–1 for display, when the raw image is unknown."""
    image = x[0].detach().float()
    low, high = image.min(), image.max()
    return (image - low) / (high - low) if high > low else torch.zeros_like(image)


def top_classes(model: nn.Module, x: Tensor, classes: list[str] | None = None,
                k: int = 3) -> list[tuple[str, float]]:
    """The ``k`` most probable classes (softmax of the logits) for the single input ``x``."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            probabilities = torch.softmax(model(x).float(), dim=1)[0]
    finally:
        model.train(was_training)
    names = classes or [str(i) for i in range(len(probabilities))]
    values, indices = probabilities.topk(min(k, len(probabilities)))
    return [(names[i], p) for i, p in zip(indices.tolist(), values.tolist(), strict=True)]


def attribution_figures(model: nn.Module, x: Tensor, out_dir: str | Path, *,
                        image: Tensor | None = None, layer: str | None = None,
                        classes: list[str] | None = None, title: str = "") -> list[Written]:
    """The input with Grad-CAM (conv ``layer``, default the last) and saliency of the predicted
    class over it, as ``attribution.png``."""
    folder = output_dir(out_dir)
    name, _ = pick_conv(model, x, layer)
    best, probability = top_classes(model, x, classes, k=1)[0]
    heading = f"{title}{' · ' if title else ''}predicted {best} ({probability:.2f})"
    fig = attribution_figure(display_image(x) if image is None else image,
                             grad_cam(model, x, layer=name, relu=False), saliency(model, x), heading, name)
    return [_save(fig, folder, "attribution", f"Grad-CAM and saliency · {heading}",
                  "inspect-attribution")]


def inspect_model(model: nn.Module, x: Tensor, out_dir: str | Path, *, image: Tensor | None = None,
                  classes: list[str] | None = None, layer: str | None = None,
                  description: str = "input", label: str | None = None) -> Inspection:
    """Write every inspect figure of ``model`` for the normalised input ``x`` (1×C×H×W) into
    ``out_dir``: filters, feature maps, feature maps without pooling (when the model has pooling
    layers), Grad-CAM and saliency (when it has a conv layer).
    ``image`` (uint8 or 0–1 float C×H×W) is drawn under the attributions; works for any nn.Module."""
    if layer is not None:
        pick_conv(model, x, layer)  # a bad layer name fails before any figure is written
    title = description + (f" · true {label}" if label is not None else "")
    result = Inspection(description, top_classes(model, x, classes), label=label)
    result.files += filter_figures(model, x, out_dir)
    result.files += feature_map_figures(model, x, out_dir)
    if any(isinstance(m, POOLING) for m in model.modules()):
        result.files += feature_map_figures(model, x, out_dir, skip_pooling=True)
    if layer is not None or conv_layers(model, x):  # Grad-CAM needs a conv layer
        result.files += attribution_figures(model, x, out_dir, image=image, layer=layer,
                                            classes=classes, title=title)
    return result
