"""Diagnosis of one run's curves as named states, each with the epochs and values behind it and advice.

States, checked in this order; the first four exclude every later one, since they contradict them
(accuracies are fractions, so 0.10 is 10 points; chance is 1 / the run's class count, which the
run stored with its split sizes, or `cnnlab.data.facts` knows for a built-in dataset):

- diverged (below).
- step too large: training (or validation) accuracy ends at chance (within ``chance_margin``:
  ``CHANCE_MARGIN``, or half of chance where that is less), and
  the learning rate is at least ``LARGE_LR`` for its optimizer with a validation loss that ends above
  its minimum, or the epoch-1
  cross-entropy is above ``UNIFORM_LOSS_RATIO`` × ln(classes) (worse than guessing uniformly) or the
  training loss ends above its epoch-1 value: the steps throw the model off. Lower the learning rate.
- step too small: training accuracy ends at chance and the training loss
  fell less than ``SMALL_STEP_FALL`` (relative) over the run; or training accuracy ends below
  ``UNDERFIT_TRAIN_ACC`` while still rising by more than the noise: learning, but slowly. Raise it.
- not learning: training accuracy ends at chance otherwise.
- step too small also: final training accuracy below ``UNDERFIT_TRAIN_ACC``, flat, with a training
  loss that fell less than ``SMALL_STEP_FALL`` (the loss is not moving, capacity is not the limit).
- underfitting: final training accuracy below ``UNDERFIT_TRAIN_ACC`` and flat (its change over the
  last ``UNDERFIT_WINDOW`` epochs within the noise).
- overfitting, not converged (left out when overfitting), unstable: below.
- healthy: none of these.

A change of accuracy counts only when it exceeds the noise of the split it is measured on:
``NOISE_Z`` standard errors of a difference of two binomial proportions on that split's images
(and at least ``MIN_IMAGES`` images). The split's size is read off the stored accuracies (each is
k / n); where that fails, ``FALLBACK_NOISE`` is the noise.

- diverged: a loss is NaN or infinite, or the final training loss is at least
  ``DIVERGED_LOSS_RATIO`` times its minimum, or training accuracy fell ``DIVERGED_ACC_DROP``
  below its peak, or the trainer stored the status ``diverged``. The other findings are
  consequences of a divergence and are not looked for.
- overfitting: validation loss reached its minimum at least ``OVERFIT_EPOCHS_AFTER_MIN`` epochs
  before the end and then rose by ``OVERFIT_VAL_LOSS_RISE`` (relative) while training loss fell,
  or training accuracy ends ``OVERFIT_ACC_GAP`` or more above validation accuracy.
- not converged (not looked for in an overfitting run): validation accuracy
  (training accuracy without a validation split) still rises by ``NOT_CONVERGED_SLOPE`` per epoch
  or more (least-squares slope) over the last quarter of the
  epochs, at least ``NOT_CONVERGED_MIN_WINDOW`` epochs, and by more than the noise in all.
- unstable: over the last half of the epochs (at least ``UNSTABLE_MIN_WINDOW``), validation
  accuracy scatters around its straight-line trend with a standard deviation of at least
  ``UNSTABLE_NOISE`` and more than the trend's own change over that window.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import numpy as np

from cnnlab.analyze.cures import cure_for
from cnnlab.analyze.rundata import RunData
from cnnlab.data.facts import RunFacts, run_facts

DIVERGED_LOSS_RATIO = 2.0
DIVERGED_ACC_DROP = 0.30
OVERFIT_VAL_LOSS_RISE = 0.10
OVERFIT_EPOCHS_AFTER_MIN = 2
OVERFIT_ACC_GAP = 0.10
UNDERFIT_TRAIN_ACC = 0.80
UNDERFIT_WINDOW = 3
NOT_CONVERGED_SLOPE = 0.003
NOT_CONVERGED_MIN_WINDOW = 2
UNSTABLE_MIN_WINDOW = 5
UNSTABLE_NOISE = 0.01
CHANCE_MARGIN = 0.05  # an accuracy this close above chance is at chance (or half of chance, if less)
UNIFORM_LOSS_RATIO = 1.2
LARGE_LR = {"sgd": 0.5, "adam": 0.05, "adamw": 0.05, "rmsprop": 0.05}  # learning rates that are large
SMALL_STEP_FALL = 0.10
FEW_STEPS = 1000  # a run with fewer optimizer steps than this is told to train longer before anything else
FEW_EPOCHS = 5  # ... and so is one of this many epochs or fewer when its step count is unknown
NOISE_Z = 2.0
MIN_IMAGES = 3
FALLBACK_NOISE = 0.005
MIN_SPLIT, MAX_SPLIT = 20, 100_000  # split sizes looked for in the accuracies
MAX_SPLIT_VALUES = 8  # distinct accuracies used to find the split size

DIVERGED, STEP_TOO_LARGE, STEP_TOO_SMALL, NOT_LEARNING = (
    "diverged",
    "step too large",
    "step too small",
    "stuck at chance, not learning",
)
OVERFITTING, UNDERFITTING, NOT_CONVERGED, UNSTABLE, HEALTHY = (
    "overfitting",
    "underfitting",
    "not converged",
    "unstable",
    "healthy",
)
STATES = (
    DIVERGED,
    STEP_TOO_LARGE,
    STEP_TOO_SMALL,
    NOT_LEARNING,
    UNDERFITTING,
    OVERFITTING,
    NOT_CONVERGED,
    UNSTABLE,
    HEALTHY,
)


@dataclass(frozen=True)
class Finding:
    """One problem seen in a run's curves: what, the evidence (epochs and values), what to try."""

    kind: str
    evidence: str
    epochs: tuple[int, ...]
    advice: str


