"""Experiment specs: TOML loading, `a.b=c` overrides and validation with one message per problem."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cnnlab.errors import CnnlabError, ConfigError, Problem, one_of

LOSSES = ("cross_entropy", "mse", "nll")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
MONITORS = ("val_loss", "val_acc")
PRECISIONS = ("fp32", "bf16", "auto")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
DEVICES = ("auto", "cpu", "cuda")

# The embedded offline default that `cnnlab quickstart` trains: real digits, no download.
QUICKSTART: dict[str, Any] = {
    "name": "quickstart",
    "seed": 0,
    "data": {"dataset": "mnist-sample", "val": 0.1, "test_fraction": 0.2},
    "model": {"name": "book_cnn"},
    "train": {"loss": "cross_entropy", "optimizer": "adam", "lr": 0.001, "batch_size": 64,
              "epochs": 15},
}

# Keys that say where or how fast a run happens, not what it computes: left out of the config hash.
MACHINE_KEYS = (("data", "root"), ("data", "download"), ("train", "threads"), ("train", "device"),
                ("name",))
# Keys added after the first release, left out of the hash while at their defaults, so runs stored
# before they existed keep their hashes (and sweeps still find them).
LATER_KEYS = {("data", "train"): None, ("data", "eval"): None, ("data", "alter"): None,
              ("data", "extra"): False}
# Values hashed as another value. `train.precision = "auto"` (the default since it replaced "fp32")
# picks the machine's fast path, as `train.device = "auto"` does, so it hashes as the old default:
# runs stored before the change keep their hashes. The resolved precision is stored with each run.
HASHED_AS = {("train", "precision"): {"auto": "fp32"}}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DomainConfig(_Section):
    """One dataset of a mixture (``data.train``) or one evaluation domain (``data.eval``).

    A bare string in those lists means ``{ dataset = "<string>" }``.
    """

    dataset: str
    alter: str | list[str] | None = None
    path: str | None = None
    size: int | None = Field(None, ge=4, le=1024)
    channels: Literal[1, 3] | None = None
    extra: bool = False
    weight: float = Field(1.0, gt=0, le=100)
    limit: int | None = Field(None, ge=1)
    name: str | None = Field(None, min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.+-]+$")

    @field_validator("alter")
    @classmethod
    def _alter(cls, v: str | list[str] | None) -> str | list[str] | None:
        return _alter_names(v)


def _alter_names(v: str | list[str] | None) -> str | list[str] | None:
    from cnnlab.data.alter import parse_alter
    from cnnlab.errors import DataError

    if v is None:
        return v
    try:
        parse_alter(v)
    except DataError as exc:
        raise ValueError(str(exc)) from None
    return v


def _domains(v: Any) -> Any:
    if isinstance(v, list):
        return [{"dataset": item} if isinstance(item, str) else item for item in v]
    return v


class DataConfig(_Section):
    """Which images to train and evaluate on, and how to split them.

    One dataset (``dataset``, optionally ``alter``-ed), or a mixture: ``train`` lists the datasets
    trained on together and ``eval`` the domains evaluated one by one (``val/<domain>_acc`` …).
    """

    dataset: str = "mnist-sample"
    path: str | None = None
    alter: str | list[str] | None = None
    extra: bool = False
    train: list[DomainConfig] | None = Field(None, min_length=1)
    eval: list[DomainConfig] | None = Field(None, min_length=1)
    root: str | None = None
    download: bool = True
    val: float | Literal["test"] = 0.1
    test_fraction: float = Field(0.2, gt=0, lt=1)
    size: int | None = Field(None, ge=4, le=1024)
    channels: Literal[1, 3] | None = None
    train_limit: int | None = Field(None, ge=1)
    test_limit: int | None = Field(None, ge=1)

    @field_validator("alter")
    @classmethod
    def _alter(cls, v: str | list[str] | None) -> str | list[str] | None:
        return _alter_names(v)

    @field_validator("train", "eval", mode="before")
    @classmethod
    def _domain_strings(cls, v: Any) -> Any:
        return _domains(v)

    @field_validator("val")
    @classmethod
    def _val_fraction(cls, v: float | str) -> float | str:
        if isinstance(v, float) and not 0 <= v < 1:
            raise ValueError("must be a fraction in [0, 1) of the training set, or 'test'")
        return v


class ModelConfig(BaseModel):
    """A registered model name and its keyword arguments, a layer list, or `module:Class`."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    name: str = "book_cnn"
    layers: list[dict[str, Any]] | None = None

    @property
    def params(self) -> dict[str, Any]:
        """Keyword arguments for the model factory: every key besides `name` and `layers`."""
        return dict(self.model_extra or {})


