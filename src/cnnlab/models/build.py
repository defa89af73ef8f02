"""From a ModelConfig to a checked nn.Module: registered name, layer list or `module:Class`."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from typing import Any

from torch import nn

from cnnlab.config import ModelConfig
from cnnlab.errors import ConfigError, Problem, did_you_mean, one_of
from cnnlab.models import checks
from cnnlab.models.layers import build_layers, validate_layers
from cnnlab.models.registry import DATA_ARGS, create_model, kwarg_problems, list_models, unknown_key
from cnnlab.models.shapes import dims
from cnnlab.models.summary import BATCH, summarize

LAYERS = "layers"
_CLASS_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def _name_problem(name: str) -> Problem:
    choices = [*list_models(), LAYERS]
    text = one_of(choices) + ", or package.module:Class for your own nn.Module" + did_you_mean(name, choices)
    return Problem("model.name", name, text)


def validate_model_config(cfg: ModelConfig) -> list[Problem]:
    """Problems found without knowing the input shape: the model name, its keyword arguments
    and their values, and the layer list's types, fields and order. One Problem per problem."""
    name, params = cfg.name, cfg.params
    if name != LAYERS and cfg.layers is not None:
        return [Problem("model.layers", f"{len(cfg.layers)} layers",
                        f"are only used with model.name = '{LAYERS}', not {name!r}")]
    if name == LAYERS:
        problems = [unknown_key(f"model.{key}", ["name", "layers"], "for a layer list")
                    for key in params]
        if cfg.layers is None:
            return [*problems, Problem("model.layers", None,
                                       "is required when model.name is 'layers'")]
        return problems + validate_layers(cfg.layers)
    if ":" in name:
        if not _CLASS_PATH.match(name):
            return [Problem("model.name", name, "is not of the form package.module:Class")]
        return [Problem(f"model.{key}", value, allowed) for key, value in params.items()
                if (check := checks.KWARG_CHECKS.get(key)) and (allowed := check(value))]
    if name not in list_models():
        return [_name_problem(name)]
    return kwarg_problems(name, params)


def _import_class(path: str) -> type[nn.Module]:
    """Import ``package.module:Class`` with the current folder on sys.path."""
    module_name, _, class_name = path.partition(":")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        importlib.invalidate_caches()
        module = importlib.import_module(module_name)
    except Exception as exc:  # user code: any error on import is reported, not raised
        raise ConfigError(Problem("model.name", path, f"cannot be imported (from {cwd} or the "
                                  f"installed packages): {type(exc).__name__}: {exc}")) from exc
    finally:
        if added:
            sys.path.remove(cwd)
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ConfigError(Problem("model.name", path, f"names nothing: module {module_name} "
                                  f"has no {class_name}"))
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(Problem("model.name", path, "is not a torch.nn.Module subclass"))
    return cls


def _instantiate(path: str, cls: type[nn.Module], params: dict[str, Any],
                 data_args: dict[str, Any]) -> nn.Module:
    accepted = inspect.signature(cls).parameters
    open_ended = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    names = sorted(n for n, p in accepted.items()
                   if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in DATA_ARGS)
    problems = [Problem(f"model.{key}", value, "comes from the data and cannot be set in model")
                for key, value in params.items() if key in DATA_ARGS]
    if not open_ended:
        problems += [unknown_key(f"model.{key}", names, f"of {path}")
                     for key in params if key not in accepted and key not in DATA_ARGS]
    if problems:
        raise ConfigError(problems)
    kwargs = dict(params)
    kwargs.update({k: v for k, v in data_args.items() if k in accepted})
    try:
        return cls(**kwargs)
    except Exception as exc:  # user code: any error in __init__ is reported, not raised
        raise ConfigError(Problem("model.name", path, f"could not be created with {kwargs}: "
                                  f"{type(exc).__name__}: {exc}")) from exc


def resolve_channels_last(memory_format: str, model: nn.Module) -> bool:
    """'auto' -> channels_last for models with 2-D convolutions (measured faster here), else NCHW."""
    if memory_format == "auto":
        return any(isinstance(m, nn.Conv2d) for m in model.modules())
    return memory_format == "channels_last"


def build_model(cfg: ModelConfig, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Build the model ``cfg`` describes for images of ``input_shape`` (C, H, W) and
    ``num_classes`` classes, then check every layer's size and the (N, num_classes) output.
    Any problem raises ConfigError naming the key, the value and what went wrong."""
    problems = validate_model_config(cfg)
    if problems:
        raise ConfigError(problems)
    channels, height, width = input_shape
    data_args = {
        "in_channels": channels,
        "num_classes": num_classes,
        "image_size": height if height == width else (height, width),
    }
    model: nn.Module
    if cfg.name == LAYERS:
        assert cfg.layers is not None  # validate_model_config guarantees it
        model = build_layers(cfg.layers, input_shape, num_classes)
        key, value = "model.layers", f"{len(cfg.layers)} layers"
    elif ":" in cfg.name:
        model = _instantiate(cfg.name, _import_class(cfg.name), cfg.params, data_args)
        key, value = "model.name", cfg.name
    else:
        model = create_model(cfg.name, **data_args, **cfg.params)
        key, value = "model", cfg.name
    summary = summarize(model, input_shape)
    failed = summary.failed
    if failed is not None:
        raise ConfigError(Problem(key, value, f"does not fit a {dims(input_shape)} input: layer "
                                  f"{failed.name} ({failed.type}): {failed.error}"))
    if summary.output_shape != (BATCH, num_classes):
        got = "no tensor" if summary.output_shape is None else dims(summary.output_shape)
        raise ConfigError(Problem(key, value, f"gives {got} for a batch of {BATCH} "
                                  f"{dims(input_shape)} images; expected {BATCH}×{num_classes} "
                                  "(one logit per class)"))
    return model
