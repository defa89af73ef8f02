"""Optuna distributions for a sweep's sampled dimensions, and the setting values they stand for."""

from __future__ import annotations

import json
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from cnnlab.sweep.spec import SweepSpec

_SCALARS = (type(None), bool, int, float, str)


def distributions(spec: SweepSpec) -> dict[str, BaseDistribution]:
    """One distribution per sampled key. Choices that are not scalars (lists such as filter
    counts) become their compact JSON text, since Optuna's categorical choices must be scalars."""
    out: dict[str, BaseDistribution] = {}
    for key, dim in spec.space.items():
        if "choices" in dim:
            out[key] = CategoricalDistribution([encode(c) for c in dim["choices"]])
        elif dim["int"]:
            out[key] = IntDistribution(dim["low"], dim["high"], log=dim["log"], step=dim["step"] or 1)
        else:
            out[key] = FloatDistribution(dim["low"], dim["high"], log=dim["log"], step=dim["step"])
    return out


def encode(value: Any) -> Any:
    """A setting value as an Optuna parameter value (scalars unchanged, others as JSON text)."""
    return value if isinstance(value, _SCALARS) else json.dumps(value, separators=(",", ":"))


def decode(spec: SweepSpec, params: dict[str, Any]) -> dict[str, Any]:
    """Optuna parameter values -> setting overrides (the inverse of `encode` for choices)."""
    out = {}
    for key, value in params.items():
        dim = spec.space.get(key, {})
        choices = {encode(c): c for c in dim.get("choices", [])}
        out[key] = choices.get(value, value) if isinstance(value, str) else value
    return out


def suggest(trial: optuna.Trial, spec: SweepSpec) -> dict[str, Any]:
    """Ask ``trial`` for every sampled key (fixed values of an enqueued trial come back as they
    were); returns the setting overrides."""
    params = {key: _suggest(trial, key, dist) for key, dist in distributions(spec).items()}
    return decode(spec, params)


def _suggest(trial: optuna.Trial, key: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(key, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
    assert isinstance(dist, FloatDistribution)
    return trial.suggest_float(key, dist.low, dist.high, step=dist.step, log=dist.log)


def sample_random(spec: SweepSpec) -> list[dict[str, Any]]:
    """``spec.n_trials`` parameter sets drawn by Optuna's RandomSampler seeded with the file's
    seed: the same file always gives the same configurations, and a larger n_trials extends them."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=spec.sampler_seed))
    dists = distributions(spec)
    return [study.ask(fixed_distributions=dists).params for _ in range(spec.n_trials)]
