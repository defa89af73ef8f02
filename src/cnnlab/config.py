"""Experiment specs: TOML loading, `a.b=c` overrides and validation with one message per problem."""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cnnlab.errors import ConfigError, Problem, one_of

LOSSES = ("cross_entropy", "mse", "nll")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
MONITORS = ("val_loss", "val_acc")
PRECISIONS = ("fp32", "bf16", "auto")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")

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
MACHINE_KEYS = (("data", "root"), ("data", "download"), ("train", "threads"), ("name",))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Which images to train and evaluate on, and how to split them."""

    dataset: str = "mnist-sample"
    path: str | None = None
    root: str | None = None
    download: bool = True
    val: float | Literal["test"] = 0.1
    test_fraction: float = Field(0.2, gt=0, lt=1)
    size: int | None = Field(None, ge=4, le=1024)
    channels: Literal[1, 3] | None = None
    train_limit: int | None = Field(None, ge=1)
    test_limit: int | None = Field(None, ge=1)

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
    precision: str = "fp32"
    memory_format: str = "auto"
    threads: int = Field(0, ge=0)

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


def config_hash(resolved: dict[str, Any], include_seed: bool = True) -> str:
    """SHA-256 (first 16 hex digits) of the canonical JSON of a resolved config."""
    cfg = copy.deepcopy(resolved)
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
            allowed = sorted(fields.get(section, {}))
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
    if exp.data.dataset not in list_datasets():
        problems.append(Problem("data.dataset", exp.data.dataset, one_of(list_datasets())))
    elif exp.data.dataset in ("imagefolder", "npz") and not exp.data.path:
        problems.append(Problem("data.path", None, f"is required for dataset {exp.data.dataset!r}"))
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
