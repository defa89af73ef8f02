"""Diagnosis of one run's curves, each finding with the epochs and values behind it.

Findings and the thresholds that trigger them (accuracies are fractions, so 0.10 is 10 points):

- diverged: a loss is NaN or infinite, or the final training loss is at least
  ``DIVERGED_LOSS_RATIO`` times its minimum, or training accuracy fell ``DIVERGED_ACC_DROP``
  below its peak, or the trainer stored the status ``diverged``. The other findings are
  consequences of a divergence and are not looked for.
- overfitting: validation loss reached its minimum at least ``OVERFIT_EPOCHS_AFTER_MIN`` epochs
  before the end and then rose by ``OVERFIT_VAL_LOSS_RISE`` (relative) while training loss fell,
  or training accuracy ends ``OVERFIT_ACC_GAP`` or more above validation accuracy.
- underfitting: final training accuracy below ``UNDERFIT_TRAIN_ACC`` and it gained less than
  ``UNDERFIT_FLAT_GAIN`` over the last ``UNDERFIT_WINDOW`` epochs.
- not converged: validation accuracy (training accuracy without a validation split) still rises
  by ``NOT_CONVERGED_SLOPE`` per epoch or more (least-squares slope) over the last quarter of the
  epochs, at least ``NOT_CONVERGED_MIN_WINDOW`` epochs.
- unstable: over the last half of the epochs (at least ``UNSTABLE_MIN_WINDOW``), validation
  accuracy scatters around its straight-line trend with a standard deviation of at least
  ``UNSTABLE_NOISE`` and more than the trend's own change over that window.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cnnlab.analyze.rundata import RunData

DIVERGED_LOSS_RATIO = 2.0
DIVERGED_ACC_DROP = 0.30
OVERFIT_VAL_LOSS_RISE = 0.10
OVERFIT_EPOCHS_AFTER_MIN = 2
OVERFIT_ACC_GAP = 0.10
UNDERFIT_TRAIN_ACC = 0.80
UNDERFIT_FLAT_GAIN = 0.02
UNDERFIT_WINDOW = 3
NOT_CONVERGED_SLOPE = 0.003
NOT_CONVERGED_MIN_WINDOW = 2
UNSTABLE_MIN_WINDOW = 5
UNSTABLE_NOISE = 0.01

DIVERGED, OVERFITTING, UNDERFITTING, NOT_CONVERGED, UNSTABLE = (
    "diverged",
    "overfitting",
    "underfitting",
    "not converged",
    "unstable",
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

    def text(self) -> str:
        """The diagnosis as plain text: the run, its outcome, then each finding with evidence and advice."""
        lines = [f"{self.run.label}: {self.outcome}"]
        if not self.findings:
            lines.append("  no problem found (thresholds: cnnlab.analyze.diagnose)")
        for finding in self.findings:
            lines += [f"  {finding.kind}: {finding.evidence}", f"    try: {finding.advice}"]
        return "\n".join(lines)


def thresholds() -> list[str]:
    """The diagnosis thresholds in words, for the report's method section."""
    return [
        f"diverged: a NaN or infinite loss, a final training loss ≥ {DIVERGED_LOSS_RATIO:g}× its minimum, "
        f"or training accuracy falling ≥ {_pts(DIVERGED_ACC_DROP)} points below its peak",
        f"overfitting: validation loss rising ≥ {OVERFIT_VAL_LOSS_RISE:.0%} above its minimum (reached "
        f"≥ {OVERFIT_EPOCHS_AFTER_MIN} epochs before the end) while training loss falls, or a final "
        f"train–validation accuracy gap ≥ {_pts(OVERFIT_ACC_GAP)} points",
        f"underfitting: final training accuracy < {_pct(UNDERFIT_TRAIN_ACC)} that gained "
        f"< {_pts(UNDERFIT_FLAT_GAIN)} points over the last {UNDERFIT_WINDOW} epochs",
        f"not converged: validation accuracy still rising ≥ {_pts(NOT_CONVERGED_SLOPE)} points per epoch "
        f"over the last quarter of the epochs (at least {NOT_CONVERGED_MIN_WINDOW})",
        f"unstable: over the last half of the epochs (at least {UNSTABLE_MIN_WINDOW}), validation accuracy "
        f"scattering ≥ {_pts(UNSTABLE_NOISE)} points (standard deviation) around its straight-line trend, "
        "more than the trend changes",
    ]


