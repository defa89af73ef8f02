"""Every problem of an experiment, collected at once before anything is written.

Field types, ranges and choices come from the schema (`cnnlab.config`); names are checked here
against the registries below (datasets, alterations, models and their keys), together with the
settings that are valid one by one but cannot run together (nesterov without momentum, patience
without a validation split). The trainer, the sweep planner, the API and the CLI all call
`validate_experiment` (or `load_experiment`), so a bad value never reaches the store. A
checkpoint's own config is checked against its run's stored one here too (`check_checkpoint_config`),
defaults filled in on both sides.
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from cnnlab.config import (
    HASH_VERSION,
    SCHEDULE_OPTIONS,
    DataConfig,
    DomainConfig,
    Experiment,
    ModelConfig,
    TrainConfig,
    apply_overrides,
    config_hash,
    field_problems,
    read_toml,
)
from cnnlab.data import list_datasets
from cnnlab.data.alter import alter_problem
from cnnlab.data.facts import DATASETS
from cnnlab.errors import CheckpointError, ConfigError, Problem, one_of
from cnnlab.example_files import find_file
from cnnlab.models import validate_model_config
from cnnlab.store.record import RunRecord

if TYPE_CHECKING:
    from cnnlab.store import RunStore

Section = TypeVar("Section", bound=BaseModel)


def fill_defaults(raw: Any) -> Any:
    """A config with every model default written out: a registered model's keyword arguments it
    leaves out, at their defaults, and each layer of a layer list with its fields' defaults. So a
    config that sets a default explicitly is the same config (one hash) as one that leaves it out.
    Training, data and seed defaults come from the schema. Anything unknown is left as it is
    (validation names it); ``module:Class`` models are left as written (nothing is imported)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("model", {}), dict):
        return raw
    from cnnlab.models.layers import LAYER_TYPES, REQUIRED
    from cnnlab.models.registry import list_models, model_kwargs

    model = dict(raw.get("model", {}))
    name = model.get("name", ModelConfig.model_fields["name"].default)
    if isinstance(name, str) and name in list_models():
        for key, default in model_kwargs(name).items():
            if default is not None and default is not inspect.Parameter.empty:
                model.setdefault(key, _plain(default))
    layers = model.get("layers")
    if name == "layers" and isinstance(layers, list):
        model["layers"] = [
            {**{field: _plain(default) for field, (default, _) in LAYER_TYPES[layer["type"]].fields.items()
                if default is not REQUIRED and default is not None}, **layer}
            if isinstance(layer, dict) and isinstance(layer.get("type"), str) and layer["type"] in LAYER_TYPES
            else layer
            for layer in layers]
    return {**raw, "model": model}


def _plain(value: Any) -> Any:
    """A default as the plain data a TOML file gives (tuples as lists)."""
    return [_plain(v) for v in value] if isinstance(value, tuple | list) else value


def experiment_problems(raw: dict[str, Any]) -> tuple[Experiment | None, list[Problem]]:
    """The validated experiment (None when its fields are invalid) and every problem found, its
    model defaults filled in (`fill_defaults`).

    Each section is also checked against the registries and for settings that conflict with its
    keys that had field errors left out, so one pass reports the dataset, the model keys, the
    cross-checks and the field errors."""
    raw = fill_defaults(raw)
    problems: list[Problem] = []
    try:
        exp: Experiment | None = Experiment.model_validate(raw)
    except ValidationError as exc:
        exp = None
        problems += field_problems(exc)
    sections = raw if isinstance(raw, dict) else {}
    bad = {p.key for p in problems}
    data = _section(DataConfig, sections.get("data", {}), "data", bad)
    model = _section(ModelConfig, sections.get("model", {}), "model", bad)
    train = _section(TrainConfig, sections.get("train", {}), "train", bad)
    if data is not None:
        problems += data_problems(data)
    if model is not None:
        problems += validate_model_config(model)
    if train is not None:
        problems += train_problems(train)
    if data is not None and train is not None:
        problems += run_problems(data, train)
    unique: dict[str, Problem] = {}
    for problem in problems:
        unique.setdefault(problem.key, problem)
    return exp, list(unique.values())


def validate_experiment(raw: dict[str, Any]) -> Experiment:
    """The validated experiment; ConfigError listing every problem otherwise."""
    exp, problems = experiment_problems(raw)
    if problems or exp is None:
        raise ConfigError(problems)
    return exp


