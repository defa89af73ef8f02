"""Diagnosis of curves: each finding from synthetic curves made to show it, with its evidence, and none
from a healthy run."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cnnlab.analyze import diagnose
from cnnlab.analyze.diagnose import (
    DIVERGED,
    NOT_CONVERGED,
    NOT_LEARNING,
    OVERFITTING,
    STEP_TOO_LARGE,
    STEP_TOO_SMALL,
    UNDERFITTING,
    UNSTABLE,
    diagnose_epochs,
    thresholds,
)
from cnnlab.data.facts import RunFacts

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
    assert f"stalls: training accuracy is {100 * train_acc[-1]:.2f}% at epoch 20" in findings[0].evidence
    assert "since epoch 18" in findings[0].evidence


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
    acc = np.round(0.80 + 0.0083 * t, 4)  # +0.83 points per epoch to the last epoch, on 10,000 images
    findings = diagnose_epochs(rows(1.0 - 0.04 * t, 1.02 - 0.04 * t, acc + 0.003, acc))
    assert kinds(findings) == [NOT_CONVERGED]
    assert "+0.83 points per epoch over epochs 16–20" in findings[0].evidence
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
    assert len(lines) == 9
    assert f"{diagnose.DIVERGED_LOSS_RATIO:g}×" in lines[4]
    assert f"{diagnose.OVERFIT_VAL_LOSS_RISE:.0%} above its minimum" in lines[5]


def test_changing_a_threshold_changes_the_verdict(monkeypatch):
    data = healthy()
    for row in data:
        row["val_acc"] -= 0.06  # a 6.5-point gap: below the default 10-point threshold
    assert diagnose_epochs(data) == []
    monkeypatch.setattr(diagnose, "OVERFIT_ACC_GAP", 0.05)
    assert kinds(diagnose_epochs(data)) == [OVERFITTING]


def test_one_epoch_gives_no_shape_finding():
    assert diagnose_epochs(healthy(n=1)) == []


# Epochs of real runs of three_conv_cnn on mnist-sample (3 epochs each; 3,600 training and 400
# validation images), recorded from `cnnlab train examples/three-conv-cnn.toml -s data.dataset=mnist-sample`.
REAL_LR_1 = [
    {"epoch": 1, "train_loss": 2.381864, "train_acc": 503 / 3600, "val_loss": 2.307963, "val_acc": 40 / 400},
    {"epoch": 2, "train_loss": 2.297189, "train_acc": 442 / 3600, "val_loss": 2.244517, "val_acc": 45 / 400},
    {"epoch": 3, "train_loss": 2.237689, "train_acc": 577 / 3600, "val_loss": 2.363370, "val_acc": 40 / 400},
]
REAL_MSE_SGD = [
    {
        "epoch": 1,
        "train_loss": 0.0900514,
        "train_acc": 358 / 3600,
        "val_loss": 0.0900496,
        "val_acc": 37 / 400,
    },
    {
        "epoch": 2,
        "train_loss": 0.0900456,
        "train_acc": 358 / 3600,
        "val_loss": 0.0900439,
        "val_acc": 37 / 400,
    },
    {
        "epoch": 3,
        "train_loss": 0.0900398,
        "train_acc": 360 / 3600,
        "val_loss": 0.0900381,
        "val_acc": 37 / 400,
    },
]
REAL_CE_SGD = [
    {"epoch": 1, "train_loss": 2.299365, "train_acc": 382 / 3600, "val_loss": 2.292566, "val_acc": 52 / 400},
    {"epoch": 2, "train_loss": 2.287171, "train_acc": 506 / 3600, "val_loss": 2.280498, "val_acc": 77 / 400},
    {"epoch": 3, "train_loss": 2.273964, "train_acc": 826 / 3600, "val_loss": 2.265784, "val_acc": 91 / 400},
]
SAMPLE = {"data.dataset": "mnist-sample", "data.val": 0.1, "data.test_fraction": 0.2}


def test_real_lr_1_run_at_chance_is_a_step_too_large():
    settings = {**SAMPLE, "train.loss": "cross_entropy", "train.optimizer": "sgd", "train.lr": 1.0}
    (finding,) = diagnose_epochs(REAL_LR_1, settings=settings)
    assert finding.kind == STEP_TOO_LARGE
    assert "lower the learning rate, e.g. 10× to train.lr=0.1" in finding.advice
    assert "raise" not in finding.advice


def test_real_mse_sgd_run_stuck_at_chance_is_a_step_too_small_not_a_capacity_problem():
    settings = {**SAMPLE, "train.loss": "mse", "train.optimizer": "sgd", "train.lr": 0.01}
    (finding,) = diagnose_epochs(REAL_MSE_SGD, settings=settings)
    assert finding.kind == STEP_TOO_SMALL and "capacity" not in finding.advice
    assert "raise the learning rate, e.g. 10× to train.lr=0.1" in finding.advice


def test_real_slow_cross_entropy_sgd_run_is_not_called_healthy():
    settings = {**SAMPLE, "train.loss": "cross_entropy", "train.optimizer": "sgd", "train.lr": 0.01}
    (finding,) = diagnose_epochs(REAL_CE_SGD, settings=settings)
    assert finding.kind == STEP_TOO_SMALL and finding.evidence.startswith("learning, but slowly")


def test_a_run_stuck_at_chance_gets_one_finding_not_two_that_contradict():
    data = [
        dict(row, train_acc=0.1 + 0.0025 * (row["epoch"] - 1), train_loss=2.3 - 0.3 * row["epoch"])
        for row in REAL_MSE_SGD
    ]
    findings = diagnose_epochs(data, settings=SAMPLE)
    assert kinds(findings) == [NOT_LEARNING]


def flat_at(acc: float, n: int = 8) -> list[dict[str, float | None]]:
    """A run whose accuracies sit at ``acc`` while its training loss falls by half."""
    loss = 2.0 * 0.9 ** np.arange(n)
    return rows(loss, loss, np.full(n, acc), np.full(n, acc))


def test_at_chance_margin_scales_with_the_class_count():
    hundred, ten = RunFacts(100), RunFacts(10)
    # 100 classes: chance 1%, the margin half of it (0.5 point): 6% is six times chance, not "at chance".
    assert diagnose.chance_margin(0.01) == pytest.approx(0.005)
    assert NOT_LEARNING not in kinds(diagnose_epochs(flat_at(0.06), facts=hundred))
    assert kinds(diagnose_epochs(flat_at(0.014), facts=hundred)) == [NOT_LEARNING]
    # 10 classes: unchanged, 5 points above 10%.
    assert diagnose.chance_margin(0.1) == pytest.approx(0.05)
    assert kinds(diagnose_epochs(flat_at(0.145), facts=ten)) == [NOT_LEARNING]
    assert NOT_LEARNING not in kinds(diagnose_epochs(flat_at(0.16), facts=ten))
    assert any("half of chance where that is less" in line for line in thresholds())


def test_split_size_is_read_off_the_accuracies():
    assert diagnose.split_size(np.array([77 / 400, 91 / 400, 52 / 400]), expected=400) == 400
    assert diagnose.split_size(np.array([0.1, 0.1])) is None


# three_conv_cnn with Adam at train.lr=1.0 on mnist-sample: the epoch-1 loss explodes, then sits at chance.
REAL_ADAM_LR_1 = [
    {"epoch": 1, "train_loss": 18310838.68, "train_acc": 378 / 3600, "val_loss": 2.6396, "val_acc": 40 / 400},
    {"epoch": 2, "train_loss": 2.526, "train_acc": 343 / 3600, "val_loss": 2.3746, "val_acc": 40 / 400},
    {"epoch": 3, "train_loss": 2.3248, "train_acc": 350 / 3600, "val_loss": 2.3153, "val_acc": 40 / 400},
]


def test_real_adam_run_at_lr_1_is_a_step_too_large_not_underfitting():
    settings = {**SAMPLE, "train.loss": "cross_entropy", "train.optimizer": "adam", "train.lr": 1.0}
    (finding,) = diagnose_epochs(REAL_ADAM_LR_1, settings=settings)
    assert finding.kind == STEP_TOO_LARGE
    assert finding.evidence.startswith(
        "the epoch-1 training loss 1.83e+07 is above 2.3, the loss of guessing"
    )
    assert finding.advice == "lower the learning rate, e.g. 10× to train.lr=0.1"


def test_an_epoch_1_loss_above_guessing_is_a_step_too_large_in_synthetic_curves_too():
    t = np.arange(6)
    data = rows(3.29 - 0.2 * np.minimum(t, 5) / 5, 2.31 + 0 * t, 0.1 + 0 * t, 0.1 + 0 * t)
    assert kinds(diagnose_epochs(data, settings={"train.lr": 1.0})) == [STEP_TOO_LARGE]


def test_the_issues_slow_run_with_validation_falling_is_not_called_healthy():
    data = [
        {"epoch": 1, "train_loss": 2.29, "train_acc": 540 / 3600, "val_loss": 2.28, "val_acc": 79 / 400},
        {"epoch": 2, "train_loss": 2.27, "train_acc": 684 / 3600, "val_loss": 2.27, "val_acc": 68 / 400},
        {"epoch": 3, "train_loss": 2.25, "train_acc": 828 / 3600, "val_loss": 2.27, "val_acc": 61 / 400},
    ]
    settings = {**SAMPLE, "train.loss": "cross_entropy", "train.optimizer": "sgd", "train.lr": 0.01}
    (finding,) = diagnose_epochs(data, settings=settings)
    assert finding.kind == STEP_TOO_SMALL
    assert "training accuracy is 23.00% at epoch 3" in finding.evidence
    assert "validation accuracy 19.75% → 15.25%, within the noise (±5.6" in finding.evidence


# --- advice: never the setting the run already has; train longer first; the monitored best epoch ---

CURVE_SHAPES = {
    "mse sgd at chance": REAL_MSE_SGD,
    "slow sgd": REAL_CE_SGD,
    "lr 1 at chance": REAL_LR_1,
}


def _advised(advice: str) -> list[tuple[str, str]]:
    """``key=value`` settings an advice names."""
    import re

    return re.findall(r"\b((?:train|model|data)\.[a-z_]+)=([^\s,;:)]+)", advice)


def _curve(shape: str, epochs: int) -> list[dict]:
    if shape in CURVE_SHAPES:
        return CURVE_SHAPES[shape]
    if shape == "overfitting":
        half = epochs // 2
        val = np.concatenate([np.linspace(1.0, 0.3, half), np.linspace(0.32, 0.6, epochs - half)])
        return rows(np.linspace(1.0, 0.01, epochs), val, np.linspace(0.7, 0.999, epochs), 0.9 - 0.5 * val / 3)
    # still rising at the end
    acc = np.linspace(0.5, 0.95, epochs)
    return rows(1 - acc, 1.05 - acc, acc, acc - 0.01)




@hypothesis_settings(max_examples=150, deadline=None)
@given(
    shape=st.sampled_from([*CURVE_SHAPES, "overfitting", "rising"]),
    optimizer=st.sampled_from(["sgd", "adam", "adamw", "rmsprop"]),
    loss=st.sampled_from(["mse", "cross_entropy", "nll"]),
    lr=st.sampled_from([1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0]),
    epochs=st.integers(1, 120),
    planned_extra=st.integers(0, 60),
    monitor=st.sampled_from(["val_loss", "val_acc"]),
    patience=st.sampled_from([0, 5]),
    batch=st.sampled_from([32, 128, 256]),
    dataset=st.sampled_from(["mnist-sample", "mnist", "cifar10"]),
)
def test_advice_never_names_the_setting_the_run_already_has(
    shape, optimizer, loss, lr, epochs, planned_extra, monitor, patience, batch, dataset
):
    data = _curve(shape, max(epochs, 6))
    run = {"data.dataset": dataset, "data.val": 0.1, "train.optimizer": optimizer, "train.loss": loss,
           "train.lr": lr, "train.epochs": len(data) + planned_extra, "train.monitor": monitor,
           "train.patience": patience, "train.batch_size": batch}
    for finding in diagnose_epochs(data, settings=run):
        for key, value in _advised(finding.advice):
            current = run.get(key)
            assert current is None or str(value) != f"{current:g}" if isinstance(current, float) else (
                str(value) != str(current)
            ), (finding.kind, finding.advice)
        if patience:
            assert "(train.patience)" not in finding.advice


def test_few_optimizer_steps_say_train_longer_first():
    settings = {**SAMPLE, "train.loss": "mse", "train.optimizer": "sgd", "train.lr": 0.01, "train.epochs": 3,
                "train.batch_size": 128}
    (finding,) = diagnose_epochs(REAL_MSE_SGD, settings=settings)
    assert finding.advice.startswith(
        "train longer first (train.epochs=6): the run took only 87 optimizer steps"
    )
    assert "or use train.optimizer=adam" in finding.advice
    adam = {**settings, "train.optimizer": "adam", "train.loss": "cross_entropy"}
    (finding,) = diagnose_epochs(REAL_MSE_SGD, settings=adam)
    assert "train.optimizer=adam" not in finding.advice and "train.loss=cross_entropy" not in finding.advice


def test_overfitting_keeps_the_best_epoch_of_the_monitored_metric():
    val_loss = np.concatenate([np.linspace(1.0, 0.3, 29), np.linspace(0.31, 0.8, 31)])
    val_acc = np.concatenate([np.linspace(0.7, 0.9, 54), np.linspace(0.899, 0.89, 6)])  # peaks at epoch 54
    data = rows(np.linspace(1.0, 0.01, 60), val_loss, np.linspace(0.7, 0.999, 60), val_acc)
    found = diagnose_epochs(data, settings={"train.monitor": "val_acc"})
    (by_acc,) = [f for f in found if f.kind == OVERFITTING]
    assert "keep the model of epoch 54, the best by val_acc (train.monitor)" in by_acc.advice
    (by_loss,) = [f for f in diagnose_epochs(data, settings={}) if f.kind == OVERFITTING]
    assert "keep the model of epoch 29, the best by val_loss (train.monitor)" in by_loss.advice


def test_flat_at_exactly_chance_is_not_called_bouncing():
    data = [{"epoch": e, "train_loss": 2.31 - 0.001 * e, "train_acc": 0.1, "val_loss": 2.30 + 0.01 * (e % 2),
             "val_acc": 0.1} for e in range(1, 6)]
    (finding,) = diagnose_epochs(data, settings={"train.optimizer": "adam", "train.lr": 0.1})
    assert finding.kind == STEP_TOO_LARGE
    assert "bounces" not in finding.evidence
    assert "validation accuracy is exactly 10.00% at every epoch" in finding.evidence


def test_diagnose_names_chance_from_the_class_count_the_run_stored(tmp_path):
    """A 3-class imagefolder run at chance: 33%, not the 10% of the built-in datasets."""
    from PIL import Image
    from rich.console import Console

    from cnnlab.analyze import RunData, diagnose_run
    from cnnlab.checks import validate_experiment
    from cnnlab.store import RunStore
    from cnnlab.train import train_experiment

    # Every class holds the same two images: whatever a model predicts for each, it is right on
    # exactly one third of them.
    for split in ("train", "test"):
        for name in ("ant", "bee", "cat"):
            folder = tmp_path / "images" / split / name
            folder.mkdir(parents=True)
            for i in range(8):
                Image.new("L", (6, 6), 40 if i % 2 else 200).save(folder / f"{i}.png")
    exp = validate_experiment({
        "seed": 0,
        "data": {"dataset": "imagefolder", "path": str(tmp_path / "images"), "val": 0.0},
        "model": {"name": "layers", "layers": [{"type": "flatten"}, {"type": "linear", "units": 3}]},
        "train": {"optimizer": "sgd", "lr": 1e-9, "epochs": 2, "batch_size": 8, "threads": 1},
    })
    store = RunStore(root=tmp_path / "runs")
    record = train_experiment(exp, store, console=Console(quiet=True), progress=False).record
    assert record.data_facts == {"classes": 3, "train": 24, "val": 0, "test": 24}
    text = diagnose_run(RunData(record, store.epochs(record.id))).text()
    assert "training accuracy is 33.33% at epoch 2, chance level (33.33%) for 3 classes" in text
    assert "10.00%" not in text


def test_run_facts_come_from_the_run_else_from_the_built_in_dataset():
    from cnnlab.data.facts import RunFacts, common_chance, run_facts

    stored = run_facts({"data.dataset": "imagefolder"}, {"classes": 3, "train": 24, "val": 0, "test": 24})
    assert stored == RunFacts(3, 24, None) and stored.chance == pytest.approx(1 / 3)
    # A built-in dataset stored before runs kept their facts: its class count and the splits its
    # config makes (mnist-sample: 20% test out of 5,000, then 10% of the rest for validation).
    sample = run_facts({"data.dataset": "mnist-sample", "data.val": 0.1, "data.test_fraction": 0.2})
    assert sample == RunFacts(10, 3600, 400)
    assert run_facts({"data.dataset": "npz"}) == RunFacts()  # user data: nothing is known
    assert common_chance([stored, stored]) == pytest.approx(1 / 3)
    assert common_chance([stored, sample]) is None  # different class counts: no one chance level
    assert common_chance([RunFacts(), RunFacts()]) is None