@dataclass(frozen=True)
class Diagnosis:
    """A run's findings and a one-line account of how it ended."""

    run: RunData
    findings: list[Finding]
    outcome: str

    @property
    def state(self) -> str:
        """The first finding's state, or ``healthy``."""
        return self.findings[0].kind if self.findings else HEALTHY

    def text(self, width: int | None = None) -> str:
        """The diagnosis as plain text: the run, its outcome, then each finding with evidence and advice;
        lines wrapped to ``width`` with hanging indents when given."""
        lines = [("", f"{self.run.label}: {self.outcome}")]
        if not self.findings:
            lines.append(("  ", "healthy: no problem found (thresholds: cnnlab.analyze.diagnose)"))
        for finding in self.findings:
            lines += [("  ", f"{finding.kind}: {finding.evidence}"), ("    ", f"try: {finding.advice}")]
        if width is None:
            return "\n".join(indent + line for indent, line in lines)
        return "\n".join(
            textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent + "  ")
            for indent, line in lines
        )


def chance_margin(chance: float) -> float:
    """How far above ``chance`` an accuracy still sits at chance: ``CHANCE_MARGIN`` (5 points), or
    half of chance where that is less (with 100 classes, 0.5 point above 1%)."""
    return min(CHANCE_MARGIN, chance / 2)


def thresholds() -> list[str]:
    """The diagnosis thresholds in words, for the report's method section."""
    near = f"within {_pts(CHANCE_MARGIN)} points of chance (or half of chance where that is less)"
    return [
        f"step too large: training accuracy {near}, chance being 1 / the number of classes, with an "
        f"epoch-1 cross-entropy above {UNIFORM_LOSS_RATIO:g} × ln(classes) or a training loss that ends "
        "above its epoch-1 value",
        f"step too small: training accuracy {near} with a training "
        f"loss that fell less than {SMALL_STEP_FALL:.0%}, or below {_pct(UNDERFIT_TRAIN_ACC)} and still "
        "rising by more than the noise",
        f"stuck at chance, not learning: training accuracy {near} otherwise",
        f"noise: a change of accuracy counts when it exceeds {NOISE_Z:g} standard errors of a difference "
        f"of two proportions on the split's images (at least {MIN_IMAGES} images; {_pts(FALLBACK_NOISE)} "
        "points where the split's size is unknown)",
        f"diverged: a NaN or infinite loss, a final training loss ≥ {DIVERGED_LOSS_RATIO:g}× its minimum, "
        f"or training accuracy falling ≥ {_pts(DIVERGED_ACC_DROP)} points below its peak",
        f"overfitting: validation loss rising ≥ {OVERFIT_VAL_LOSS_RISE:.0%} above its minimum (reached "
        f"≥ {OVERFIT_EPOCHS_AFTER_MIN} epochs before the end) while training loss falls, or a final "
        f"train–validation accuracy gap ≥ {_pts(OVERFIT_ACC_GAP)} points",
        f"underfitting: final training accuracy < {_pct(UNDERFIT_TRAIN_ACC)} that moved no more than "
        f"the noise over the last {UNDERFIT_WINDOW} epochs",
        f"not converged: validation accuracy still rising ≥ {_pts(NOT_CONVERGED_SLOPE)} points per epoch "
        f"over the last quarter of the epochs (at least {NOT_CONVERGED_MIN_WINDOW})",
        f"unstable: over the last half of the epochs (at least {UNSTABLE_MIN_WINDOW}), validation accuracy "
        f"scattering ≥ {_pts(UNSTABLE_NOISE)} points (standard deviation) around its straight-line trend, "
        "more than the trend changes",
    ]


