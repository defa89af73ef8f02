"""The experiment schema: TOML loading, `a.b=c` overrides and the fields' types, ranges and choices.

A leaf: it imports nothing of cnnlab's stages. Names that live in registries (datasets, models,
alterations) and settings that only conflict together are checked once, above the registries,
by `cnnlab.checks`, which every caller uses to validate an experiment."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from cnnlab.errors import ConfigError, Problem, did_you_mean, one_of

Loss = Literal["cross_entropy", "mse", "nll"]
OptimizerName = Literal["sgd", "adam", "adamw", "rmsprop"]
Monitor = Literal["val_loss", "val_acc"]
Precision = Literal["fp32", "bf16", "auto"]
MemoryFormat = Literal["auto", "channels_last", "contiguous"]
DeviceName = Literal["auto", "cpu", "cuda"]
ScheduleName = Literal["constant", "step", "cosine", "one_cycle", "plateau"]
AugmentName = Literal["none", "crop_flip", "crop"]
LOSSES: tuple[str, ...] = get_args(Loss)
OPTIMIZERS: tuple[str, ...] = get_args(OptimizerName)
MONITORS: tuple[str, ...] = get_args(Monitor)
PRECISIONS: tuple[str, ...] = get_args(Precision)
MEMORY_FORMATS: tuple[str, ...] = get_args(MemoryFormat)
DEVICES: tuple[str, ...] = get_args(DeviceName)
SCHEDULES: tuple[str, ...] = get_args(ScheduleName)
AUGMENTS: tuple[str, ...] = get_args(AugmentName)
# The options each learning-rate schedule takes (`train.<option>`); any other is refused for it.
# `warmup_epochs` applies to every schedule but one_cycle, which warms up by itself (pct_start).
SCHEDULE_OPTIONS: dict[str, tuple[str, ...]] = {
    "constant": ("warmup_epochs",),
    "step": ("warmup_epochs", "step_size", "gamma"),
    "cosine": ("warmup_epochs", "min_lr"),
    "one_cycle": ("pct_start", "div_factor", "final_div_factor"),
    "plateau": ("warmup_epochs", "gamma", "plateau_patience", "min_lr"),
}


def _number_only(kind: str) -> BeforeValidator:
    """TOML's true/false is not a number (pydantic would read it as 1/0), and neither is a string
    (pydantic would read "3" as 3): `-s "train.epochs='3'"` is refused, not trained."""

    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"is not {kind}")
        if isinstance(value, str | bytes):
            try:
                float(value)
            except ValueError:
                raise ValueError(f"is not {kind}") from None
            raise ValueError(f"is a string, not {kind}: write the number without quotes")
        return value

    return BeforeValidator(check)


Int = Annotated[int, _number_only("an integer")]
Number = Annotated[float, _number_only("a number")]

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
              ("data", "extra"): False, ("data", "augment"): "none", ("data", "crop_padding"): None,
              ("data", "flip"): None, ("train", "schedule"): "constant", ("train", "warmup_epochs"): 0,
              ("train", "step_size"): None, ("train", "gamma"): None, ("train", "min_lr"): None,
              ("train", "pct_start"): None, ("train", "div_factor"): None,
              ("train", "final_div_factor"): None, ("train", "plateau_patience"): None,
              ("train", "label_smoothing"): 0.0, ("train", "restore_best"): False}
# Values hashed as another value. `train.precision = "auto"` (the default since it replaced "fp32")
# picks the machine's fast path, as `train.device = "auto"` does, so it hashes as the old default:
# runs stored before the change keep their hashes. The resolved precision is stored with each run.
HASHED_AS = {("train", "precision"): {"auto": "fp32"}}
# What a stored run's config_hash is the hash of: 1, the config as written; 2 (since issue 23), the
# config with every model default filled in (`cnnlab.checks.fill_defaults`), so an explicit default
# is the same computation as leaving it out. A store's older hashes are computed again on opening
# (`cnnlab.checks.upgrade_hashes`), the old one kept as the run's `legacy_hash`.
HASH_VERSION = 2


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DomainConfig(_Section):
    """One dataset of a mixture (``data.train``) or one evaluation domain (``data.eval``).

    A bare string in those lists means ``{ dataset = "<string>" }``.
    """

    dataset: str
    alter: str | list[str] | None = None
    path: str | None = None
    size: Int | None = Field(None, ge=4, le=1024)
    channels: Literal[1, 3] | None = None
    extra: bool = False
    weight: Number = Field(1.0, gt=0, le=100, allow_inf_nan=False)
    limit: Int | None = Field(None, ge=1)
    name: str | None = Field(None, min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.+-]+$")


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
    val: Number | Literal["test"] = 0.1
    test_fraction: Number = Field(0.2, gt=0, lt=1)
    size: Int | None = Field(None, ge=4, le=1024)
    channels: Literal[1, 3] | None = None
    train_limit: Int | None = Field(None, ge=1)
    test_limit: Int | None = Field(None, ge=1)
    # Augmentation of training batches (never of validation or test images): a named policy,
    # and one key per transform, which overrides the policy's value (`cnnlab.data.augment`).
    augment: AugmentName = "none"
    crop_padding: Int | None = Field(None, ge=0, le=64)
    flip: bool | None = None

    @field_validator("train", "eval", mode="before")
    @classmethod
    def _domain_strings(cls, v: Any) -> Any:
        return _domains(v)

    @field_validator("val", mode="before")
    @classmethod
    def _val_word(cls, v: Any) -> Any:
        if isinstance(v, str) and v != "test":
            raise ValueError("must be a fraction in [0, 1) of the training set, or 'test'")
        return v

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

    loss: Loss = "cross_entropy"
    optimizer: OptimizerName = "sgd"
    # Upper bounds keep a typo (1e308, an extra zero or ten) from training: far past any rate or
    # size that trains a CNN, well inside what the arithmetic and the memory can take.
    lr: Number = Field(0.01, gt=0, le=1000, allow_inf_nan=False)
    momentum: Number = Field(0.0, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: Number = Field(0.0, ge=0, le=1, allow_inf_nan=False)
    batch_size: Int = Field(64, ge=1, le=1_000_000)
    epochs: Int = Field(10, ge=1, le=100_000)
    patience: Int = Field(0, ge=0, le=100_000)
    monitor: Monitor = "val_loss"
    min_delta: Number = Field(0.0, ge=0, le=1e6, allow_inf_nan=False)
    eval_test: bool = True
    eval_batch_size: Int = Field(1024, ge=1, le=1_000_000)
    precision: Precision = "auto"
    memory_format: MemoryFormat = "auto"
    threads: Int = Field(0, ge=0, le=4096)
    device: DeviceName = "auto"
    # Learning-rate schedule (`cnnlab.train.schedules`); its options are None when not given, so a
    # check can refuse an option the chosen schedule does not take (`SCHEDULE_OPTIONS`).
    schedule: ScheduleName = "constant"
    warmup_epochs: Int = Field(0, ge=0)
    step_size: Int | None = Field(None, ge=1)
    gamma: Number | None = Field(None, gt=0, lt=1)
    min_lr: Number | None = Field(None, ge=0, allow_inf_nan=False)
    pct_start: Number | None = Field(None, gt=0, lt=1)
    div_factor: Number | None = Field(None, ge=1, allow_inf_nan=False)
    final_div_factor: Number | None = Field(None, ge=1, allow_inf_nan=False)
    plateau_patience: Int | None = Field(None, ge=0)
    label_smoothing: Number = Field(0.0, ge=0, lt=1)
    restore_best: bool = False


class Experiment(_Section):
    """One training run: data, model and training settings plus the seed."""

    name: str | None = None
    seed: Int = Field(0, ge=0, lt=2**32)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    def resolved(self) -> dict[str, Any]:
        """The full config as plain JSON-able data, defaults filled in."""
        return self.model_dump(mode="json")

    def hash(self, include_seed: bool = True) -> str:
        """Stable hash of what the run computes (machine-only keys left out)."""
        return config_hash(self.resolved(), include_seed=include_seed)


def config_hash(resolved: dict[str, Any], include_seed: bool = True) -> str:
    """SHA-256 (first 16 hex digits) of the canonical JSON of a resolved config. A stored config
    is data: a section that is not a table is hashed as it is."""
    cfg = copy.deepcopy(resolved)
    for path, default in LATER_KEYS.items():
        node = _parent(cfg, path)
        if node is not None and path[-1] in node and node[path[-1]] == default:
            del node[path[-1]]
    for path, aliases in HASHED_AS.items():
        node = _parent(cfg, path)
        if node is not None and isinstance(node.get(path[-1]), str) and node[path[-1]] in aliases:
            node[path[-1]] = aliases[node[path[-1]]]
    for path in MACHINE_KEYS:
        node = _parent(cfg, path)
        if node is not None:
            node.pop(path[-1], None)
    if not include_seed and isinstance(cfg, dict):
        cfg.pop("seed", None)
    text = json.dumps(cfg, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _parent(cfg: Any, path: tuple[str, ...]) -> dict[str, Any] | None:
    """The table holding ``path``'s last key, None when a table on the way is missing or is not one."""
    node = cfg
    for part in path[:-1]:
        node = node.get(part, {}) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


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
    "finite_number": "is not a finite number",
    "string_type": "is not a string",
    "list_type": "is not a list",
    "dict_type": "is not a table",
    "model_type": "is not a table",
    "model_attributes_type": "is not a table",
}


