"""Cells: the concrete experiments a sweep stands for, each checked in full before any training."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from cnnlab.checks import validate_experiment
from cnnlab.config import Experiment, apply_overrides
from cnnlab.data.labels import domains_label
from cnnlab.errors import ConfigError, Problem
from cnnlab.sweep.space import decode, sample_random
from cnnlab.sweep.spec import SweepSpec

MAX_PROBLEMS_SHOWN = 12


@dataclass(frozen=True)
class Cell:
    """One run of a sweep: setting overrides on the base, a seed, and the hashes that identify it
    (``config_hash`` with the seed, ``cell_hash`` without). ``params`` are its Optuna parameters
    (sampled modes only)."""

    overrides: dict[str, Any]
    seed: int
    label: str
    config_hash: str
    cell_hash: str
    params: dict[str, Any] = field(default_factory=dict)

    def attrs(self) -> dict[str, Any]:
        """The trial user attributes that carry this cell to any worker."""
        return {"cell": self.overrides, "seed": self.seed, "label": self.label,
                "config_hash": self.config_hash, "cell_hash": self.cell_hash}


def label(overrides: dict[str, Any]) -> str:
    """``train.loss=mse, train.lr=0.001``; ``base`` when nothing is overridden."""
    return ", ".join(f"{key}={format_value(value)}" for key, value in overrides.items()) or "base"


def format_value(value: Any) -> str:
    """A setting value as a short string: 0.001, true, [32,64,64], mse."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = f"{value:.6g}"
        return text if any(c in text for c in ".ein") else text + ".0"
    if isinstance(value, str):
        return value
    if (datasets := domains_label(value)) is not None:  # data.train / data.eval
        return datasets
    return json.dumps(value, separators=(",", ":"))


def experiment(spec: SweepSpec, overrides: dict[str, Any], seed: int,
               machine: dict[str, Any] | None = None) -> Experiment:
    """The validated experiment of one cell and seed; ``machine`` sets keys left out of the
    config hash (train.threads, data.root). Raises ConfigError naming the cell."""
    raw = apply_overrides(spec.base, {**overrides, **(machine or {})})
    raw["seed"] = seed
    raw["name"] = f"{spec.name} {label(overrides)} seed={seed}"[:200]
    try:
        exp = validate_experiment(raw)
    except ConfigError as exc:
        raise _in_cell(exc.problems, label(overrides)) from None
    problems = _run_problems(exp, spec)
    if problems:
        raise _in_cell(problems, label(overrides))
    return exp


def make_cell(spec: SweepSpec, overrides: dict[str, Any], seed: int,
              params: dict[str, Any] | None = None) -> Cell:
    """Validate one cell and seed and compute its hashes."""
    exp = experiment(spec, overrides, seed)
    return Cell(dict(overrides), seed, label(overrides), exp.hash(), exp.hash(include_seed=False),
                dict(params or {}))


def expand_cells(spec: SweepSpec) -> list[Cell]:
    """Every cell × seed of a grid or random sweep, in run order (seed by seed), duplicates of the
    same config and seed dropped. Each cell's full experiment is validated and its model built on
    the dataset's input shape; all problems are raised together, each naming its cell. A tpe
    sweep has no fixed cells: its dimensions' extreme values and every choice are checked, and
    an empty list is returned."""
    if spec.mode == "tpe":
        _check_all(spec, _probes(spec))
        return []
    if spec.mode == "random":
        param_sets = sample_random(spec)
        points = [(decode(spec, params), params) for params in param_sets]
    else:
        points = [(overrides, {}) for overrides in grid_points(spec)]
    _check_all(spec, [overrides for overrides, _ in points])
    cells: list[Cell] = []
    seen: set[str] = set()
    for seed in spec.seeds:
        for overrides, params in points:
            cell = make_cell(spec, overrides, seed, params)
            if cell.config_hash not in seen:
                seen.add(cell.config_hash)
                cells.append(cell)
    return cells


