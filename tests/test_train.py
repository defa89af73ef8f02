"""The trainer: determinism, resume equality, divergence, early stopping and safe checkpoints."""

from __future__ import annotations

import os
import pickle
import signal
from importlib import metadata

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console

from cnnlab.checks import validate_experiment
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.store import RunStore
from cnnlab.train import Pruned, load_checkpoint, resume_run, save_checkpoint, single, train_experiment
from cnnlab.train.losses import cross_entropy, mse, nll

from realdata import SHARED, needs_shared

QUIET = Console(quiet=True)
TIMING_KEYS = {"seconds", "images_per_s"}


def small(**train) -> dict:
    return {
        "seed": 7,
        "data": {"dataset": "mnist-sample", "train_limit": 640, "test_limit": 200, "val": 0.1},
        "model": {"name": "book_cnn"},
        "train": {"optimizer": "adam", "lr": 0.002, "batch_size": 64, "epochs": 3, **train},
    }


def metrics(store: RunStore, run_id: str) -> list[dict]:
    return [{k: v for k, v in e.items() if k not in TIMING_KEYS} for e in store.epochs(run_id)]


def train(store: RunStore, raw: dict):
    return train_experiment(validate_experiment(raw), store, console=QUIET, progress=False)


def test_same_config_and_seed_give_identical_metrics(store):
    a = train(store, small(epochs=2)).record
    b = train(store, small(epochs=2)).record
    assert a.status == b.status == "completed"
    assert metrics(store, a.id) == metrics(store, b.id)
    assert len(metrics(store, a.id)) == 2
    assert a.config_hash == b.config_hash


def test_run_stores_config_versions_and_summary(store):
    record = train(store, small(epochs=1)).record
    assert record.config["train"]["optimizer"] == "adam"
    assert record.versions["torch"] == metadata.version("torch")
    assert record.epochs_done == 1
    assert 0.0 <= record.final_test_acc <= 1.0
    assert record.data_facts == {"classes": 10, "train": 640, "val": 400, "test": 200}
    (epoch,) = store.epochs(record.id)
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "lr",
            "seconds", "images_per_s"} <= set(epoch)


def test_different_seed_gives_different_metrics(store):
    a = train(store, small(epochs=1)).record
    b = train(store, {**small(epochs=1), "seed": 8}).record
    assert metrics(store, a.id) != metrics(store, b.id)


def test_resumed_run_equals_uninterrupted_run(store, monkeypatch):
    full = train(store, small(epochs=3)).record

    real_epoch = single.train_one_epoch
    calls = {"n": 0}

    def interrupt_in_third_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            # A real SIGTERM, delivered mid-run, as `kill` or a cluster scheduler would send it.
            os.kill(os.getpid(), signal.SIGTERM)
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(single, "train_one_epoch", interrupt_in_third_epoch)
    cut = train(store, small(epochs=3)).record
    monkeypatch.setattr(single, "train_one_epoch", real_epoch)
    assert cut.status == "interrupted"
    assert cut.epochs_done == 2
    assert "--resume" in cut.error

    resumed = resume_run(cut.id, store, console=QUIET, progress=False).record
    assert resumed.id == cut.id
    assert resumed.status == "completed"
    assert metrics(store, cut.id) == metrics(store, full.id)


def test_resume_can_extend_a_completed_run(store):
    three = train(store, small(epochs=3)).record
    two = train(store, small(epochs=2)).record
    with pytest.raises(CheckpointError, match="already has 2 of 2 epochs"):
        resume_run(two.id, store, console=QUIET, progress=False)
    extended = resume_run(two.id, store, epochs=3, console=QUIET, progress=False).record
    assert extended.epochs_done == 3
    # Only train.epochs differs, and a run of 2 epochs continued to 3 equals a run of 3.
    assert metrics(store, two.id) == metrics(store, three.id)


def test_nan_loss_marks_run_diverged_and_keeps_epochs(store):
    record = train(store, small(optimizer="sgd", lr=1000.0, epochs=5)).record
    assert record.status == "diverged"
    epochs = store.epochs(record.id)
    assert 1 <= len(epochs) < 5
    assert not torch.isfinite(torch.tensor(epochs[-1]["train_loss"]))
    assert "train.lr" in record.error


