"""Recipes in training runs: the lr stored per epoch, augmentation of training batches only,
restore_best, resume; the LR finder; diagnose --write."""

from __future__ import annotations

import os
import signal
import tomllib

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from cnnlab.analyze import diagnose_stored
from cnnlab.analyze.cures import cure_for, cures
from cnnlab.analyze.diagnose import Finding
from cnnlab.analyze.follow_up import write_follow_up
from cnnlab.checks import load_experiment, validate_experiment
from cnnlab.cli import app
from cnnlab.config import parse_override
from cnnlab.data import load_data
from cnnlab.data.augment import Augment
from cnnlab.store import RunStore
from cnnlab.store.checkpoint import load_checkpoint
from cnnlab.sweep.cells import expand_cells
from cnnlab.sweep.spec import load_sweep
from cnnlab.train import resume_run, single, train_experiment
from cnnlab.train.lr_find import lr_find, valley
from cnnlab.train.schedules import Schedule

QUIET = Console(quiet=True)
TIMING_KEYS = {"seconds", "images_per_s"}


def small(data: dict | None = None, **train) -> dict:
    return {
        "seed": 7,
        "data": {"dataset": "mnist-sample", "train_limit": 320, "test_limit": 100, "val": 0.1,
                 **(data or {})},
        "model": {"name": "book_cnn"},
        "train": {"optimizer": "adam", "lr": 0.002, "batch_size": 64, "epochs": 3, "precision": "fp32",
                  **train},
    }


def metrics(store: RunStore, run_id: str) -> list[dict]:
    return [{k: v for k, v in e.items() if k not in TIMING_KEYS} for e in store.epochs(run_id)]


def train_images(raw: dict) -> int:
    exp = validate_experiment(raw)
    return len(load_data(exp.data, exp.seed).train)


def train(store: RunStore, raw: dict):
    return train_experiment(validate_experiment(raw), store, console=QUIET, progress=False).record