def diagnose_run(run: RunData) -> Diagnosis:
    """Diagnose a stored run."""
    findings = diagnose_epochs(run.epochs, status=run.status, error=run.record.error, settings=run.settings,
                               facts=run.facts)
    return Diagnosis(run, findings, _outcome(run))


def diagnose_epochs(
    epochs: Sequence[Mapping[str, float | None]],
    status: str | None = None,
    error: str | None = None,
    settings: Mapping[str, Any] | None = None,
    facts: RunFacts | None = None,
) -> list[Finding]:
    """Findings for one run's epochs (dicts with ``epoch``, ``train_loss``, ``val_acc``, ...); ``settings``
    (dotted config keys) name the learning rate and loss in the advice, and the advice of a
    finding that a setting cures ends with it as ``-s`` options (`cnnlab.analyze.cures`).
    ``facts``: the run's class count and split sizes (default: what `run_facts` knows from
    ``settings``; without a class count, chance is unknown and no at-chance state is found)."""
    settings = settings or {}
    facts = facts or run_facts(settings)
    return [_with_cure(finding, settings) for finding in _findings(epochs, status, error, settings, facts)]


def _with_cure(finding: Finding, settings: Mapping[str, Any]) -> Finding:
    cure = cure_for(finding, settings)
    if cure is None or all(option in finding.advice for option in cure.options()):
        return finding
    return replace(finding, advice=f"{finding.advice}; as settings: {cure.overrides()}")


def _findings(
    epochs: Sequence[Mapping[str, float | None]],
    status: str | None,
    error: str | None,
    settings: Mapping[str, Any],
    facts: RunFacts,
) -> list[Finding]:
    curves = _Curves(epochs, facts)
    diverged = _diverged(curves, status, error)
    if diverged:
        return [diverged]
    stuck = _at_chance(curves, settings)
    if stuck:
        return [stuck]
    low = _low_accuracy(curves, settings)
    if low:
        return [low]
    checks = (_overfitting(curves, settings), _not_converged(curves, settings), _unstable(curves))
    found = [finding for finding in checks if finding]
    if any(f.kind == OVERFITTING for f in found):
        found = [f for f in found if f.kind != NOT_CONVERGED]
    return found


def split_size(values: np.ndarray, expected: int | None = None) -> int | None:
    """The number of images an accuracy was measured on, read off its values (each is k / n): the
    smallest n that makes every value a whole count, or the multiple of it nearest ``expected`` (any
    multiple fits as well); None when no n up to ``MAX_SPLIT`` fits or the values cannot tell (fewer
    than two distinct ones)."""
    finite = np.unique(values[np.isfinite(values)])[:MAX_SPLIT_VALUES]
    if len(finite) < 2:
        return None
    smallest = _smallest_split(tuple(float(v) for v in finite))
    if smallest is None:
        return None
    return smallest * max(1, round(expected / smallest)) if expected else smallest


@cache
def _smallest_split(finite: tuple[float, ...]) -> int | None:
    sizes = np.arange(MIN_SPLIT, MAX_SPLIT + 1)
    for value in finite:  # each value narrows the candidates, so later ones cost little
        counts = value * sizes
        sizes = sizes[np.abs(counts - np.round(counts)) < 1e-7 * sizes + 1e-9]  # float32 round-off
        if not len(sizes):
            return None
    return int(sizes[0])


