"""The Optuna pruner a sweep file's ``[pruner]`` table names, built from its type and options."""

from __future__ import annotations

import inspect
from typing import Any

import optuna

from cnnlab.errors import Problem

_CLASSES: dict[str, type[optuna.pruners.BasePruner]] = {
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
}


def make_pruner(table: dict[str, Any] | None) -> optuna.pruners.BasePruner:
    """``{"type": "median", "n_warmup_steps": 2}`` -> MedianPruner(n_warmup_steps=2); no table,
    no pruning."""
    if not table:
        return optuna.pruners.NopPruner()
    options = {k: v for k, v in table.items() if k != "type"}
    return _CLASSES[table["type"]](**options)


def pruner_problems(table: dict[str, Any]) -> list[Problem]:
    """Unknown or invalid options of a ``[pruner]`` table (its type is already known to be valid)."""
    cls = _CLASSES[table["type"]]
    accepted = [n for n in inspect.signature(cls).parameters if n != "self"]
    unknown = [k for k in table if k != "type" and k not in accepted]
    if unknown:
        return [Problem(f"pruner.{key}", table[key], f"is not an option of the {table['type']} pruner; "
                        "allowed: " + ", ".join(accepted)) for key in unknown]
    try:
        make_pruner(table)
    except (TypeError, ValueError) as exc:
        shown = {k: v for k, v in table.items() if k != "type"}
        return [Problem("pruner", shown, f"is invalid for the {table['type']} pruner: {exc}")]
    return []
