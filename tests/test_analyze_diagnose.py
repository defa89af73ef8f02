"""Diagnosis of curves: each finding from synthetic curves made to show it, with its evidence, and none
from a healthy run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnlab.analyze import diagnose
from cnnlab.analyze.diagnose import (
    DIVERGED,
    NOT_CONVERGED,
    OVERFITTING,
    UNDERFITTING,
    UNSTABLE,
    diagnose_epochs,
    thresholds,
)

EPOCHS = 20


def rows(train_loss, val_loss, train_acc, val_acc) -> list[dict[str, float | None]]:
    """Epoch dicts as the store returns them, numbered from 1."""
    return [
        {
            "epoch": i + 1,
            "train_loss": float(tl),
            "val_loss": float(vl),
            "train_acc": float(ta),
            "val_acc": float(va),
        }
        for i, (tl, vl, ta, va) in enumerate(zip(train_loss, val_loss, train_acc, val_acc, strict=True))
    ]


def healthy(n: int = EPOCHS, noise: float = 0.001, seed: int = 0) -> list[dict[str, float | None]]:
    """A run that learns quickly and settles: train just above validation, tiny noise."""
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    val_acc = 0.985 - 0.3 * np.exp(-t / 1.5) + rng.normal(0, noise, n)
    train_acc = np.minimum(0.999, val_acc + 0.005)
    train_loss = 0.03 + 0.8 * np.exp(-t / 1.5)
    val_loss = 0.045 + 0.8 * np.exp(-t / 1.5) + rng.normal(0, noise / 2, n)
    return rows(train_loss, val_loss, train_acc, val_acc)


def kinds(findings) -> list[str]:
    return [finding.kind for finding in findings]


@pytest.mark.parametrize("seed", range(5))
def test_a_healthy_run_has_no_finding(seed):
    assert diagnose_epochs(healthy(seed=seed), status="completed") == []


def test_overfitting_names_the_epoch_of_the_val_loss_minimum_and_the_rise():
    t = np.arange(EPOCHS)
    train_loss = 0.5 * np.exp(-t / 3) + 0.001
    val_loss = np.where(t < 5, 0.5 * np.exp(-t / 3) + 0.05, 0.5 * np.exp(-4 / 3) + 0.05 + 0.02 * (t - 4))
    train_acc = np.minimum(0.9999, 0.90 + 0.01 * t)
    val_acc = np.full(EPOCHS, 0.97)
    findings = diagnose_epochs(rows(train_loss, val_loss, train_acc, val_acc))
    assert kinds(findings) == [OVERFITTING]
    evidence = findings[0].evidence
    assert f"minimum {val_loss[4]:.4g} at epoch 5" in evidence
    rise = val_loss[-1] / val_loss[4] - 1
    assert f"rose {rise:.0%} to {val_loss[-1]:.4g} at epoch 20" in evidence
    assert "training loss fell" in evidence
    assert findings[0].epochs == (5, 20)
    assert "epoch 5" in findings[0].advice


def test_a_small_val_loss_rise_is_not_overfitting():
    t = np.arange(EPOCHS)
    val_loss = np.where(t < 10, 0.3 - 0.02 * t, 0.1 + 0.0005 * (t - 9))  # +5% at most: below the threshold
    data = rows(0.3 * np.exp(-t / 3), val_loss, np.full(EPOCHS, 0.97), np.full(EPOCHS, 0.965))
    assert diagnose_epochs(data) == []


def test_a_large_train_val_accuracy_gap_is_overfitting():
    base = healthy()
    for row in base:
        row["val_acc"] -= 0.15
    findings = diagnose_epochs(base)
    assert kinds(findings) == [OVERFITTING]
    gap = base[-1]["train_acc"] - base[-1]["val_acc"]
    assert gap > 0.15
    assert f"a gap of {100 * gap:.3g} points (threshold 10)" in findings[0].evidence


def test_underfitting_quotes_the_stalled_training_accuracy():
    t = np.arange(EPOCHS)
    train_acc = 0.65 - 0.3 * np.exp(-t)
    data = rows(1.2 + np.exp(-t), 1.25 + np.exp(-t), train_acc, train_acc - 0.01)
    findings = diagnose_epochs(data)
    assert kinds(findings) == [UNDERFITTING]
    assert f"stalls at {100 * train_acc[-1]:.2f}%" in findings[0].evidence
    assert "epochs 18–20" in findings[0].evidence


def test_nan_loss_is_divergence_at_the_first_bad_epoch_and_hides_other_findings():
    data = healthy()
    for row in data[6:]:
        row["train_loss"] = math.nan
        row["val_acc"] = 0.1
    findings = diagnose_epochs(data, status="diverged")
    assert kinds(findings) == [DIVERGED]
    assert (
        f"training loss became NaN at epoch 7 (it was {data[5]['train_loss']:.4g} at epoch 6)"
        in findings[0].evidence
    )
    assert findings[0].epochs[0] == 7


def test_infinite_validation_loss_is_divergence():
    data = healthy(n=5)
    data[-1]["val_loss"] = math.inf
    findings = diagnose_epochs(data)
    assert kinds(findings) == [DIVERGED]
    assert "validation loss became infinite at epoch 5" in findings[0].evidence


def test_a_finite_loss_explosion_is_divergence():
    # seed 003's lr 0.1: learns a little, then the loss climbs back to chance (ln 10) and accuracy to ~17%.
    train_loss = [0.9, 0.6, 0.5, 1.4, 2.2, 2.3, 2.3, 2.3]
    train_acc = [0.70, 0.80, 0.83, 0.45, 0.18, 0.17, 0.17, 0.17]
    findings = diagnose_epochs(rows(train_loss, train_loss, train_acc, train_acc))
    assert kinds(findings) == [DIVERGED]
    assert "exploded from its minimum 0.5 at epoch 3 to 2.3 at epoch 8 (4.6×" in findings[0].evidence
    assert "collapsed from 83.00% at epoch 3 to 17.00% at epoch 8" in findings[0].evidence


def test_the_stored_diverged_status_alone_is_reported_with_its_error():
    findings = diagnose_epochs([], status="diverged", error="loss became nan in epoch 1")
    assert kinds(findings) == [DIVERGED]
    assert "loss became nan in epoch 1" in findings[0].evidence


def test_not_converged_when_validation_accuracy_still_rises_at_the_end():
    t = np.arange(EPOCHS)
    acc = 0.80 + 0.008 * t  # +0.8 points per epoch to the last epoch
    findings = diagnose_epochs(rows(1.0 - 0.04 * t, 1.02 - 0.04 * t, acc + 0.003, acc))
    assert kinds(findings) == [NOT_CONVERGED]
    assert "+0.8 points per epoch over epochs 16–20" in findings[0].evidence
    assert "the last epoch is its best" in findings[0].evidence
    assert "train.epochs=40" in findings[0].advice


def test_unstable_when_validation_noise_exceeds_its_trend():
    data = healthy()
    swings = [0.04, -0.04] * (EPOCHS // 2)
    for row, swing in zip(data, swings, strict=True):
        row["val_acc"] -= 0.03 - swing / 2
        row["train_acc"] = 0.99
    findings = diagnose_epochs(data)
    assert kinds(findings) == [UNSTABLE]
    assert "scatters ±" in findings[0].evidence and "epochs 11–20" in findings[0].evidence
    assert "largest jump" in findings[0].evidence


def test_thresholds_are_module_constants_and_are_described():
    lines = thresholds()
    assert len(lines) == 5
    assert f"{diagnose.DIVERGED_LOSS_RATIO:g}×" in lines[0]
    assert f"{diagnose.OVERFIT_VAL_LOSS_RISE:.0%}" in lines[1]


def test_changing_a_threshold_changes_the_verdict(monkeypatch):
    data = healthy()
    for row in data:
        row["val_acc"] -= 0.06  # a 6.5-point gap: below the default 10-point threshold
    assert diagnose_epochs(data) == []
    monkeypatch.setattr(diagnose, "OVERFIT_ACC_GAP", 0.05)
    assert kinds(diagnose_epochs(data)) == [OVERFITTING]


def test_one_epoch_gives_no_shape_finding():
    assert diagnose_epochs(healthy(n=1)) == []
