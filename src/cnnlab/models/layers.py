"""The declarative layer list (``model.name = "layers"``): checked field by field, then built
into an nn.Sequential by walking the shapes, so users write only output sizes.

Convolution padding is "valid" (0), an integer, or "same"; "same" needs stride 1, as in
PyTorch (``nn.Conv2d`` refuses ``padding="same"`` for strided convolutions), and the message
says which integer padding to use instead.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from cnnlab.errors import ConfigError, Problem, one_of
from cnnlab.models import checks
from cnnlab.models.registry import unknown_key
from cnnlab.models.shapes import SizeStep, both_formulas, dims, window_step

REQUIRED = object()


class GlobalAvgPool(nn.Module):
    """Mean over the spatial dimensions: (N, C, H, W) → (N, C)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3))


class GlobalMaxPool(nn.Module):
    """Maximum over the spatial dimensions: (N, C, H, W) → (N, C)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.amax(dim=(2, 3))


@dataclass(frozen=True)
class LayerType:
    """A layer type of the list: its fields (default or REQUIRED, check), child-name prefix,
    and whether it needs a C×H×W input ("spatial"), a flat one ("flat") or either (None)."""

    fields: dict[str, tuple[Any, checks.Check]]
    prefix: str
    needs: str | None = None
    makes_flat: bool = False


_POOL_FIELDS = {
    "kernel": (2, checks.size),
    "stride": (None, checks.size),
    "padding": (0, checks.pool_padding),
}
_ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}
_ACTIVATION_FIELDS: dict[str, dict[str, tuple[Any, checks.Check]]] = {
    "leaky_relu": {"negative_slope": (0.01, checks.non_negative)},
    "elu": {"alpha": (1.0, checks.non_negative)},
}

LAYER_TYPES: dict[str, LayerType] = {
    "conv": LayerType(
        {
            "filters": (REQUIRED, checks.positive_int),
            "kernel": (REQUIRED, checks.size),
            "stride": (1, checks.size),
            "padding": ("valid", checks.padding),
            "bias": (True, checks.boolean),
        },
        "conv",
        needs="spatial",
    ),
    "maxpool": LayerType(_POOL_FIELDS, "pool", needs="spatial"),
    "avgpool": LayerType(_POOL_FIELDS, "avgpool", needs="spatial"),
    "global_avg_pool": LayerType({}, "gap", needs="spatial", makes_flat=True),
    "global_max_pool": LayerType({}, "gmp", needs="spatial", makes_flat=True),
    "batchnorm": LayerType({}, "bn"),
    "dropout": LayerType({"p": (0.5, checks.dropout)}, "drop"),
    "dropout2d": LayerType({"p": (0.5, checks.dropout)}, "drop2d", needs="spatial"),
    "flatten": LayerType({}, "flatten", makes_flat=True),
    "linear": LayerType(
        {"units": (REQUIRED, checks.positive_int), "bias": (True, checks.boolean)},
        "fc",
        needs="flat",
    ),
    **{
        name: LayerType(_ACTIVATION_FIELDS.get(name, {}), name)
        for name in _ACTIVATIONS
    },
}

_NOT_OFFERED = {
    "softmax": "; no softmax: the loss takes the logits of the last linear layer",
    "log_softmax": "; no log_softmax: the loss takes the logits of the last linear layer",
}


def _pair(value: int | list[int] | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _resolved(layer: dict[str, Any]) -> dict[str, Any]:
    """A valid layer's fields with defaults filled in."""
    spec = LAYER_TYPES[layer["type"]]
    return {name: layer.get(name, default) for name, (default, _) in spec.fields.items()}


