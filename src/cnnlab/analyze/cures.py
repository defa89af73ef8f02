"""From a diagnosis to settings: the cure of each finding as exact experiment keys.

`cnnlab.analyze.diagnose` adds each cure to its finding's advice as ``-s`` options, and
`cnnlab.analyze.follow_up` writes them as an experiment or a two-cell sweep. The state names are
the diagnosis's (this module imports nothing of it, so the diagnosis can import it).

Every cure is a setting cnnlab has, changed from the value the run had (a setting the run
already has is never proposed):

- overfitting: augment the training batches (``data.augment = "crop"`` on digits, where a flip
  would turn a 2 into another shape, else ``"crop_flip"``) and keep the best epoch's weights
  (``train.restore_best``, with a validation split); already both: label smoothing 0.1, then
  weight decay 5e-4.
- diverged, step too large: the learning rate 10× lower.
- step too small: the learning rate 10× higher.
- underfitting: less regularisation where the run has some (augmentation off, else dropout
  halved, else weight decay 10× lower), else the one-cycle schedule.
- not converged: twice the epochs.
- unstable: a cosine schedule (a constant lr before), else the learning rate 3× lower.
- stuck at chance, not learning, healthy: no setting cures them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cnnlab.config import LATER_KEYS
from cnnlab.data.facts import DATASETS

LABEL_SMOOTHING = 0.1
WEIGHT_DECAY = 5e-4
# The diagnosis states a setting can cure (`cnnlab.analyze.diagnose` names them).
DIVERGED, STEP_TOO_LARGE, STEP_TOO_SMALL = "diverged", "step too large", "step too small"
OVERFITTING, UNDERFITTING = "overfitting", "underfitting"
NOT_CONVERGED, UNSTABLE = "not converged", "unstable"
CURABLE = (DIVERGED, STEP_TOO_LARGE, STEP_TOO_SMALL, OVERFITTING, UNDERFITTING, NOT_CONVERGED, UNSTABLE)


class FindingLike(Protocol):
    """What a cure needs of a finding: its state."""

    kind: str


@dataclass(frozen=True)
class Cure:
    """The settings (dotted keys) that treat one finding, with the run's values before."""

    finding: str
    settings: dict[str, Any]
    before: dict[str, Any]

    def options(self) -> list[str]:
        """Each setting as ``key=value`` (the value as TOML reads it)."""
        return [f"{key}={_toml_value(value)}" for key, value in self.settings.items()]

    def overrides(self) -> str:
        """The cure as ``-s key=value`` options."""
        return " ".join(f"-s {option}" for option in self.options())


def cure_for(finding: FindingLike, settings: Mapping[str, Any]) -> Cure | None:
    """The settings that treat ``finding`` in a run with ``settings`` (its dotted config), or
    None when no setting does."""
    changes = _changes(finding, settings)
    changes = {key: value for key, value in changes.items() if settings.get(key, _DEFAULTS.get(key)) != value}
    if not changes:
        return None
    return Cure(finding.kind, changes, {key: settings.get(key, _DEFAULTS.get(key)) for key in changes})


def cures(findings: Sequence[FindingLike], settings: Mapping[str, Any]) -> list[Cure]:
    """The cure of each finding that has one, in a run with ``settings``; a key changed by one
    cure only once (the first finding's cure wins)."""
    out: list[Cure] = []
    taken: set[str] = set()
    for finding in findings:
        cure = cure_for(finding, settings)
        if cure is None:
            continue
        changes = {key: value for key, value in cure.settings.items() if key not in taken}
        if changes:
            taken.update(changes)
            out.append(Cure(cure.finding, changes, {key: cure.before[key] for key in changes}))
    return out


# Defaults of keys that runs stored before the key existed do not have (train.warmup_epochs, ...),
# so a cure's "before" is the value such a run trained with, not None.
_DEFAULTS: dict[str, Any] = {
    **{".".join(path): value for path, value in LATER_KEYS.items()}, "train.weight_decay": 0.0,
}


def _changes(finding: FindingLike, settings: Mapping[str, Any]) -> dict[str, Any]:
    get = lambda key: settings.get(key, _DEFAULTS.get(key))  # noqa: E731
    lr = get("train.lr")
    kind = finding.kind
    if kind == OVERFITTING:
        return _overfitting(settings, get)
    if kind in (DIVERGED, STEP_TOO_LARGE) and isinstance(lr, int | float):
        return {"train.lr": _round(lr / 10)}
    if kind == STEP_TOO_SMALL and isinstance(lr, int | float):
        return {"train.lr": _round(lr * 10)}
    if kind == UNDERFITTING:
        off = {"data.augment": "none", "data.crop_padding": 0, "data.flip": False}
        augmented = {key: value for key, value in off.items() if get(key) not in (None, value)}
        if augmented:
            return augmented
        dropout = get("model.dropout")
        if isinstance(dropout, int | float) and not isinstance(dropout, bool) and dropout > 0:
            return {"model.dropout": _round(dropout / 2)}
        if get("train.weight_decay"):
            return {"train.weight_decay": _round(get("train.weight_decay") / 10)}
        return {"train.schedule": "one_cycle", "train.warmup_epochs": 0}
    if kind == NOT_CONVERGED and isinstance(get("train.epochs"), int):
        return {"train.epochs": 2 * int(get("train.epochs"))}
    if kind == UNSTABLE:
        if get("train.schedule") == "constant":
            return {"train.schedule": "cosine"}
        if isinstance(lr, int | float):
            return {"train.lr": _round(lr / 3)}
    return {}


def _overfitting(settings: Mapping[str, Any], get: Any) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if get("data.augment") == "none" and not get("data.crop_padding") and not get("data.flip"):
        changes["data.augment"] = "crop" if _digits(settings) else "crop_flip"
    if not get("train.restore_best") and get("data.val") not in (0, 0.0, None):
        changes["train.restore_best"] = True
    if changes:
        return changes
    if not get("train.label_smoothing") and get("train.loss") in ("cross_entropy", "nll"):
        return {"train.label_smoothing": LABEL_SMOOTHING}
    if not get("train.weight_decay"):
        return {"train.weight_decay": WEIGHT_DECAY}
    return {}


def _digits(settings: Mapping[str, Any]) -> bool:
    """Whether the run trains on digits, or on user images that might be (flips are not safe)."""
    entries = settings.get("data.train") or [settings.get("data.dataset")]
    names = [entry.get("dataset") if isinstance(entry, Mapping) else entry for entry in entries]
    return any(name not in DATASETS or DATASETS[name].digits or DATASETS[name].shape is None
               for name in names)


def _round(value: float) -> float:
    return float(f"{value:.3g}")


def _toml_value(value: Any) -> str:
    """``value`` as an ``-s`` option writes it: a plain word bare (``crop``: cnnlab reads a value
    that is not TOML as a string, and the shell leaves it alone), anything else as TOML."""
    import tomli_w

    if isinstance(value, str) and re.fullmatch(r"[a-z][a-z0-9_]*", value) and value not in ("true", "false",
                                                                                           "inf", "nan"):
        return value
    return tomli_w.dumps({"v": value}).partition("=")[2].strip()