def test_stored_lr_follows_the_schedule_per_epoch(store):
    for schedule in ({"schedule": "step", "step_size": 1, "gamma": 0.5},
                     {"schedule": "cosine", "warmup_epochs": 1}, {"schedule": "one_cycle"}):
        record = train(store, small(**schedule))
        config = validate_experiment(small(**schedule)).train
        steps = -(-train_images(small(**schedule)) // 64)
        plan = Schedule(config, steps)
        assert [e["lr"] for e in store.epochs(record.id)] == pytest.approx(
            [plan.lr(epoch * steps - 1) for epoch in (1, 2, 3)])


def test_explicit_defaults_train_exactly_as_before(store):
    plain = train(store, small())
    explicit = train(store, small({"augment": "none"}, schedule="constant", label_smoothing=0.0,
                                  restore_best=False))
    assert plain.config_hash == explicit.config_hash
    assert metrics(store, plain.id) == metrics(store, explicit.id)


def test_augmentation_sees_only_training_batches_and_is_reproducible(store, monkeypatch):
    seen: list[int] = []
    real = Augment.__call__

    def counting(self, images, generator):
        seen.append(len(images))
        return real(self, images, generator)

    monkeypatch.setattr(Augment, "__call__", counting)
    a = train(store, small({"augment": "crop"}, epochs=2))
    assert sum(seen) == 2 * train_images(small())  # two epochs of training images; no validation or test one
    b = train(store, small({"augment": "crop"}, epochs=2))
    plain = train(store, small(epochs=2))
    assert metrics(store, a.id) == metrics(store, b.id)
    assert metrics(store, a.id) != metrics(store, plain.id)


def test_restore_best_stores_the_best_epochs_weights_and_says_so(store):
    # A large lr makes the validation loss bounce, so the best epoch is rarely the last.
    raw = small(lr=0.02, epochs=5, restore_best=True, monitor="val_acc")
    record = train(store, raw)
    rows = store.epochs(record.id)
    best = max(rows, key=lambda row: (row["val_acc"], -row["epoch"]))["epoch"]
    state = load_checkpoint(store.checkpoint_path(record.id))
    assert state["restored_best"]["epoch"] == best and state["epoch"] == 5
    # The same run cut at its best epoch (without restore_best) has exactly those weights.
    short = train(store, small(lr=0.02, epochs=best))
    expected = load_checkpoint(store.checkpoint_path(short.id))["model"]
    assert all(torch.equal(state["model"][name], expected[name]) for name in expected)
    result = CliRunner().invoke(app, ["show", record.id, "--store", store.url])
    assert f"epoch {best}'s weights, the best val_acc" in result.output


def test_resumed_augmented_plateau_run_equals_the_uninterrupted_one(store, monkeypatch):
    raw = small({"augment": "crop"}, lr=0.02, epochs=4, schedule="plateau", plateau_patience=1,
                restore_best=True)
    full = train(store, raw)
    real_epoch = single.train_one_epoch
    calls = {"n": 0}

    def interrupt_in_third_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(single, "train_one_epoch", interrupt_in_third_epoch)
    cut = train(store, raw)
    monkeypatch.setattr(single, "train_one_epoch", real_epoch)
    assert cut.status == "interrupted"
    resumed = resume_run(cut.id, store, console=QUIET, progress=False).record
    assert resumed.status == "completed"
    assert metrics(store, cut.id) == metrics(store, full.id)
    assert len({row["lr"] for row in metrics(store, full.id)}) > 1  # the plateau did drop the lr
    a = load_checkpoint(store.checkpoint_path(full.id))
    b = load_checkpoint(store.checkpoint_path(cut.id))
    assert a["restored_best"] == b["restored_best"]



def test_resuming_a_restored_run_continues_from_its_last_epochs_weights(store):
    # min_delta so large that epoch 1 stays the best: the restored weights are not the last ones.
    restored = train(store, small(epochs=3, restore_best=True, min_delta=1e3))
    plain = train(store, small(epochs=3, min_delta=1e3))
    assert load_checkpoint(store.checkpoint_path(restored.id))["restored_best"]["epoch"] == 1
    for run in (restored, plain):
        assert resume_run(run.id, store, epochs=5, console=QUIET, progress=False).record.status == "completed"
    assert metrics(store, restored.id) == metrics(store, plain.id)
    assert load_checkpoint(store.checkpoint_path(restored.id))["restored_best"]["epoch"] == 1


# -- the LR finder ----------------------------------------------------------------------------


def test_lr_find_leaves_the_model_and_store_alone_and_suggests_an_lr(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exp = validate_experiment(small(optimizer="sgd", momentum=0.9, lr=0.01))
    from cnnlab.train.run import prepare

    prepared = prepare(exp)
    before = {k: v.clone() for k, v in prepared.model.state_dict().items()}
    rng = torch.get_rng_state()
    finding = lr_find(exp, model=prepared.model, data=prepared.data, steps=60, start_lr=1e-5, end_lr=10)
    assert all(torch.equal(before[k], v) for k, v in prepared.model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    assert not (tmp_path / "cnnlab-runs").exists()
    ratios = [b / a for a, b in zip(finding.lrs, finding.lrs[1:], strict=False)]
    assert max(ratios) == pytest.approx(min(ratios))  # an exponential ramp
    assert finding.stop_reason  # lr 10 diverges: the test stopped early
    assert finding.suggestion is not None and 1e-5 < finding.suggestion < finding.lrs[-1]
    key, value = parse_override(finding.line().removeprefix("-s "))
    assert key == "train.lr" and value == pytest.approx(finding.suggestion, rel=0.05)
    assert "valley" in finding.text() and finding.text().endswith(finding.line())
    finding.save(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").stat().st_size > 10_000



def test_lr_find_errors_name_the_argument_and_its_flag():
    from cnnlab.errors import ConfigError

    exp = validate_experiment(small())
    with pytest.raises(ConfigError) as info:
        lr_find(exp, start_lr=0.0, end_lr=1.0, steps=2)
    text = str(info.value)
    assert "start_lr (--start): 0.0 must be a positive number" in text
    assert "steps (--steps): 2 must be at least 5" in text
    with pytest.raises(ConfigError) as info:
        lr_find(exp, start_lr=0.01, end_lr=0.001)
    assert "end_lr (--end): 0.001 must be a number above start_lr (0.01)" in str(info.value)

def test_lr_find_on_a_model_that_diverges_at_once_says_so(tmp_path):
    exp = validate_experiment(small(optimizer="sgd", lr=0.01))
    finding = lr_find(exp, steps=30, start_lr=1e4, end_lr=1e6)
    assert finding.diverged_at_once and finding.suggestion is None and finding.line() == ""
    assert "diverged at once" in finding.text() and "--start 100" in finding.text()


def test_lr_find_command_prints_a_usable_override(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp.toml").write_text(
        'seed = 1\n[data]\ndataset = "mnist-sample"\ntrain_limit = 640\n[train]\noptimizer = "adam"\n')
    result = CliRunner().invoke(app, ["lr-find", "exp.toml", "--steps", "40", "--start", "1e-5",
                                      "-o", "f.png"])
    assert result.exit_code == 0, result.output
    assert "wrote f.png" in result.output and "-s train.lr=" in result.output
    bad = CliRunner().invoke(app, ["lr-find", "exp.toml", "--steps", "2"])
    assert bad.exit_code == 2 and "steps (--steps): 2 must be at least 5" in bad.output


def test_valley_is_two_thirds_down_the_longest_fall():
    lrs = [10.0**k for k in range(10)]
    losses = [5, 5, 4, 3, 2, 1, 0.5, 0.4, 3, 9]
    # The longest fall has 7 points and ends at index 7; fastai starts at 7 − 7 = 0 and adds
    # ⌊7/3⌋ + ⌊7/6⌋.
    assert valley(lrs, losses) == lrs[0 + 2 + 1]


# -- cures and diagnose --write ---------------------------------------------------------------


def finding(kind: str) -> Finding:
    return Finding(kind, "evidence", (3, 9), "advice")


def test_cures_name_real_settings_and_never_the_one_a_run_has():
    settings = {"data.dataset": "mnist", "data.val": 0.1, "train.lr": 0.01, "train.loss": "cross_entropy",
                "train.epochs": 10, "model.dropout": 0.5}
    overfit = cure_for(finding("overfitting"), settings)
    assert overfit.settings == {"data.augment": "crop", "train.restore_best": True}  # no flips of digits
    assert overfit.overrides() == "-s data.augment=crop -s train.restore_best=true"
    cifar = cure_for(finding("overfitting"), {**settings, "data.dataset": "cifar10"})
    assert cifar.settings["data.augment"] == "crop_flip"
    treated = {**settings, "data.augment": "crop", "train.restore_best": True}
    assert cure_for(finding("overfitting"), treated).settings == {"train.label_smoothing": 0.1}
    assert cure_for(finding("unstable"), settings).settings == {"train.schedule": "cosine"}
    cosine = {**settings, "train.schedule": "cosine"}
    assert cure_for(finding("unstable"), cosine).settings == {"train.lr": 0.00333}
    assert cure_for(finding("underfitting"), treated).settings == {"data.augment": "none"}
    assert cure_for(finding("underfitting"), settings).settings == {"model.dropout": 0.25}
    assert cure_for(finding("stuck at chance, not learning"), settings) is None
    for kind in ("overfitting", "diverged", "step too large", "step too small", "underfitting",
                 "not converged", "unstable"):
        for cure in cures([finding(kind)], settings):
            assert all(settings.get(key) != value for key, value in cure.settings.items())
            # Every cure applies to a real experiment.
            load_experiment(base={"data": {"dataset": "mnist"}, "model": {"dropout": 0.5}},
                            overrides=cure.settings)


def test_each_cure_of_several_findings_is_computed_from_the_runs_own_settings():
    settings = {"data.dataset": "mnist", "data.val": 0.1, "train.lr": 0.01, "train.loss": "cross_entropy",
                "train.epochs": 10, "train.schedule": "cosine"}
    found = cures([finding("overfitting"), finding("unstable"), finding("not converged")], settings)
    assert [cure.finding for cure in found] == ["overfitting", "unstable", "not converged"]
    assert found[0].settings == {"data.augment": "crop", "train.restore_best": True}
    # The run has a cosine schedule already: the unstable cure lowers its lr, it does not propose
    # the cosine schedule it has (as it did from the previous cure's settings).
    assert found[1].settings == {"train.lr": 0.00333} and found[1].before == {"train.lr": 0.01}
    assert found[2].settings == {"train.epochs": 20}


def test_diagnose_write_makes_a_two_cell_sweep_as_is_versus_cured(store, tmp_path):
    record = train(store, small(lr=0.02, epochs=6))
    (diagnosis,) = diagnose_stored(store, [record.id])
    diagnosis = type(diagnosis)(diagnosis.run, [finding("overfitting")], diagnosis.outcome)
    written = write_follow_up(diagnosis, tmp_path / "next.toml", seeds=[7, 8])
    text = (tmp_path / "next.toml").read_text()
    assert text.startswith(f"# Written by `cnnlab diagnose {record.id} --write next.toml`")
    assert tomllib.loads(text)["zip"] == {"data.augment": ["none", "crop"],
                                          "train.restore_best": [False, True]}
    spec = load_sweep(tmp_path / "next.toml")
    cells = expand_cells(spec)
    assert len(cells) == 4 and {cell.seed for cell in cells} == {7, 8}
    as_is = [cell for cell in cells if cell.seed == 7 and cell.overrides["data.augment"] == "none"]
    assert as_is[0].config_hash == record.config_hash  # the first cell is the run as it was
    assert written.command == f"cnnlab sweep {tmp_path / 'next.toml'} && cnnlab report {written.name}"


def test_follow_up_of_a_run_stored_before_a_key_existed_fills_its_default(store, tmp_path):
    """A run stored before train.warmup_epochs existed (its config has no such key): the underfitting
    cure (one_cycle) writes a sweep TOML can hold, not a raw TypeError on a missing value."""
    from cnnlab.analyze.synthetic import curves, store_run
    from cnnlab.config import Experiment

    config = Experiment().resolved()
    config["model"]["dropout"] = 0.0
    del config["train"]["warmup_epochs"]
    run_id = store_run(store, config, curves(3, final_acc=0.6, start_acc=0.5))
    (diagnosis,) = diagnose_stored(store, [run_id])
    diagnosis = type(diagnosis)(diagnosis.run, [finding("underfitting")], diagnosis.outcome)
    written = write_follow_up(diagnosis, tmp_path / "next.toml", seeds=[0, 1])
    zipped = tomllib.loads((tmp_path / "next.toml").read_text())["zip"]
    assert zipped["train.schedule"] == ["constant", "one_cycle"]
    assert zipped.get("train.warmup_epochs", [0, 0]) == [0, 0]  # the default it had, if named at all
    cells = expand_cells(load_sweep(tmp_path / "next.toml"))
    assert {cell.overrides["train.schedule"] for cell in cells} == {"constant", "one_cycle"}
    assert written.cures[0].finding == "underfitting"


def test_diagnose_write_command(store, tmp_path):
    record = train(store, small(lr=0.5, optimizer="sgd", epochs=2))
    out = tmp_path / "cured.toml"
    result = CliRunner().invoke(app, ["diagnose", record.id, "--store", store.url, "--write", str(out),
                                      "--experiment"])
    assert result.exit_code == 0, result.output
    assert "train.lr=0.05" in result.output and f"wrote {out}: experiment" in result.output
    cured = load_experiment(out)
    assert cured.train.lr == 0.05 and cured.name.endswith("-cured")
    other = train(store, small(epochs=1))
    two = CliRunner().invoke(app, ["diagnose", record.id, other.id, "--store", store.url,
                                   "--write", str(out)])
    assert two.exit_code == 2 and "--write" in two.output


def test_diagnose_write_copies_a_stored_module_only_with_trust_code(store, tmp_path):
    """The written file is the user's, so `cnnlab sweep FILE` would import what it names: a stored
    run's `module:Class` gets there only when the user names the module for diagnose."""
    record = train(store, small(lr=0.5, optimizer="sgd", epochs=2))
    store.update_run(record.id, config={**record.config, "model": {**record.config["model"],
                                                                    "name": "evilmod:Net"}})
    out = tmp_path / "cured.toml"
    refused = CliRunner().invoke(app, ["diagnose", record.id, "--store", store.url, "--write", str(out)])
    assert refused.exit_code != 0 and not out.exists()
    assert "evilmod" in refused.output and "--trust-code evilmod" in refused.output
    trusted = CliRunner().invoke(app, ["diagnose", record.id, "--store", store.url, "--write", str(out),
                                       "--trust-code", "evilmod"])
    assert trusted.exit_code == 0, trusted.output
    assert tomllib.loads(out.read_text())["base"]["model"]["name"] == "evilmod:Net"


# -- the same recipe in a lone run, vmapped cells and sweep trials ------------------------------


def test_recipe_trains_the_same_in_vmapped_cells_and_in_sweep_trials_one_at_a_time(tmp_path):
    """A plateau schedule (its state per cell), crops, label smoothing and restore_best: each cell
    of a vmapped sweep matches the same trial trained alone, epoch by epoch and in the lr it
    stored, and keeps the same best epoch's weights."""
    from cnnlab.sweep import Location, parse_sweep, run_sweep

    base = {"data": {"dataset": "mnist-sample", "train_limit": 256, "test_limit": 64, "val": 0.1,
                     "augment": "crop"},
            "model": {"name": "layers", "layers": [
                {"type": "conv", "filters": 4, "kernel": 3}, {"type": "relu"},
                {"type": "maxpool", "kernel": 2}, {"type": "flatten"}, {"type": "linear", "units": 10}]},
            "train": {"optimizer": "sgd", "momentum": 0.9, "epochs": 4, "batch_size": 32,
                      "precision": "fp32", "schedule": "plateau", "plateau_patience": 0, "gamma": 0.5,
                      "min_delta": 0.1, "label_smoothing": 0.1, "restore_best": True}}
    spec = parse_sweep({"name": "r", "base": base, "seeds": [0, 1], "grid": {"train.lr": [0.02, 0.05]}})
    console = Console(record=True, width=200)
    together = run_sweep(spec, Location(root=str(tmp_path / "a")), threads=1, live=False, vmap=4,
                         console=console)
    text = console.export_text()
    assert together.ok and "vmap: 4 cells of layers together" in text and "recipe: plateau schedule" in text
    alone = run_sweep(spec, Location(root=str(tmp_path / "b")), workers=1, threads=1, live=False)
    assert alone.ok
    a, b = (Location(root=str(tmp_path / d)).open_store() for d in "ab")
    by_hash = {r.config_hash: r for r in b.list_runs()}
    runs = a.list_runs()
    assert len(runs) == 4 and all(r.status == "completed" for r in runs)
    dropped = 0
    for run in runs:
        twin = by_hash[run.config_hash]
        mine, theirs = a.epochs(run.id), b.epochs(twin.id)
        for m, t in zip(mine, theirs, strict=True):
            # Float rounding of the batched kernels grows over epochs of momentum SGD (1.5e-4 by
            # epoch 4 here); anything the recipe drew differently would be far off.
            assert m["train_loss"] == pytest.approx(t["train_loss"], rel=1e-3)
            assert m["val_loss"] == pytest.approx(t["val_loss"], rel=1e-3)
            assert m["lr"] == pytest.approx(t["lr"], rel=1e-12)
        dropped += len({row["lr"] for row in mine}) > 1
        best_a = load_checkpoint(a.checkpoint_path(run.id))["restored_best"]
        best_b = load_checkpoint(b.checkpoint_path(twin.id))["restored_best"]
        assert best_a["epoch"] == best_b["epoch"]
    assert dropped  # some cell's plateau did lower its lr, on its own