def noise_of(values: np.ndarray, level: float, expected: int | None = None) -> float:
    """The smallest change of an accuracy near ``level`` that is more than noise on its split
    (``expected``: the split's size as the config suggests, see `split_size`)."""
    n = split_size(values, expected)
    if n is None:
        return FALLBACK_NOISE
    p = min(max(level, 1.0 / n), 1 - 1.0 / n)
    return max(NOISE_Z * math.sqrt(2 * p * (1 - p) / n), MIN_IMAGES / n)


class _Curves:
    """A run's metric columns as arrays, NaN where missing, with its class count and split sizes."""

    def __init__(self, epochs: Sequence[Mapping[str, float | None]], facts: RunFacts | None = None) -> None:
        self.epoch = np.array([int(row["epoch"]) for row in epochs], dtype=int)  # type: ignore[arg-type]
        self._rows = epochs
        self.facts = facts or RunFacts()

    def __len__(self) -> int:
        return len(self.epoch)

    def __getitem__(self, metric: str) -> np.ndarray:
        return np.array(
            [
                math.nan if row.get(metric) is None else float(row[metric])  # type: ignore[arg-type]
                for row in self._rows
            ],
            dtype=float,
        )

    def has(self, metric: str) -> bool:
        return bool(np.isfinite(self[metric]).any())


def _diverged(c: _Curves, status: str | None, error: str | None) -> Finding | None:
    evidence: list[str] = []
    epochs: list[int] = []
    for metric, name in (("train_loss", "training loss"), ("val_loss", "validation loss")):
        values = c[metric]
        bad = np.flatnonzero(np.isinf(values) | (np.isnan(values) & _stored(c, metric)))
        if len(bad):
            i = int(bad[0])
            before = (
                f" (it was {values[i - 1]:.4g} at epoch {c.epoch[i - 1]})"
                if i and math.isfinite(values[i - 1])
                else ""
            )
            evidence.append(f"{name} became {_word(values[i])} at epoch {c.epoch[i]}{before}")
            epochs.append(int(c.epoch[i]))
    loss = c["train_loss"]
    if not evidence and np.isfinite(loss).sum() >= 2:
        i_min = int(np.nanargmin(loss))
        ratio = loss[-1] / loss[i_min] if loss[i_min] > 0 else math.inf
        if i_min < len(c) - 1 and ratio >= DIVERGED_LOSS_RATIO:
            evidence.append(
                f"training loss exploded from its minimum {loss[i_min]:.4g} at epoch "
                f"{c.epoch[i_min]} to {loss[-1]:.4g} at epoch {c.epoch[-1]} "
                f"({ratio:.1f}×, threshold {DIVERGED_LOSS_RATIO:g}×)"
            )
            epochs += [int(c.epoch[i_min]), int(c.epoch[-1])]
    acc = c["train_acc"]
    if np.isfinite(acc).sum() >= 2:
        i_max = int(np.nanargmax(acc))
        drop = acc[i_max] - acc[-1]
        if drop >= DIVERGED_ACC_DROP:
            evidence.append(
                f"training accuracy collapsed from {_pct(acc[i_max])} at epoch {c.epoch[i_max]} "
                f"to {_pct(acc[-1])} at epoch {c.epoch[-1]} ({_pts(drop)} points)"
            )
            epochs += [int(c.epoch[i_max]), int(c.epoch[-1])]
    if not evidence and status == "diverged":
        evidence.append("the trainer stopped it as diverged" + (f": {error}" if error else ""))
    if not evidence:
        return None
    return Finding(
        DIVERGED,
        "; ".join(evidence),
        tuple(sorted(set(epochs))),
        "lower the learning rate (train.lr), e.g. by 10×, or add batch normalisation",
    )