def planned_cells(spec: SweepSpec) -> list[Cell]:
    """The cells × seeds a grid or random sweep queues (as `expand_cells`, without building any
    model: the spec may come from storage), for rebuilding its state from the run store."""
    if spec.mode == "tpe":
        return []
    if spec.mode == "random":
        points = [(decode(spec, params), params) for params in sample_random(spec)]
    else:
        points = [(overrides, {}) for overrides in grid_points(spec)]
    cells: dict[str, Cell] = {}
    for seed in spec.seeds:
        for overrides, params in points:
            cell = make_cell(spec, overrides, seed, params)
            cells.setdefault(cell.config_hash, cell)
    return list(cells.values())


def grid_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """The union of the grids' cartesian products, each crossed with the zip rows."""
    zip_rows: list[dict[str, Any]] = [{}]
    if spec.zip:
        keys = list(spec.zip)
        zip_rows = [dict(zip(keys, row, strict=True)) for row in zip(*spec.zip.values(), strict=True)]
    points = []
    for grid in spec.grids or [{}]:
        keys = list(grid)
        for values in itertools.product(*grid.values()):
            for row in zip_rows:
                points.append({**dict(zip(keys, values, strict=True)), **row})
    return points


def _probes(spec: SweepSpec) -> list[dict[str, Any]]:
    """For a sampled space: every choice and both ends of every range, others at their first value."""
    first = {key: dim["choices"][0] if "choices" in dim else dim["low"] for key, dim in spec.space.items()}
    probes = [first]
    for key, dim in spec.space.items():
        for value in dim["choices"] if "choices" in dim else (dim["low"], dim["high"]):
            probes.append({**first, key: value})
    return probes


def _check_all(spec: SweepSpec, points: list[dict[str, Any]]) -> None:
    """Validate every distinct point (with the first seed) and build its model once."""
    problems: list[Problem] = []
    built: set[str] = set()
    unique = {json.dumps(p, sort_keys=True): p for p in points}
    for n, overrides in enumerate(unique.values(), start=1):
        try:
            exp = experiment(spec, overrides, spec.seeds[0])
            model_key = json.dumps([exp.model.model_dump(mode="json"), exp.data.size, exp.data.channels,
                                    exp.data.dataset], sort_keys=True)
            if model_key not in built:  # cells that differ only in training settings: built once
                built.add(model_key)
                _check_model(exp, label(overrides))
        except ConfigError as exc:
            where = f"cell {n} of {len(unique)}"
            problems += [Problem(f"{where} {p.key}", p.value, p.allowed) for p in exc.problems]
    if len(problems) > MAX_PROBLEMS_SHOWN:
        more = len(problems) - MAX_PROBLEMS_SHOWN
        problems = [*problems[:MAX_PROBLEMS_SHOWN], Problem("…", more, "more problems not shown")]
    if problems:
        raise ConfigError(problems)


def _check_model(exp: Experiment, where: str) -> None:
    """Build the model on the dataset's known input shape (no data loaded): catches layers that
    do not fit. Datasets whose shape is only known once read (imagefolder, npz) are skipped."""
    from cnnlab.data import input_shape
    from cnnlab.models import build_model

    known = input_shape(exp.data)
    if known is not None:
        try:
            build_model(exp.model, *known)
        except ConfigError as exc:
            raise _in_cell(exc.problems, where) from None


def _run_problems(exp: Experiment, spec: SweepSpec) -> list[Problem]:
    problems: list[Problem] = []
    split = spec.metric.split("_")[0].split("/")[0]
    if "/" in spec.metric:  # a domain's metric, e.g. val/mnist-colour_acc
        from cnnlab.data.mixture import domain_name, domain_specs

        names = [domain_name(d) for d in domain_specs(exp.data)[1]]
        domain = spec.metric.split("/", 1)[1].rsplit("_", 1)[0]
        if domain not in names or len(names) < 2:
            problems.append(Problem("metric", spec.metric, "names no evaluation domain of this cell; "
                                    "its domains (data.eval, two or more): " + ", ".join(names)))
    if split == "val" and exp.data.val == 0:
        problems.append(Problem("metric", spec.metric, "needs a validation split: set data.val > 0 "
                                "or 'test', or use another metric"))
    if split == "test" and not exp.train.eval_test:
        problems.append(Problem("metric", spec.metric, "needs train.eval_test = true"))
    return problems


def _in_cell(problems: list[Problem], where: str) -> ConfigError:
    return ConfigError([Problem(f"({where}): {p.key}", p.value, p.allowed) for p in problems])