def test_early_stopping_stops_after_patience(store):
    # min_delta larger than any possible improvement: every epoch after the first is "no better".
    record = train(store, small(epochs=6, patience=2, min_delta=100.0)).record
    assert record.status == "stopped_early"
    assert record.epochs_done == 3


def test_checkpoint_holds_everything_to_resume(store):
    record = train(store, small(epochs=1)).record
    state = load_checkpoint(store.run_dir(record.id) / "checkpoint.pt")
    assert state["epoch"] == 1
    assert {"model", "optimizer", "rng", "config", "early_stopping", "classes"} <= set(state)
    assert isinstance(state["rng"]["torch"], torch.Tensor)


def test_crash_between_write_and_rename_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 1, "weights": torch.ones(3)})

    def crash(*args, **kwargs):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        save_checkpoint(path, {"epoch": 2, "weights": torch.zeros(3)})
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["epoch"] == 1
    assert torch.equal(state["weights"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


class _Exploit:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_crafted_pickle_checkpoint_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": 1, "epoch": 1, "payload": _Exploit(str(marker))}, f, protocol=2)
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(path)
    assert not marker.exists()
    # The same payload inside torch.save's zip container is refused too.
    torch.save({"format": 1, "payload": _Exploit(str(marker))}, path)
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(path)
    assert not marker.exists()


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 1, "weights": torch.ones(1000)})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_losses_against_definitions():
    torch.manual_seed(0)
    logits = torch.randn(8, 10)
    targets = torch.randint(0, 10, (8,))
    one_hot = F.one_hot(targets, 10).float()
    expected_mse = ((logits.softmax(1) - one_hot) ** 2).mean()
    assert torch.allclose(mse(logits, targets), expected_mse)
    assert torch.allclose(nll(logits, targets), cross_entropy(logits, targets))
    log_probs = logits.log_softmax(1)
    assert torch.allclose(nll(log_probs, targets), F.nll_loss(log_probs, targets))


@needs_shared
def test_one_epoch_of_book_cnn_on_real_mnist_reaches_97_percent(store):
    record = train(store, {
        "seed": 0,
        "data": {"dataset": "mnist", "root": str(SHARED), "val": 0},
        "model": {"name": "book_cnn"},
        "train": {"optimizer": "adam", "lr": 0.002, "batch_size": 64, "epochs": 1},
    }).record
    assert record.status == "completed"
    assert record.final_test_acc >= 0.97, record.final_test_acc


def test_epoch_hook_sees_every_epoch_and_can_prune(store):
    seen = []

    def hook(epoch, metrics):
        seen.append((epoch, metrics["val_acc"]))
        if epoch == 2:
            raise Pruned(epoch)

    record = train_experiment(validate_experiment(small(epochs=3)), store, console=QUIET,
                              progress=False, on_epoch=hook, sweep="study", trial=4).record
    assert [e for e, _ in seen] == [1, 2]
    assert record.status == "pruned"
    assert record.epochs_done == 2
    assert (record.sweep, record.trial) == ("study", 4)


def test_run_cut_in_its_first_epoch_resumes_from_scratch(store, monkeypatch):
    full = train(store, small(epochs=2)).record
    real_epoch = single.train_one_epoch

    def interrupt_first_epoch(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(single, "train_one_epoch", interrupt_first_epoch)
    cut = train(store, small(epochs=2)).record
    monkeypatch.setattr(single, "train_one_epoch", real_epoch)
    assert (cut.status, cut.epochs_done) == ("interrupted", 0)
    resumed = resume_run(cut.id, store, console=QUIET, progress=False).record
    assert resumed.status == "completed"
    assert metrics(store, cut.id) == metrics(store, full.id)


def test_device_cuda_without_a_gpu_is_a_config_error(store):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(ConfigError, match=r"train\.device.*cuda.*'cpu' or 'auto'"):
        train(store, small(device="cuda"))
    assert store.list_runs() == []


def test_device_auto_trains_on_the_cpu_here_and_stores_the_device(store):
    record = train(store, small(epochs=1, device="auto")).record
    expected = "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name()
    assert record.device == expected