def _overfitting(c: _Curves, settings: Mapping[str, Any] | None = None) -> Finding | None:
    parts: list[str] = []
    epochs: list[int] = []
    val_loss, train_loss = c["val_loss"], c["train_loss"]
    if np.isfinite(val_loss).sum() >= OVERFIT_EPOCHS_AFTER_MIN + 1:
        k = int(np.nanargmin(val_loss))
        rise = val_loss[-1] / val_loss[k] - 1 if val_loss[k] > 0 else 0.0
        train_fell = math.isfinite(train_loss[k]) and train_loss[-1] < train_loss[k]
        if len(c) - 1 - k >= OVERFIT_EPOCHS_AFTER_MIN and rise >= OVERFIT_VAL_LOSS_RISE and train_fell:
            parts.append(
                f"validation loss reached its minimum {val_loss[k]:.4g} at epoch {c.epoch[k]}, "
                f"then rose {rise:.0%} to {val_loss[-1]:.4g} at epoch {c.epoch[-1]} while training "
                f"loss fell from {train_loss[k]:.4g} to {train_loss[-1]:.4g}"
            )
            epochs += [int(c.epoch[k]), int(c.epoch[-1])]
    train_acc, val_acc = c["train_acc"], c["val_acc"]
    gap = train_acc[-1] - val_acc[-1] if len(c) else math.nan
    if parts and math.isfinite(gap):
        parts.append(
            f"at epoch {c.epoch[-1]} training accuracy is {_pct(train_acc[-1])} against "
            f"{_pct(val_acc[-1])} on validation (gap {_pts(gap)} points)"
        )
    elif math.isfinite(gap) and gap >= OVERFIT_ACC_GAP:
        parts.append(
            f"at epoch {c.epoch[-1]} training accuracy is {_pct(train_acc[-1])} against "
            f"{_pct(val_acc[-1])} on validation, a gap of {_pts(gap)} points "
            f"(threshold {_pts(OVERFIT_ACC_GAP)})"
        )
        epochs.append(int(c.epoch[-1]))
    if not parts:
        return None
    best = _best_epoch(c, settings or {})
    if epochs and epochs[0] != epochs[-1] and best is not None:
        patience = "" if (settings or {}).get("train.patience") else " (train.patience)"
        advice = (
            f"keep the model of epoch {best[0]}, the best by {best[1]}, by stopping early{patience} or "
            "with train.restore_best, or regularise more (dropout, weight decay, data augmentation: "
            "data.augment)"
        )
    else:
        advice = ("regularise more (dropout, weight decay, data augmentation: data.augment) or use more "
                  "training data")
    return Finding(OVERFITTING, "; ".join(parts), tuple(epochs), advice)


def _best_epoch(c: _Curves, settings: Mapping[str, Any]) -> tuple[int, str] | None:
    """The best epoch by the metric early stopping monitors (``train.monitor``, validation loss by
    default), and that metric's name as the setting says it."""
    monitor = str(settings.get("train.monitor") or "val_loss")
    values = c[monitor]
    if not np.isfinite(values).any():
        return None
    i = int(np.nanargmax(values) if monitor.endswith("acc") else np.nanargmin(values))
    return int(c.epoch[i]), f"{monitor} (train.monitor)"


def _at_chance(c: _Curves, settings: Mapping[str, Any]) -> Finding | None:
    """Step too large, step too small or not learning, for a run whose training accuracy ends at chance."""
    acc, loss, val = c["train_acc"], c["train_loss"], c["val_acc"]
    chance = c.facts.chance
    if not len(c) or not math.isfinite(acc[-1]) or chance is None:
        return None  # without the class count, chance is unknown
    last = int(c.epoch[-1])
    level = f"chance level ({_pct(chance)}) for {c.facts.classes} classes"
    near = chance + chance_margin(chance)
    if acc[-1] <= near:
        at = f"training accuracy is {_pct(acc[-1])} at epoch {last}, {level}"
    elif math.isfinite(val[-1]) and val[-1] <= near:
        at = (f"validation accuracy is {_pct(val[-1])} at epoch {last}, {level} "
              f"(training accuracy {_pct(acc[-1])})")
    else:
        return None
    lr = settings.get("train.lr")
    first = float(loss[0]) if math.isfinite(loss[0]) else math.nan
    thrown = _thrown_off(c, settings)
    if thrown:
        return Finding(STEP_TOO_LARGE, f"{thrown}; {at}", (int(c.epoch[0]), last), _lower_lr(lr))
    if len(c) >= 2 and math.isfinite(loss[-1]) and loss[-1] > first:
        why = (
            f"the training loss rose from {first:.4g} at epoch {c.epoch[0]} to {loss[-1]:.4g} at epoch {last}"
        )
        return Finding(STEP_TOO_LARGE, f"{why}; {at}", (int(c.epoch[0]), last), _lower_lr(lr))
    fall = 1 - loss[-1] / first if first > 0 and math.isfinite(loss[-1]) else math.nan
    if len(c) >= 2 and math.isfinite(fall) and fall < SMALL_STEP_FALL:
        why = (
            f"the training loss moved only from {first:.4g} to {loss[-1]:.4g} ({-fall:+.2%}) over epochs "
            f"{c.epoch[0]}–{last}"
        )
        advice = _small_step_advice(settings, c.facts, last)
        return Finding(STEP_TOO_SMALL, f"{why}; {at}", (int(c.epoch[0]), last), advice)
    fell = f" although the training loss fell {fall:.0%}" if math.isfinite(fall) else ""
    return Finding(
        NOT_LEARNING,
        f"{at}{fell}",
        (last,),
        "check that images and labels match (cnnlab samples), then try the learning rate 10× lower and "
        "10× higher",
    )


