"""Sweep files: a TOML file read and checked into a `SweepSpec` (base experiment + search space)."""

from __future__ import annotations

import copy
import math
import numbers
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from cnnlab.checks import validate_experiment
from cnnlab.config import apply_overrides, parse_override, read_toml
from cnnlab.errors import ConfigError, Problem, one_of
from cnnlab.example_files import find_file

MODES = ("grid", "random", "tpe")
SECTIONS = ("data", "model", "train")
PRUNERS = ("median", "percentile", "successive_halving", "hyperband")
TOP_KEYS = ("name", "description", "claim", "base", "set", "seeds", "metric", "direction", "retries",
            "grid", "zip", "random", "tpe", "pruner")
SAMPLER_OPTIONS = {"random": ("n_trials", "seed"), "tpe": ("n_trials", "seed", "n_startup_trials")}
RANGE_KEYS = frozenset({"low", "high", "log", "step"})
DEFAULT_RETRIES = 2

Mode = Literal["grid", "random", "tpe"]


@dataclass
class SweepSpec:
    """A validated sweep: the base experiment (raw, ``set`` applied) and what varies around it.

    ``grids`` are unioned, each crossed with the ``zip`` rows (mode "grid"); ``space`` holds the
    dimensions Optuna samples (modes "random" and "tpe"), each ``{"choices": [...]}`` or
    ``{"low", "high", "log", "step"}``. Every cell runs once per seed in ``seeds``.
    """

    name: str
    base: dict[str, Any]
    seeds: list[int]
    mode: Mode = "grid"
    grids: list[dict[str, list[Any]]] = field(default_factory=list)
    zip: dict[str, list[Any]] = field(default_factory=dict)
    space: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_trials: int = 0
    sampler_seed: int | None = None
    n_startup_trials: int | None = None
    pruner: dict[str, Any] | None = None
    metric: str = "val_acc"
    direction: Literal["maximize", "minimize"] = "maximize"
    retries: int = DEFAULT_RETRIES
    description: str = ""
    claim: dict[str, Any] = field(default_factory=dict)  # the seed study's own claim (cnnlab.analyze.claim)
    overrides: dict[str, Any] = field(default_factory=dict)  # `sweep -s key=value`, in every cell

    def code_modules(self) -> frozenset[str]:
        """The modules this sweep names as models (``model.name = "module:Class"``): the ones its
        workers may import when the user gave this sweep (a file, not storage)."""
        from cnnlab.trust import named_modules

        varied = {f"{key}#{n}": values for n, grid in enumerate(self.grids) for key, values in grid.items()
                  if key == "model.name"}
        varied |= {key: values for key, values in self.zip.items() if key == "model.name"}
        varied |= {key: dim.get("choices", []) for key, dim in self.space.items() if key == "model.name"}
        return named_modules(self.base, varied)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (what the study stores for workers on other machines)."""
        return copy.deepcopy(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepSpec:
        """The inverse of `to_dict`; unknown keys (from newer versions) are ignored."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: copy.deepcopy(v) for k, v in data.items() if k in known})


def load_sweep(path: str | Path, name: str | None = None, overrides: list[str] | None = None) -> SweepSpec:
    """Read a sweep file; ``base = "file.toml"`` is relative to the sweep file; ``overrides``
    (``key=value``, from `sweep -s`) are set in every cell. Raises ConfigError with one Problem
    per bad key (cells are checked by `expand_cells`)."""
    path = find_file(path, "sweep file")
    raw = read_toml(path)
    return parse_sweep(raw, default_name=name or path.stem, folder=path.parent, overrides=overrides)


