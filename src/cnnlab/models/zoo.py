"""The seed models, each an nn.Sequential with readable child names (conv1, pool1, relu1, …)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from cnnlab.models.registry import register_model
from cnnlab.models.shapes import window_step

ImageSize = int | tuple[int, int]


def _hw(image_size: ImageSize) -> tuple[int, int]:
    return (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)


def _filters(filters: int | Sequence[int]) -> list[int]:
    return [filters] if isinstance(filters, int) else list(filters)


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _after(
    hw: tuple[int, int], kernel: int | Sequence[int], stride: int | None = None
) -> tuple[int, int]:
    """Size after an unpadded window (pooling or 'valid' conv); stride defaults to kernel."""
    kh, kw = _pair(kernel)
    sh, sw = _pair(stride) if stride is not None else (kh, kw)
    return window_step(hw[0], kh, sh, 0).out, window_step(hw[1], kw, sw, 0).out


def _flat(channels: int, hw: tuple[int, int]) -> int:
    # Clamped so an input too small for the model still constructs; build_model's shape check then
    # names the layer where the size runs out, which says more than a negative Linear size would.
    return channels * max(hw[0], 1) * max(hw[1], 1)


@register_model
def book_cnn(
    in_channels: int = 1,
    num_classes: int = 10,
    image_size: ImageSize = 28,
    *,
    dropout: float = 0.5,
    conv_dropout: float = 0.5,
) -> nn.Module:
    """Seed 001, the PyTorch MNIST example: two 5×5 convs and two linear layers (21,840 parameters
    on 1×28×28). Returns logits; the example's log_softmax belongs to the loss."""
    hw = _after(_after(_after(_after(_hw(image_size), 5, 1), 2), 5, 1), 2)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(in_channels, 10, kernel_size=5),
            pool1=nn.MaxPool2d(2),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(10, 20, kernel_size=5),
            conv2_drop=nn.Dropout2d(conv_dropout),
            pool2=nn.MaxPool2d(2),
            relu2=nn.ReLU(),
            flatten=nn.Flatten(),
            fc1=nn.Linear(_flat(20, hw), 50),
            relu3=nn.ReLU(),
            drop=nn.Dropout(dropout),
            fc2=nn.Linear(50, num_classes),
        )
    )


@register_model
def keras_cifar_cnn(
    in_channels: int = 3,
    num_classes: int = 10,
    image_size: ImageSize = 32,
    *,
    filters: Sequence[int] = (32, 64, 64),
    pool: int = 2,
    dropout: float = 0.0,
    hidden: int = 64,
) -> nn.Module:
    """Seed 002, the Keras CIFAR-10 tutorial CNN: 3×3 'valid' convs with max pooling between
    them (none when pool is 1), a hidden dense layer, optional dropout, then the logits."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    hw, channels = _hw(image_size), in_channels
    counts = _filters(filters)
    for i, out in enumerate(counts, start=1):
        layers[f"conv{i}"] = nn.Conv2d(channels, out, kernel_size=3)
        layers[f"relu{i}"] = nn.ReLU()
        hw, channels = _after(hw, 3, 1), out
        if i < len(counts) and _pair(pool) != (1, 1):
            layers[f"pool{i}"] = nn.MaxPool2d(pool)
            hw = _after(hw, pool)
    layers["flatten"] = nn.Flatten()
    layers["fc1"] = nn.Linear(_flat(channels, hw), hidden)
    layers[f"relu{len(counts) + 1}"] = nn.ReLU()
    if dropout > 0:
        layers["drop"] = nn.Dropout(dropout)
    layers["fc2"] = nn.Linear(hidden, num_classes)
    return nn.Sequential(layers)


@register_model
def mnist_bn_cnn(
    in_channels: int = 1,
    num_classes: int = 10,
    image_size: ImageSize = 28,
    *,
    filters: Sequence[int] = (32, 64),
    kernel: int = 3,
    batch_norm: bool = True,
    keep_prob: float = 0.8,
    hidden: int = 128,
) -> nn.Module:
    """Seed 003: blocks of conv ('same' padding) → [batch norm] → ReLU → 2×2 max pool, then
    a hidden layer with [batch norm] and dropout given as a keep probability. Convs followed by
    batch norm have no bias (the norm's shift replaces it)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    hw, channels = _hw(image_size), in_channels
    for i, out in enumerate(_filters(filters), start=1):
        layers[f"conv{i}"] = nn.Conv2d(
            channels, out, kernel_size=kernel, padding="same", bias=not batch_norm
        )
        if batch_norm:
            layers[f"bn{i}"] = nn.BatchNorm2d(out)
        layers[f"relu{i}"] = nn.ReLU()
        layers[f"pool{i}"] = nn.MaxPool2d(2)
        hw, channels = _after(hw, 2), out
    layers["flatten"] = nn.Flatten()
    layers["fc1"] = nn.Linear(_flat(channels, hw), hidden, bias=not batch_norm)
    if batch_norm:
        layers["bn_fc1"] = nn.BatchNorm1d(hidden)
    layers["relu_fc1"] = nn.ReLU()
    layers["drop"] = nn.Dropout(1 - keep_prob)
    layers["fc2"] = nn.Linear(hidden, num_classes)
    return nn.Sequential(layers)


@register_model
def three_conv_cnn(
    in_channels: int = 1,
    num_classes: int = 10,
    image_size: ImageSize = 28,
    *,
    filters: Sequence[int] = (32, 64, 128),
    kernel: int = 3,
    hidden: int = 128,
) -> nn.Module:
    """Seed 000: three conv ('same' padding) → ReLU → 2×2 max pool blocks (28→14→7→3), then
    a hidden layer and the logits."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    hw, channels = _hw(image_size), in_channels
    for i, out in enumerate(_filters(filters), start=1):
        layers[f"conv{i}"] = nn.Conv2d(channels, out, kernel_size=kernel, padding="same")
        layers[f"relu{i}"] = nn.ReLU()
        layers[f"pool{i}"] = nn.MaxPool2d(2)
        hw, channels = _after(hw, 2), out
    layers["flatten"] = nn.Flatten()
    layers["fc1"] = nn.Linear(_flat(channels, hw), hidden)
    layers["relu_fc1"] = nn.ReLU()
    layers["fc2"] = nn.Linear(hidden, num_classes)
    return nn.Sequential(layers)