def _thrown_off(c: _Curves, settings: Mapping[str, Any]) -> str | None:
    """Evidence that the steps are too large: an epoch-1 cross-entropy above guessing, or a learning
    rate at or above ``LARGE_LR`` for its optimizer with a validation loss that ends above its minimum."""
    first = c["train_loss"][0] if len(c) else math.nan
    classes = c.facts.classes
    uniform = math.log(classes) if classes and classes > 1 else math.nan
    if (
        settings.get("train.loss", "cross_entropy") == "cross_entropy"
        and first > UNIFORM_LOSS_RATIO * uniform
    ):
        return (
            f"the epoch-1 training loss {first:.3g} is above {uniform:.3g}, the loss of guessing every "
            f"class equally (ln {classes}): the first steps threw the model off"
        )
    lr, optimizer = settings.get("train.lr"), str(settings.get("train.optimizer", "sgd"))
    val_loss = c["val_loss"]
    if (
        not isinstance(lr, int | float)
        or lr < LARGE_LR.get(optimizer, math.inf)
        or not np.isfinite(val_loss).any()
    ):
        return None
    low = int(np.nanargmin(val_loss))
    if low == len(c) - 1:
        return None
    accuracy = c["val_acc"][np.isfinite(c["val_acc"])]
    if len(accuracy) >= 2 and np.ptp(accuracy) == 0:
        return (
            f"train.lr={lr:g} is large for {optimizer} (from {LARGE_LR[optimizer]:g} on) and validation "
            f"accuracy is exactly {_pct(accuracy[0])} at every epoch, as when the network predicts the "
            "same class for every image"
        )
    return (
        f"train.lr={lr:g} is large for {optimizer} (from {LARGE_LR[optimizer]:g} on) and the validation "
        f"loss bounces: its minimum {val_loss[low]:.4g} at epoch {c.epoch[low]}, {val_loss[-1]:.4g} at "
        f"epoch {c.epoch[-1]}"
    )


def _low_accuracy(c: _Curves, settings: Mapping[str, Any]) -> Finding | None:
    """Step too small (low and still rising) or underfitting (low and flat)."""
    acc = c["train_acc"]
    if len(c) < 2 or not math.isfinite(acc[-1]) or acc[-1] >= UNDERFIT_TRAIN_ACC:
        return None
    window = min(UNDERFIT_WINDOW, len(c))
    start = acc[-window]
    if not math.isfinite(start):
        return None
    gain = float(acc[-1] - start)
    noise = noise_of(acc, float(acc[-1]), c.facts.train)
    first, last = int(c.epoch[-window]), int(c.epoch[-1])
    evidence = (
        f"training accuracy is {_pct(acc[-1])} at epoch {last}, {_signed_pts(gain)} points since epoch "
        f"{first} (changes within ±{_pts(noise)} points are noise on this split)"
    )
    evidence += _validation_change(c, settings)
    loss = c["train_loss"]
    fall = 1 - loss[-1] / loss[0] if loss[0] > 0 and math.isfinite(loss[-1]) else math.nan
    thrown = _thrown_off(c, settings)
    if thrown:
        return Finding(
            STEP_TOO_LARGE,
            f"{thrown}; {evidence}",
            (int(c.epoch[0]), last),
            _lower_lr(settings.get("train.lr")),
        )
    if gain > noise:
        return Finding(
            STEP_TOO_SMALL,
            "learning, but slowly: " + evidence,
            (first, last),
            _small_step_advice(settings, c.facts, last),
        )
    if math.isfinite(fall) and fall < SMALL_STEP_FALL:
        moved = (
            f"the training loss moved only from {loss[0]:.4g} to {loss[-1]:.4g} ({-fall:+.2%}) over epochs "
            f"{c.epoch[0]}–{last}; "
        )
        return Finding(
            STEP_TOO_SMALL, moved + evidence, (int(c.epoch[0]), last),
            _small_step_advice(settings, c.facts, last),
        )
    if len(c) < UNDERFIT_WINDOW:
        return None
    return Finding(
        UNDERFITTING,
        "training accuracy stalls: " + evidence,
        (first, last),
        "give the model more capacity (filters, layers) or reduce dropout and weight decay; if the "
        "training loss also stalls early, try a learning-rate schedule (train.schedule)",
    )