def _field_problems(key: str, kind: str, layer: dict[str, Any]) -> list[Problem]:
    spec = LAYER_TYPES[kind]
    problems = []
    for field, value in layer.items():
        if field == "type":
            continue
        if field not in spec.fields:
            allowed = ["type", *spec.fields]
            problems.append(unknown_key(f"{key}.{field}", allowed, f"of a {kind} layer"))
            continue
        allowed_text = spec.fields[field][1](value)
        if allowed_text:
            problems.append(Problem(f"{key}.{field}", value, allowed_text))
    for field, (default, _) in spec.fields.items():
        if default is REQUIRED and field not in layer:
            problems.append(Problem(f"{key}.{field}", None, f"is required for a {kind} layer"))
    if problems:
        return problems
    fields = _resolved(layer)
    if kind == "conv" and fields["padding"] == "same" and _pair(fields["stride"]) != (1, 1):
        kh, kw = _pair(fields["kernel"])
        problems.append(
            Problem(
                f"{key}.padding",
                "same",
                f"needs stride 1 (PyTorch has no 'same' for strided convolutions); "
                f"use padding = {(kh - 1) // 2} for kernel {kh} instead",
            )
        )
    if kind in ("maxpool", "avgpool"):
        kh, kw = _pair(fields["kernel"])
        if 2 * fields["padding"] > min(kh, kw):
            problems.append(
                Problem(f"{key}.padding", fields["padding"], "is out of range: must be at most "
                        f"half the kernel ({min(kh, kw) // 2}), as PyTorch requires")
            )
    return problems


def validate_layers(layers: list[Any]) -> list[Problem]:
    """Static problems of a layer list: types, fields, values and the order of flat and C×H×W
    layers. Sizes need the input shape and are checked by build_layers."""
    if not layers:
        return [Problem("model.layers", layers, "is empty: list the layers, ending with a linear "
                        "layer with one unit per class")]
    problems: list[Problem] = []
    flat_since: int | None = None
    order_known = True  # after an unknown layer type, flat-or-not is unknown: no order checks
    for i, layer in enumerate(layers):
        key = f"model.layers[{i}]"
        if not isinstance(layer, dict):
            problems.append(Problem(key, layer, "is not a table like {type = \"conv\", ...}"))
            order_known = False
            continue
        kind = layer.get("type")
        if kind is None:
            problems.append(Problem(f"{key}.type", None, "is required; " + one_of(
                list(LAYER_TYPES)).replace("is not one of", "one of")))
            order_known = False
            continue
        if not isinstance(kind, str) or kind not in LAYER_TYPES:
            hint = _NOT_OFFERED.get(kind, "") if isinstance(kind, str) else ""
            problems.append(Problem(f"{key}.type", kind, one_of(list(LAYER_TYPES)) + hint))
            order_known = False
            continue
        problems += _field_problems(key, kind, layer)
        spec = LAYER_TYPES[kind]
        if not order_known:
            continue
        if spec.needs == "spatial" and flat_since is not None:
            problems.append(Problem(f"{key}.type", kind, f"needs a C×H×W input, but "
                                    f"model.layers[{flat_since}] already made it flat"))
        elif spec.needs == "flat" and flat_since is None:
            problems.append(Problem(f"{key}.type", kind, "needs a flat input: put {type = "
                                    "\"flatten\"} or {type = \"global_avg_pool\"} before it"))
        if (spec.makes_flat or spec.needs == "flat") and flat_since is None:
            # a linear without flatten before it is reported once, not again at the list's end
            flat_since = i
    last = layers[-1]
    if order_known and flat_since is None:
        problems.append(Problem("model.layers", last["type"], "is the last layer, but the list "
                                "must end with one logit per class: add {type = \"flatten\"} and "
                                "{type = \"linear\", units = <number of classes>}"))
    return problems