def parse_sweep(raw: dict[str, Any], default_name: str = "sweep", folder: Path | None = None,
                overrides: list[str] | None = None) -> SweepSpec:
    """Check a parsed sweep file and build its SweepSpec (see `load_sweep`)."""
    problems: list[Problem] = []
    for key in raw:
        if key not in TOP_KEYS:
            problems.append(Problem(key, raw[key], "is not a known key; allowed: " + ", ".join(TOP_KEYS)))

    name = raw.get("name", default_name)
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        problems.append(Problem("name", name, "must be a non-empty string of at most 100 characters"))
        name = default_name
    base = _base(raw.get("base", {}), folder, problems)
    settings = _flat_table("set", raw.get("set", {}), problems, leaf=lambda v: not isinstance(v, dict))
    if settings:
        base = apply_overrides(base, settings)
    given = _given_overrides(overrides or [], problems)
    try:
        base = apply_overrides(base, given)
    except ConfigError as exc:
        problems += [Problem(f"-s {p.key}", p.value, p.allowed) for p in exc.problems]
        given = {}

    seeds = raw.get("seeds", [base.get("seed", 0)])
    if (not isinstance(seeds, list) or not seeds
            or not all(_is_int(s) and 0 <= s < 2**32 for s in seeds) or len(set(seeds)) != len(seeds)):
        problems.append(Problem("seeds", seeds, "must be a non-empty list of distinct integers in [0, 2³²)"))
        seeds = [0]

    claim: dict[str, Any] = {}
    if "claim" in raw:  # given, it must be a whole claim: false, 0, [] or "" is no table
        from cnnlab.analyze.claim import parse_claim

        try:
            parse_claim(raw["claim"])
            claim = raw["claim"]
        except ConfigError as exc:
            problems += exc.problems
    spec = SweepSpec(name=name.strip(), base=base, seeds=list(seeds),
                     description=str(raw.get("description", "")), claim=dict(claim), overrides=given)
    _space(raw, spec, problems)
    problems += _override_problems(spec)
    _objective(raw, spec, problems)
    retries = raw.get("retries", DEFAULT_RETRIES)
    if not _is_int(retries) or not 0 <= retries <= 100:
        problems.append(Problem("retries", retries, "must be an integer in [0, 100]"))
    else:
        spec.retries = retries
    if "pruner" in raw:
        spec.pruner = _pruner(raw["pruner"], problems)
    if problems:
        raise ConfigError(problems)
    return spec


def _given_overrides(texts: list[str], problems: list[Problem]) -> dict[str, Any]:
    """``-s key=value`` texts as {key: value}; a malformed one, or a key that names a part of
    another, is a Problem."""
    given: dict[str, Any] = {}
    for text in texts:
        try:
            key, value = parse_override(text)
        except ConfigError as exc:
            problems += [Problem(f"-s {p.key}", p.value, p.allowed) for p in exc.problems]
            continue
        clash = next((k for k in given if k.startswith(f"{key}.") or key.startswith(f"{k}.")), None)
        if clash is not None:
            problems.append(Problem(f"-s {key}", value, f"overlaps -s {clash}: give each setting once"))
            continue
        given[key] = value
    return given


def _override_problems(spec: SweepSpec) -> list[Problem]:
    """Problems of the ``-s`` overrides, each named once (not once per cell): a key the sweep
    varies (it would not reach every cell), and a key or value the experiment refuses."""
    if not spec.overrides:
        return []
    varied = {*spec.space, *spec.zip, *(key for grid in spec.grids for key in grid)}
    if len(spec.seeds) > 1:
        varied.add("seed")
    problems = [Problem(f"-s {key}", value, "is varied by the sweep, so it cannot be set for every cell")
                for key, value in spec.overrides.items() if key in varied]
    try:
        validate_experiment(spec.base)
    except ConfigError as exc:
        problems += [Problem(f"-s {p.key}", p.value, p.allowed) for p in exc.problems
                     if any(p.key == key or p.key.startswith(f"{key}.") or key.startswith(f"{p.key}.")
                            for key in spec.overrides)]
    return problems


