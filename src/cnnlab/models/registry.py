"""The model registry: ``@register_model`` factories looked up by name (timm style)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from cnnlab.errors import ConfigError, Problem, did_you_mean, one_of
from cnnlab.models import checks

# Arguments every factory takes and that come from the data, never from the experiment file.
DATA_ARGS = ("in_channels", "num_classes", "image_size")

Factory = TypeVar("Factory", bound=Callable[..., nn.Module])

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(factory: Factory) -> Factory:
    """Register ``factory`` under its function name; it must accept in_channels, num_classes
    and image_size, and take its hyperparameters as keywords with defaults."""
    params = inspect.signature(factory).parameters
    missing = [arg for arg in DATA_ARGS if arg not in params]
    if missing:
        raise TypeError(f"model factory {factory.__name__} lacks argument(s) {', '.join(missing)}")
    name = factory.__name__
    old = _REGISTRY.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (
        factory.__module__,
        factory.__qualname__,
    ):
        raise ValueError(f"model {name!r} is already registered by {old.__module__}")
    _REGISTRY[name] = factory
    return factory


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_REGISTRY)


def get_factory(name: str) -> Callable[..., nn.Module]:
    """The factory registered as ``name``; an unknown name is a ConfigError listing valid ones."""
    if name not in _REGISTRY:
        raise ConfigError(Problem("model.name", name, one_of(list_models())))
    return _REGISTRY[name]


def model_kwargs(name: str) -> dict[str, Any]:
    """Hyperparameters of model ``name`` (what an experiment file may set) and their defaults."""
    params = inspect.signature(get_factory(name)).parameters.values()
    return {
        p.name: p.default
        for p in params
        if p.name not in DATA_ARGS and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def _takes_any_keyword(factory: Callable[..., Any]) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(factory).parameters.values())


def unknown_key(key: str, allowed: list[str], what: str) -> Problem:
    """The Problem for ``key`` not being one of ``allowed`` (with a "did you mean" when close)."""
    short = key.rsplit(".", 1)[-1]
    text = f"is not a known key {what}; allowed: " + (", ".join(allowed) or "none")
    return Problem(key, short, text + did_you_mean(short, allowed))


def kwarg_problems(name: str, kwargs: dict[str, Any]) -> list[Problem]:
    """Problems with the keyword arguments ``kwargs`` for registered model ``name``."""
    known = model_kwargs(name)
    open_ended = _takes_any_keyword(get_factory(name))
    problems = []
    for key, value in kwargs.items():
        if key in DATA_ARGS:
            problems.append(
                Problem(f"model.{key}", value, "comes from the data and cannot be set in model")
            )
            continue
        if key not in known and not open_ended:
            problems.append(unknown_key(f"model.{key}", sorted(known), f"of model {name}"))
            continue
        check = checks.KWARG_CHECKS.get(key) or checks.by_default(known.get(key))
        allowed = check(value) if check else None
        if allowed:
            problems.append(Problem(f"model.{key}", value, allowed))
    return problems


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build registered model ``name``; bad names or keyword arguments raise ConfigError."""
    factory = get_factory(name)
    hyper = {k: v for k, v in kwargs.items() if k not in DATA_ARGS}
    problems = kwarg_problems(name, hyper)
    if problems:
        raise ConfigError(problems)
    return factory(**kwargs)