def built_problems(exp: Experiment) -> list[Problem]:
    """The problems of an experiment whose fields are valid: registry names and the settings
    that cannot run together."""
    return (data_problems(exp.data) + validate_model_config(exp.model) + train_problems(exp.train)
            + run_problems(exp.data, exp.train))


def filled_hashes(config: dict[str, Any]) -> tuple[str, str]:
    """The config hash and cell hash (without the seed) of a stored config, defaults filled in."""
    filled = fill_defaults(config)
    return config_hash(filled), config_hash(filled, include_seed=False)


def upgrade_hashes(store: RunStore) -> int:
    """Compute again the hashes a store holds from before defaults were filled in
    (`cnnlab.config.HASH_VERSION`), so its runs are found by the config they compute; each keeps
    its old hash as ``legacy_hash``. Nothing for a read-only store; returns how many changed."""
    if store.read_only:
        return 0
    return store.rehash(filled_hashes, HASH_VERSION)


def check_experiment(exp: Experiment) -> None:
    """Raise ConfigError listing every problem of an experiment built elsewhere (the API, a
    stored run's config, a sweep cell)."""
    problems = built_problems(exp)
    if problems:
        raise ConfigError(problems)


def load_experiment(
    path: str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> Experiment:
    """Read an experiment file or the shipped example it names (or start from ``base``), apply
    overrides and validate it."""
    raw = read_toml(find_file(path)) if path is not None else copy.deepcopy(base or {})
    if overrides:
        raw = apply_overrides(raw, overrides)
    return validate_experiment(raw)


def data_problems(data: DataConfig) -> list[Problem]:
    """Dataset names, alterations, paths and ``extra`` against the dataset facts, and flips of
    digits."""
    problems: list[Problem] = _flip_problems(data)
    if data.train is None:
        problems += _domain_problems("data", data)
    else:
        for key in ("path", "alter"):
            if getattr(data, key) is not None:
                problems.append(Problem(f"data.{key}", getattr(data, key),
                                        "must be set per entry of data.train when data.train is set"))
        if data.dataset != DataConfig.model_fields["dataset"].default:
            problems.append(Problem("data.dataset", data.dataset,
                                    "must be left out when data.train lists the datasets"))
    for section in ("train", "eval"):
        for i, domain in enumerate(getattr(data, section) or []):
            key = f"data.{section}[{i}]"
            problems += _domain_problems(key, domain)
            if section == "eval" and (domain.weight != 1.0 or domain.limit is not None):
                problems.append(Problem(key, domain.dataset,
                                        "weight and limit only apply to data.train entries"))
    return problems


def _flip_problems(data: DataConfig) -> list[Problem]:
    """A policy that flips (``data.augment = 'crop_flip'``) on digits, unless ``data.flip = true``
    says so explicitly: a flipped 2 is not a 2."""
    if data.augment != "crop_flip" or data.flip is not None:
        return []
    names = [d.dataset for d in data.train] if data.train is not None else [data.dataset]
    digits = [name for name in names if name in DATASETS and DATASETS[name].digits]
    if not digits:
        return []
    return [Problem("data.augment", data.augment,
                    f"flips images horizontally, and {digits[0]} holds digits (a flipped 2 is not a "
                    "2): use 'crop', or set data.flip = true to flip them anyway")]


def train_problems(train: TrainConfig) -> list[Problem]:
    """Optimizer options that only some optimizers take, schedule options that only some
    schedules take, and label smoothing only for the losses that have it."""
    problems: list[Problem] = []
    if train.nesterov and train.optimizer != "sgd":
        problems.append(Problem("train.nesterov", True, "applies only to train.optimizer 'sgd'"))
    elif train.nesterov and train.momentum == 0:
        problems.append(Problem("train.nesterov", True, "needs train.momentum > 0"))
    taken = SCHEDULE_OPTIONS[train.schedule]
    for option in sorted({o for options in SCHEDULE_OPTIONS.values() for o in options}):
        value = getattr(train, option)
        unset = value is None or (option == "warmup_epochs" and value == 0)
        if unset or option in taken:
            continue
        takers = [name for name, options in SCHEDULE_OPTIONS.items() if option in options]
        if len(takers) > 2:
            text = f"does not apply to train.schedule {train.schedule!r}"
            if train.schedule == "one_cycle":
                text += ", which warms up by itself (train.pct_start)"
        else:
            text = (f"applies only to train.schedule {' or '.join(repr(name) for name in takers)} "
                    f"(train.schedule is {train.schedule!r})")
        problems.append(Problem(f"train.{option}", value, text))
    if train.warmup_epochs >= train.epochs and "warmup_epochs" in taken:
        problems.append(Problem("train.warmup_epochs", train.warmup_epochs,
                                f"must be below train.epochs ({train.epochs}): the schedule needs "
                                "epochs after the warm-up"))
    if train.min_lr is not None and train.min_lr >= train.lr and "min_lr" in taken:
        problems.append(Problem("train.min_lr", train.min_lr, f"must be below train.lr ({train.lr:g})"))
    after_warmup = train.epochs - train.warmup_epochs
    if train.step_size is not None and train.schedule == "step" and 0 < after_warmup <= train.step_size:
        problems.append(Problem("train.step_size", train.step_size,
                                f"must be below the {after_warmup} epochs after the warm-up, or the "
                                "learning rate never drops"))
    if train.label_smoothing > 0 and train.loss == "mse":
        problems.append(Problem("train.label_smoothing", train.label_smoothing,
                                "applies only to train.loss 'cross_entropy' or 'nll'"))
    return problems


def run_problems(data: DataConfig, train: TrainConfig) -> list[Problem]:
    """Settings of different sections that cannot run together (checked without data)."""
    if data.val != 0:
        return []
    needs = "needs a validation split: set data.val > 0 or 'test'"
    problems = []
    if train.patience > 0:
        problems.append(Problem("train.patience", train.patience, needs))
    if train.schedule == "plateau":
        problems.append(Problem("train.schedule", train.schedule,
                                f"reads {train.monitor} every epoch, so it {needs}"))
    if train.restore_best:
        problems.append(Problem("train.restore_best", True,
                                f"keeps the epoch with the best {train.monitor}, so it {needs}"))
    return problems


def _domain_problems(key: str, domain: DataConfig | DomainConfig) -> list[Problem]:
    problems = []
    facts = DATASETS.get(domain.dataset)
    if facts is None:
        problems.append(Problem(f"{key}.dataset", domain.dataset, one_of(list_datasets(), domain.dataset)))
    elif facts.needs_path and not domain.path:
        problems.append(Problem(f"{key}.path", None, f"is required for dataset {domain.dataset!r}"))
    if domain.extra and not (facts is not None and facts.has_extra):
        with_extra = ", ".join(repr(f.name) for f in DATASETS.values() if f.has_extra)
        problems.append(Problem(f"{key}.extra", True, f"only applies to dataset {with_extra}"))
    if domain.alter is not None and (bad := alter_problem(domain.alter)) is not None:
        problems.append(Problem(f"{key}.alter", *bad))
    return problems


def _section(schema: type[Section], raw: Any, name: str, bad: set[str]) -> Section | None:
    """The section validated on its own without the keys that had field errors (their defaults
    stand in), or None when it is still invalid (not a table)."""
    if isinstance(raw, dict):
        raw = {key: value for key, value in raw.items()
               if not any(b == f"{name}.{key}" or b.startswith((f"{name}.{key}.", f"{name}.{key}["))
                          for b in bad)}
    try:
        return schema.model_validate(raw)
    except ValidationError:
        return None


def check_checkpoint_config(state: dict[str, Any], record: RunRecord, path: Path) -> None:
    """Refuse a checkpoint whose config is not the run's stored config (keys that only say where
    or how fast it ran, and ``train.epochs``, which a resume may raise, left out)."""
    stored, written = _comparable(record.config), _comparable(state.get("config"))
    if config_hash(stored) == config_hash(written):
        return
    stored_keys, written_keys = _flat(stored), _flat(written)
    keys = sorted(key for key in stored_keys.keys() | written_keys.keys()
                  if stored_keys.get(key) != written_keys.get(key))
    shown = ", ".join(f"{key} = {written_keys.get(key)!r} (stored: {stored_keys.get(key)!r})"
                      for key in keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
    raise CheckpointError(f"checkpoint {path} was refused: its config is not run {record.id}'s "
                          f"stored config ({shown or 'it has none'}); it was not written by this "
                          "run: train or resume the run to write its own")


def _comparable(config: Any) -> dict[str, Any]:
    if not isinstance(config, dict):
        return {}
    config = copy.deepcopy(fill_defaults(config))  # a run continued since defaults were filled in
    if isinstance(config.get("train"), dict):
        config["train"].pop("epochs", None)
    return config


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