def _base(value: Any, folder: Path | None, problems: list[Problem]) -> dict[str, Any]:
    if isinstance(value, dict):
        return copy.deepcopy(value)
    if isinstance(value, str):
        path = Path(value)
        if not path.is_absolute() and folder is not None:
            path = folder / path
        if not path.is_file():
            problems.append(Problem("base", value, f"does not exist (looked for {path})"))
            return {}
        try:
            return read_toml(path)
        except ConfigError as exc:
            problems += [Problem("base", value, f"cannot be read: {p}") for p in exc.problems]
            return {}
    problems.append(Problem("base", value, "must be an experiment file path or a [base] table"))
    return {}


def _space(raw: dict[str, Any], spec: SweepSpec, problems: list[Problem]) -> None:
    samplers = [m for m in ("random", "tpe") if m in raw]
    if len(samplers) > 1 or (samplers and ("grid" in raw or "zip" in raw)):
        used = [m for m in ("grid", "zip", "random", "tpe") if m in raw]
        problems.append(Problem("search space", ", ".join(used),
                                "mixes modes: use grid and/or zip, or one of random, tpe"))
        return
    if samplers:
        spec.mode = samplers[0]  # type: ignore[assignment]
        _sampled(samplers[0], raw[samplers[0]], spec, problems)
        return
    spec.mode = "grid"
    grid = raw.get("grid", {})
    tables = grid if isinstance(grid, list) else [grid]
    for i, table in enumerate(tables):
        where = f"grid[{i}]" if isinstance(grid, list) else "grid"
        axes = _flat_table(where, table, problems, leaf=lambda v: isinstance(v, list))
        for key, values in axes.items():
            _check_values(f"{where}.{key}", values, problems)
        if axes or not isinstance(grid, list):
            spec.grids.append(axes)
    if "zip" in raw:
        columns = _flat_table("zip", raw["zip"], problems, leaf=lambda v: isinstance(v, list))
        for key, values in columns.items():
            _check_values(f"zip.{key}", values, problems)
        lengths = {key: len(v) for key, v in columns.items() if isinstance(v, list)}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{k} has {n}" for k, n in lengths.items())
            problems.append(Problem("zip", shown, "must give the same number of values for every key"))
        overlap = {k for g in spec.grids for k in g} & set(columns)
        if overlap:
            problems.append(Problem("zip", ", ".join(sorted(overlap)), "are also grid keys"))
        spec.zip = columns


def _sampled(mode: str, table: Any, spec: SweepSpec, problems: list[Problem]) -> None:
    if not isinstance(table, dict):
        problems.append(Problem(mode, table, "must be a table"))
        return
    options = {k: v for k, v in table.items() if k in SAMPLER_OPTIONS[mode]}
    dims = {k: v for k, v in table.items() if k not in SAMPLER_OPTIONS[mode]}
    n_trials = options.get("n_trials")
    if not _is_int(n_trials) or n_trials < 1:
        problems.append(Problem(f"{mode}.n_trials", n_trials, "must be an integer ≥ 1 (trials to sample)"))
    else:
        spec.n_trials = n_trials
    for key in ("seed", "n_startup_trials"):
        if key in options:
            if not _is_int(options[key]) or options[key] < 0:
                problems.append(Problem(f"{mode}.{key}", options[key], "must be an integer ≥ 0"))
            else:
                setattr(spec, "sampler_seed" if key == "seed" else key, options[key])
    if mode == "random" and spec.sampler_seed is None:
        spec.sampler_seed = 0  # the same file always samples the same configurations
    flat = _flat_table(mode, dims, problems, leaf=lambda v: not isinstance(v, dict) or set(v) <= RANGE_KEYS,
                       options=SAMPLER_OPTIONS[mode])
    for key, value in flat.items():
        where = f"{mode}.{key}"
        if isinstance(value, list):
            if _check_values(where, value, problems):
                spec.space[key] = {"choices": value}
        else:
            dim = _range(where, value, problems)
            if dim is not None:
                spec.space[key] = dim
    if not flat:
        problems.append(Problem(mode, dims, "has no dimension to sample: add e.g. "
                                '"train.lr" = { low = 1e-4, high = 1e-1, log = true }'))