class TrainConfig(_Section):
    """Loss, optimizer, schedule and the knobs that only change speed."""

    loss: str = "cross_entropy"
    optimizer: str = "sgd"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(64, ge=1)
    epochs: int = Field(10, ge=1, le=100_000)
    patience: int = Field(0, ge=0)
    monitor: str = "val_loss"
    min_delta: float = Field(0.0, ge=0)
    eval_test: bool = True
    eval_batch_size: int = Field(1024, ge=1)
    precision: str = "auto"
    memory_format: str = "auto"
    threads: int = Field(0, ge=0)
    device: str = "auto"

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return _choice(v, DEVICES)

    @field_validator("loss")
    @classmethod
    def _loss(cls, v: str) -> str:
        return _choice(v, LOSSES)

    @field_validator("optimizer")
    @classmethod
    def _optimizer(cls, v: str) -> str:
        return _choice(v, OPTIMIZERS)

    @field_validator("monitor")
    @classmethod
    def _monitor(cls, v: str) -> str:
        return _choice(v, MONITORS)

    @field_validator("precision")
    @classmethod
    def _precision(cls, v: str) -> str:
        return _choice(v, PRECISIONS)

    @field_validator("memory_format")
    @classmethod
    def _memory_format(cls, v: str) -> str:
        return _choice(v, MEMORY_FORMATS)


class Experiment(_Section):
    """One training run: data, model and training settings plus the seed."""

    name: str | None = None
    seed: int = Field(0, ge=0, lt=2**32)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    def resolved(self) -> dict[str, Any]:
        """The full config as plain JSON-able data, defaults filled in."""
        return self.model_dump(mode="json")

    def hash(self, include_seed: bool = True) -> str:
        """Stable hash of what the run computes (machine-only keys left out)."""
        return config_hash(self.resolved(), include_seed=include_seed)


class _ChoiceError(ValueError):
    pass