def field_problems(exc: ValidationError) -> list[Problem]:
    """One Problem per key from the schema's validation error: unknown keys, types, ranges and
    choices, each naming the key, the value received and what is allowed."""
    return _problems(exc, _known_fields())


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
            text = "is not a known key; allowed: " + ", ".join(allowed) + did_you_mean(loc[-1], allowed)
            problems[key] = Problem(key, loc[-1], text)
            continue
        if kind == "value_error" and isinstance(ctx.get("error"), ValueError):
            text = str(ctx["error"])
        elif kind in _BOUND_SIGNS:
            bound = next(iter(ctx.values()))
            text = f"is out of range: must be {_allowed_range(loc) or f'{_BOUND_SIGNS[kind]} {bound}'}"
        elif kind == "literal_error":
            expected = re.findall(r"'([^']*)'|(\d+)", str(ctx.get("expected", "")))
            text = one_of([quoted or number for quoted, number in expected], err.get("input"))
        else:
            text = _TYPE_MESSAGES.get(kind, f"is invalid: {err['msg']}")
        # A union (float | "test") reports each arm; keep the first message per key.
        problems.setdefault(key, Problem(key, err.get("input"), text))
    return list(problems.values())


_BOUND_SIGNS = {"greater_than": ">", "greater_than_equal": "≥", "less_than": "<", "less_than_equal": "≤"}


def _allowed_range(loc: tuple[Any, ...]) -> str | None:
    """Both bounds of the numeric field at ``loc`` ("> 0 and ≤ 10"), or None when it has one."""
    model: Any = Experiment
    info = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not isinstance(part, str) or fields is None or part not in fields:
            return None
        info = fields[part]
        model = info.annotation
    bounds = [f"{sign} {getattr(meta, name)}" for meta in (info.metadata if info else [])
              for name, sign in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"))
              if getattr(meta, name, None) is not None]
    return " and ".join(bounds) if len(bounds) > 1 else None


def _known_fields() -> dict[str, Any]:
    return {
        "": list(Experiment.model_fields),
        "data": list(DataConfig.model_fields),
        "data.train[]": list(DomainConfig.model_fields),
        "data.eval[]": list(DomainConfig.model_fields),
        "train": list(TrainConfig.model_fields),
    }