def _range(where: str, value: Any, problems: list[Problem]) -> dict[str, Any] | None:
    if not isinstance(value, dict) or "low" not in value or "high" not in value:
        problems.append(Problem(where, value, "must be a list of choices or { low = …, high = … } "
                                "(optional log = true, step = …)"))
        return None
    low, high, log, step = value["low"], value["high"], value.get("log", False), value.get("step")
    numbers_ok = all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                     for v in (low, high) + ((step,) if step is not None else ()))
    if not numbers_ok or not isinstance(log, bool):
        problems.append(Problem(where, value, "needs numbers low, high (and step), and log true or false"))
        return None
    is_int = _is_int(low) and _is_int(high) and (step is None or _is_int(step))
    if low > high:
        problems.append(Problem(where, value, "has low > high"))
    elif log and low <= 0:
        problems.append(Problem(where, value, "has log = true, which needs low > 0"))
    elif log and step is not None:
        problems.append(Problem(where, value, "cannot have both log = true and a step"))
    elif step is not None and step <= 0:
        problems.append(Problem(where, value, "needs step > 0"))
    else:
        return {"low": low, "high": high, "log": log, "step": step, "int": is_int}
    return None


# One evaluation domain's metric of a mixture (data.eval), e.g. val/mnist-colour_acc.
DOMAIN_METRIC = re.compile(r"^(val|test)/[A-Za-z0-9_.+-]+_(acc|loss)$")


def _objective(raw: dict[str, Any], spec: SweepSpec, problems: list[Problem]) -> None:
    metric = raw.get("metric", "val_acc")
    allowed = [f"{split}_{kind}" for split in ("val", "test", "train") for kind in ("acc", "loss")]
    if metric not in allowed and not (isinstance(metric, str) and DOMAIN_METRIC.match(metric)):
        problems.append(Problem("metric", metric, one_of(allowed)
                                + ", or one evaluation domain's: val/<domain>_acc, test/<domain>_loss, …"))
        return
    spec.metric = metric
    default = "maximize" if metric.endswith("_acc") else "minimize"
    direction = raw.get("direction", default)
    if direction not in ("maximize", "minimize"):
        problems.append(Problem("direction", direction, one_of(("maximize", "minimize"))))
    else:
        spec.direction = direction


def _pruner(value: Any, problems: list[Problem]) -> dict[str, Any] | None:
    from cnnlab.sweep.pruners import pruner_problems

    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict) or value.get("type") not in PRUNERS:
        shown = value.get("type") if isinstance(value, dict) else value
        problems.append(Problem("pruner.type", shown, one_of(PRUNERS)))
        return None
    found = pruner_problems(value)
    problems += found
    return None if found else dict(value)


def _flat_table(where: str, table: Any, problems: list[Problem], leaf: Any,
                options: tuple[str, ...] = ()) -> dict[str, Any]:
    """``{"train": {"lr": [..]}}`` or ``{"train.lr": [..]}`` -> ``{"train.lr": [..]}``; checks that
    every key is a setting (data.*, model.*, train.*) and every value a leaf."""
    if not isinstance(table, dict):
        problems.append(Problem(where, table, "must be a table of dotted keys"))
        return {}
    flat: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, dict) and not leaf(value):
                walk(value, dotted + ".")
            else:
                flat[dotted] = value

    walk(table, "")
    out = {}
    for key, value in flat.items():
        section, _, rest = key.partition(".")
        if section not in SECTIONS or not rest:
            allowed = "a setting such as train.lr (data.*, model.* or train.*)"
            if options:
                allowed += " or one of " + ", ".join(options)
            problems.append(Problem(f"{where}.{key}", value, f"is not {allowed}"))
        elif not leaf(value):
            problems.append(Problem(f"{where}.{key}", value, "must be a list of values"))
        else:
            out[key] = value
    return out


def _check_values(where: str, values: list[Any], problems: list[Problem]) -> bool:
    if not values:
        problems.append(Problem(where, values, "is an empty list: give at least one value"))
        return False
    return True


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