def _choice(value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _ChoiceError(one_of(choices))
    return value


def domain_label(entry: dict[str, Any]) -> str:
    """A dataset entry's name: its ``name``, else the dataset and its alteration, ``mnist-colour``."""
    if entry.get("name"):
        return str(entry["name"])
    dataset = str(entry.get("dataset", "?"))
    if not entry.get("alter"):
        return dataset
    from cnnlab.data.alter import alter_name, parse_alter

    try:
        return f"{dataset}-{alter_name(parse_alter(entry['alter']))}"
    except CnnlabError:  # stored by another version: show it as written
        alter = entry["alter"]
        return f"{dataset}-{'+'.join(alter) if isinstance(alter, list) else alter}"


def domains_label(value: Any) -> str | None:
    """A ``data.train``/``data.eval`` list for people: ``mnist + svhn (size 28)``; None for any
    other value. Settings other than the name (weight, size, limit, channels) follow in brackets."""
    if not (isinstance(value, list) and value
            and all(isinstance(v, str) or (isinstance(v, dict) and "dataset" in v) for v in value)):
        return None
    parts = []
    for entry in value:
        entry = {"dataset": entry} if isinstance(entry, str) else entry
        extras = [f"weight {entry['weight']:g}"] if entry.get("weight", 1.0) != 1.0 else []
        extras += [f"{key} {entry[key]}" for key in ("size", "limit", "channels")
                   if entry.get(key) is not None]
        parts.append(domain_label(entry) + (f" ({', '.join(extras)})" if extras else ""))
    return " + ".join(parts)


def data_label(data: dict[str, Any]) -> str:
    """What a (resolved) data section trains on, for tables: ``mnist``, ``svhn + mnist-colour``."""
    if data.get("train"):
        return " + ".join(domain_label(e if isinstance(e, dict) else {"dataset": e}) for e in data["train"])
    return domain_label(data)


def config_hash(resolved: dict[str, Any], include_seed: bool = True) -> str:
    """SHA-256 (first 16 hex digits) of the canonical JSON of a resolved config."""
    cfg = copy.deepcopy(resolved)
    for path, default in LATER_KEYS.items():
        node = cfg
        for part in path[:-1]:
            node = node.get(part, {})
        if path[-1] in node and node[path[-1]] == default:
            del node[path[-1]]
    for path, aliases in HASHED_AS.items():
        node = cfg
        for part in path[:-1]:
            node = node.get(part, {})
        if path[-1] in node and node[path[-1]] in aliases:
            node[path[-1]] = aliases[node[path[-1]]]
    for path in MACHINE_KEYS:
        node = cfg
        for part in path[:-1]:
            node = node.get(part, {})
        node.pop(path[-1], None)
    if not include_seed:
        cfg.pop("seed", None)
    text = json.dumps(cfg, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_override(text: str) -> tuple[str, Any]:
    """`train.lr=0.001` -> ("train.lr", 0.001); the value is read as TOML, else as a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(Problem("override", text, "must look like section.key=value"))
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def apply_overrides(raw: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``raw`` with dotted-key overrides set (sections created as needed)."""
    out = copy.deepcopy(raw)
    items = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides)
    for key, value in items:
        node = out
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(Problem(".".join(parts[: i + 1]), child, "is not a section"))
            node = child
        node[parts[-1]] = value
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file is a ConfigError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(Problem("experiment file", str(path), "does not exist"))
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(Problem("experiment file", str(path), f"is not valid TOML: {exc}")) from exc


def _key(loc: tuple[Any, ...]) -> str:
    key = ""
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        elif not (isinstance(part, str) and (part.startswith(("function-", "literal[")))):
            key += ("." if key else "") + str(part)
    return key


_TYPE_MESSAGES = {
    "float_parsing": "is not a number",
    "float_type": "is not a number",
    "int_parsing": "is not an integer",
    "int_type": "is not an integer",
    "int_from_float": "is not an integer",
    "bool_parsing": "is not true or false",
    "bool_type": "is not true or false",
    "string_type": "is not a string",
    "list_type": "is not a list",
    "dict_type": "is not a table",
    "model_type": "is not a table",
    "model_attributes_type": "is not a table",
}


def _problems(exc: ValidationError, fields: dict[str, Any]) -> list[Problem]:
    problems: dict[str, Problem] = {}
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = _key(loc)
        kind = err["type"]
        ctx = err.get("ctx") or {}
        if kind == "extra_forbidden":
            section = _key(loc[:-1])
            allowed = sorted(fields.get(re.sub(r"\[\d+\]$", "[]", section), {}))
            text = "is not a known key; allowed: " + ", ".join(allowed)
            problems[key] = Problem(key, loc[-1], text)
            continue
        if kind == "value_error" and isinstance(ctx.get("error"), ValueError):
            text = str(ctx["error"])
        elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            op = {"greater_than": ">", "greater_than_equal": "≥",
                  "less_than": "<", "less_than_equal": "≤"}[kind]
            bound = next(iter(ctx.values()))
            text = f"is out of range: must be {op} {bound}"
        elif kind == "literal_error":
            text = "is not one of " + str(ctx.get("expected", "")).replace("'", "")
        else:
            text = _TYPE_MESSAGES.get(kind, f"is invalid: {err['msg']}")
        # A union (float | "test") reports each arm; keep the first message per key.
        problems.setdefault(key, Problem(key, err.get("input"), text))
    return list(problems.values())


def _known_fields() -> dict[str, Any]:
    return {
        "": list(Experiment.model_fields),
        "data": list(DataConfig.model_fields),
        "data.train[]": list(DomainConfig.model_fields),
        "data.eval[]": list(DomainConfig.model_fields),
        "train": list(TrainConfig.model_fields),
    }


def validate_experiment(raw: dict[str, Any]) -> Experiment:
    """Validate a raw experiment dict: field types and ranges, then registry names and shapes."""
    try:
        exp = Experiment.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, _known_fields())) from None
    problems = _registry_problems(exp)
    if problems:
        raise ConfigError(problems)
    return exp


def _registry_problems(exp: Experiment) -> list[Problem]:
    from cnnlab.data import list_datasets
    from cnnlab.models import validate_model_config

    problems: list[Problem] = []
    data = exp.data
    if data.train is None:
        if data.dataset not in list_datasets():
            problems.append(Problem("data.dataset", data.dataset, one_of(list_datasets())))
        elif data.dataset in ("imagefolder", "npz") and not data.path:
            problems.append(Problem("data.path", None, f"is required for dataset {data.dataset!r}"))
        if data.extra and data.dataset != "svhn":
            problems.append(Problem("data.extra", True, "only applies to dataset 'svhn'"))
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
            if domain.dataset not in list_datasets():
                problems.append(Problem(f"{key}.dataset", domain.dataset, one_of(list_datasets())))
            elif domain.dataset in ("imagefolder", "npz") and not domain.path:
                problems.append(Problem(f"{key}.path", None,
                                        f"is required for dataset {domain.dataset!r}"))
            if domain.extra and domain.dataset != "svhn":
                problems.append(Problem(f"{key}.extra", True, "only applies to dataset 'svhn'"))
            if section == "eval" and (domain.weight != 1.0 or domain.limit is not None):
                problems.append(Problem(f"{key}", domain.dataset,
                                        "weight and limit only apply to data.train entries"))
    problems += validate_model_config(exp.model)
    return problems


def load_experiment(
    path: str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> Experiment:
    """Read an experiment file (or start from ``base``), apply overrides and validate it."""
    raw = read_toml(path) if path is not None else copy.deepcopy(base or {})
    if overrides:
        raw = apply_overrides(raw, overrides)
    return validate_experiment(raw)