def _window_steps(key: str, fields: dict[str, Any], shape: tuple[int, ...], kind: str,
                  padding: tuple[int, int] | None) -> tuple[SizeStep, SizeStep]:
    kh, kw = _pair(fields["kernel"])
    stride = fields["stride"] if fields["stride"] is not None else fields["kernel"]
    sh, sw = _pair(stride)
    ph, pw = padding if padding is not None else (None, None)
    conv = kind == "conv"
    steps = (
        window_step(shape[1], kh, sh, ph, show_zero_padding=conv),
        window_step(shape[2], kw, sw, pw, show_zero_padding=conv),
    )
    if any(step.kernel_too_large for step in steps):
        padded = ""
        if padding is not None and any(padding):
            padded = f", padded to {shape[1] + 2 * padding[0]}×{shape[2] + 2 * padding[1]}"
        raise ConfigError(Problem(f"{key}.kernel", fields["kernel"], f"is larger than the "
                                  f"{shape[1]}×{shape[2]} input at this layer{padded}: "
                                  f"{both_formulas(steps)}"))
    return steps


def _conv_padding(value: str | int | list[int]) -> tuple[int, int] | None:
    if value == "same":
        return None
    return (0, 0) if value == "valid" else _pair(value)  # type: ignore[arg-type]


def build_layers(
    layers: list[dict[str, Any]], input_shape: tuple[int, int, int], num_classes: int
) -> nn.Sequential:
    """Build a layer list for ``input_shape`` (C, H, W) and ``num_classes`` outputs; sizes that
    run out, or a last layer not giving one logit per class, raise ConfigError."""
    problems = validate_layers(layers)
    if problems:
        raise ConfigError(problems)
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    counts: dict[str, int] = {}
    shape: tuple[int, ...] = tuple(input_shape)
    last_linear: int | None = None
    for i, layer in enumerate(layers):
        key, kind = f"model.layers[{i}]", layer["type"]
        spec, fields = LAYER_TYPES[kind], _resolved(layer)
        module: nn.Module
        if kind == "conv":
            padding = _conv_padding(fields["padding"])
            steps = _window_steps(key, fields, shape, kind, padding)
            module = nn.Conv2d(shape[0], fields["filters"], _pair(fields["kernel"]),
                               stride=_pair(fields["stride"]),
                               padding="same" if padding is None else padding,
                               bias=fields["bias"])
            shape = (fields["filters"], steps[0].out, steps[1].out)
        elif kind in ("maxpool", "avgpool"):
            pad = (fields["padding"], fields["padding"])
            steps = _window_steps(key, fields, shape, kind, pad)
            stride = fields["stride"] if fields["stride"] is not None else fields["kernel"]
            pool = nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d
            module = pool(_pair(fields["kernel"]), stride=_pair(stride), padding=fields["padding"])
            shape = (shape[0], steps[0].out, steps[1].out)
        elif kind in ("global_avg_pool", "global_max_pool"):
            module = GlobalAvgPool() if kind == "global_avg_pool" else GlobalMaxPool()
            shape = (shape[0],)
        elif kind == "batchnorm":
            module = nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0])
        elif kind in ("dropout", "dropout2d"):
            module = nn.Dropout(fields["p"]) if kind == "dropout" else nn.Dropout2d(fields["p"])
        elif kind == "flatten":
            module = nn.Flatten()
            shape = (math.prod(shape),)
        elif kind == "linear":
            module = nn.Linear(shape[0], fields["units"], bias=fields["bias"])
            shape, last_linear = (fields["units"],), i
        else:
            module = _ACTIVATIONS[kind](**fields)
        counts[spec.prefix] = counts.get(spec.prefix, 0) + 1
        name = spec.prefix if kind == "flatten" and counts[spec.prefix] == 1 else (
            f"{spec.prefix}{counts[spec.prefix]}")
        modules[name] = module
    if shape != (num_classes,):
        if last_linear is not None:
            units = layers[last_linear]["units"]
            raise ConfigError(Problem(f"model.layers[{last_linear}].units", units, "must equal the "
                                      f"number of classes in the data ({num_classes}): the last "
                                      "linear layer gives one logit per class"))
        raise ConfigError(Problem("model.layers", layers[-1]["type"], f"is the last layer and "
                                  f"gives {dims(shape)} outputs, but the data has {num_classes} "
                                  "classes: end with {type = \"linear\", units = "
                                  f"{num_classes}}}"))
    return nn.Sequential(modules)