def _validation_change(c: _Curves, settings: Mapping[str, Any]) -> str:
    val = c["val_acc"]
    finite = np.flatnonzero(np.isfinite(val))
    if len(finite) < 2:
        return ""
    a, b = val[finite[0]], val[finite[-1]]
    noise = noise_of(val, float(max(a, b)), c.facts.val)
    if abs(b - a) <= noise:
        return f"; validation accuracy {_pct(a)} → {_pct(b)}, within the noise (±{_pts(noise)} points)"
    moved = "fell" if b < a else "rose"
    return (
        f"; validation accuracy {moved} from {_pct(a)} at epoch {c.epoch[finite[0]]} to {_pct(b)} at epoch "
        f"{c.epoch[finite[-1]]}, more than the ±{_pts(noise)} points of noise on its split"
    )


def optimizer_steps(settings: Mapping[str, Any], facts: RunFacts, epochs: int) -> int | None:
    """How many optimizer steps ``epochs`` epochs take with these settings (None when the training
    split's size is unknown)."""
    size, batch = facts.train, settings.get("train.batch_size")
    if size is None or not isinstance(batch, int) or batch < 1:
        return None
    return epochs * math.ceil(size / batch)


def _small_step_advice(settings: Mapping[str, Any], facts: RunFacts, last: int | None = None) -> str:
    """Raise the learning rate (or switch to Adam, unless the run uses it; cross-entropy, unless it
    uses it) — after training longer when the run took few optimizer steps."""
    epochs = max(last or 0, _planned(settings)) or None
    parts = [_raise_lr(settings.get("train.lr"))]
    if settings.get("train.optimizer", "sgd") not in ("adam", "adamw"):
        parts[0] += ", or use train.optimizer=adam"
    if settings.get("train.loss") == "mse":
        parts.append(
            "with the mse loss the gradients are small near chance: train.loss=cross_entropy learns faster"
        )
    if isinstance(epochs, int) and epochs > 0:
        steps = optimizer_steps(settings, facts, last or epochs)  # the steps it took, not the ones planned
        longer = f"train longer first (train.epochs={2 * epochs}"
        if steps is not None and steps < FEW_STEPS:
            return f"{longer}): the run took only {steps} optimizer steps; then " + "; ".join(parts)
        if steps is None and epochs <= FEW_EPOCHS:
            few = f"{epochs} epoch{'s' if epochs > 1 else ''} may be too few"
            return f"{longer}): {few}; then " + "; ".join(parts)
        parts.append(f"or train longer (train.epochs={2 * epochs})")
    return "; ".join(parts)


def _lower_lr(lr: Any) -> str:
    if isinstance(lr, int | float) and lr > 0:
        return f"lower the learning rate, e.g. 10× to train.lr={lr / 10:g}"
    return "lower the learning rate (train.lr), e.g. 10×"


def _raise_lr(lr: Any) -> str:
    if isinstance(lr, int | float) and lr > 0:
        return f"raise the learning rate, e.g. 10× to train.lr={lr * 10:g}"
    return "raise the learning rate (train.lr), e.g. 10×"


def _more_epochs(last: int, settings: Mapping[str, Any]) -> int:
    """Twice the epochs trained, or twice the run's setting when it is larger (a run still training or
    stopped early): never the setting it already has."""
    planned = settings.get("train.epochs")
    return 2 * max(last, planned if isinstance(planned, int) else 0)