def diagnose_run(run: RunData) -> Diagnosis:
    """Diagnose a stored run."""
    findings = diagnose_epochs(run.epochs, status=run.status, error=run.record.error)
    return Diagnosis(run, findings, _outcome(run))


def diagnose_epochs(
    epochs: Sequence[Mapping[str, float | None]], status: str | None = None, error: str | None = None
) -> list[Finding]:
    """Findings for one run's epochs (dicts with ``epoch``, ``train_loss``, ``val_acc``, ...)."""
    curves = _Curves(epochs)
    diverged = _diverged(curves, status, error)
    if diverged:
        return [diverged]
    checks = (_overfitting, _underfitting, _not_converged, _unstable)
    return [finding for check in checks if (finding := check(curves)) is not None]


class _Curves:
    """A run's metric columns as arrays, NaN where missing."""

    def __init__(self, epochs: Sequence[Mapping[str, float | None]]) -> None:
        self.epoch = np.array([int(row["epoch"]) for row in epochs], dtype=int)  # type: ignore[arg-type]
        self._rows = epochs

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


def _overfitting(c: _Curves) -> Finding | None:
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
    if epochs and epochs[0] != epochs[-1]:
        advice = (
            f"keep the model of epoch {epochs[0]} by stopping early (train.patience), or regularise "
            "more (dropout, weight decay, data augmentation)"
        )
    else:
        advice = "regularise more (dropout, weight decay, data augmentation) or use more training data"
    return Finding(OVERFITTING, "; ".join(parts), tuple(epochs), advice)


def _underfitting(c: _Curves) -> Finding | None:
    acc = c["train_acc"]
    if len(c) < UNDERFIT_WINDOW or not np.isfinite(acc[-UNDERFIT_WINDOW:]).all():
        return None
    window = acc[-UNDERFIT_WINDOW:]
    gain = window[-1] - window[0]
    if acc[-1] >= UNDERFIT_TRAIN_ACC or gain >= UNDERFIT_FLAT_GAIN:
        return None
    first, last = int(c.epoch[-UNDERFIT_WINDOW]), int(c.epoch[-1])
    return Finding(
        UNDERFITTING,
        f"training accuracy stalls at {_pct(acc[-1])}: it moved {_signed_pts(gain)} points over epochs "
        f"{first}–{last} (between {_pct(window.min())} and {_pct(window.max())})",
        (first, last),
        "give the model more capacity (filters, layers), raise the learning rate or reduce dropout",
    )


def _not_converged(c: _Curves) -> Finding | None:
    metric, name = (
        ("val_acc", "validation accuracy") if c.has("val_acc") else ("train_acc", "training accuracy")
    )
    values = c[metric]
    window = max(NOT_CONVERGED_MIN_WINDOW, len(c) // 4)
    if len(c) < window or not np.isfinite(values[-window:]).all():
        return None
    slope = float(np.polyfit(c.epoch[-window:], values[-window:], 1)[0])
    if slope < NOT_CONVERGED_SLOPE:
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
        f"train for more epochs, e.g. train.epochs={2 * last}",
    )


def _unstable(c: _Curves) -> Finding | None:
    values = c["val_acc"]
    window = max(UNSTABLE_MIN_WINDOW, len(c) // 2)
    if len(c) < window or not np.isfinite(values[-window:]).all():
        return None
    x, y = c.epoch[-window:].astype(float), values[-window:]
    slope, intercept = np.polyfit(x, y, 1)
    noise = float(np.std(y - (slope * x + intercept), ddof=2))
    trend = abs(float(slope)) * (x[-1] - x[0])
    if noise < UNSTABLE_NOISE or noise <= trend:
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
        "lower the learning rate, raise the batch size, or use a learning-rate schedule",
    )


def _outcome(run: RunData) -> str:
    record = run.record
    planned = f" of {record.planned_epochs}" if record.planned_epochs else ""
    parts = [f"{record.status} after {len(run.epochs)}{planned} epochs"]
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
    return "; ".join(parts)


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