def _not_converged(c: _Curves, settings: Mapping[str, Any] | None = None) -> Finding | None:
    metric, name = (
        ("val_acc", "validation accuracy") if c.has("val_acc") else ("train_acc", "training accuracy")
    )
    values = c[metric]
    window = max(NOT_CONVERGED_MIN_WINDOW, len(c) // 4)
    if len(c) < window or not np.isfinite(values[-window:]).all():
        return None
    slope = float(np.polyfit(c.epoch[-window:], values[-window:], 1)[0])
    rise = slope * (c.epoch[-1] - c.epoch[-window])
    if slope < NOT_CONVERGED_SLOPE or rise <= noise_of(values, float(values[-1])):
        return None
    first, last = int(c.epoch[-window]), int(c.epoch[-1])
    best = int(np.nanargmax(values))
    where = (
        "the last epoch is its best"
        if best == len(c) - 1
        else (f"its best so far is {_pct(values[best])} at epoch {c.epoch[best]}")
    )
    return Finding(
        NOT_CONVERGED,
        f"{name} is still rising at the end: {_signed_pts(slope)} points per epoch over epochs "
        f"{first}–{last} (from {_pct(values[-window])} to {_pct(values[-1])}), and {where}",
        (first, last),
        f"train for more epochs, e.g. train.epochs={_more_epochs(last, settings or {})}",
    )


def _planned(settings: Mapping[str, Any] | None) -> int:
    epochs = (settings or {}).get("train.epochs")
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else 0


def _unstable(c: _Curves) -> Finding | None:
    values = c["val_acc"]
    window = max(UNSTABLE_MIN_WINDOW, len(c) // 2)
    if len(c) < window or not np.isfinite(values[-window:]).all():
        return None
    x, y = c.epoch[-window:].astype(float), values[-window:]
    slope, intercept = np.polyfit(x, y, 1)
    noise = float(np.std(y - (slope * x + intercept), ddof=2))
    trend = abs(float(slope)) * (x[-1] - x[0])
    if noise < max(UNSTABLE_NOISE, noise_of(values, float(np.mean(y))) / 2) or noise <= trend:
        return None
    jumps = np.abs(np.diff(y))
    j = int(np.argmax(jumps))
    first, last = int(x[0]), int(x[-1])
    return Finding(
        UNSTABLE,
        f"validation accuracy scatters ±{_pts(noise)} points around its trend over epochs {first}–{last}, "
        f"more than the trend moves ({_signed_pts(slope * (x[-1] - x[0]))} points); the largest jump is "
        f"from {_pct(y[j])} at epoch {int(x[j])} to {_pct(y[j + 1])} at epoch {int(x[j + 1])}",
        (int(x[j]), int(x[j + 1])),
        "lower the learning rate, raise the batch size, or use a learning-rate schedule (train.schedule)",
    )


def _outcome(run: RunData) -> str:
    record = run.record
    planned = f" of {record.planned_epochs}" if record.planned_epochs else ""
    return "; ".join([f"{record.status} after {len(run.epochs)}{planned} epochs", *outcome_numbers(run)])


def outcome_numbers(run: RunData) -> list[str]:
    """The numbers a diagnosis's outcome says, each a phrase: best and final validation accuracy,
    final test accuracy (those the run has)."""
    parts: list[str] = []
    acc = run.series("val_acc")
    if np.isfinite(acc).any():
        i = int(np.nanargmax(acc))
        parts.append(
            f"best validation accuracy {_pct(acc[i])} at epoch {run.epochs[i]['epoch']}, "
            f"final {_pct(acc[-1])}"
        )
    test = run.series("test_acc")
    if len(test) and math.isfinite(test[-1]):
        parts.append(f"final test accuracy {_pct(test[-1])}")
    return parts


def _stored(c: _Curves, metric: str) -> np.ndarray:
    """True where the epoch row holds a value (NaN included), False where the metric is absent."""
    return np.array([row.get(metric) is not None for row in c._rows], dtype=bool)


def _word(value: float) -> str:
    return "NaN" if math.isnan(value) else ("infinite" if value > 0 else "-infinite")


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%" if math.isfinite(value) else _word(value)


def _pts(value: float) -> str:
    return f"{100 * value:.3g}"


def _signed_pts(value: float) -> str:
    return ("+" if value >= 0 else "−") + _pts(abs(value))
