"""Running sweeps on the local store: nothing trained twice, interrupted runs resumed, failing
cells retried then stored `failed`, hopeless cells pruned, and two worker processes at once."""

from __future__ import annotations

import os
import signal
import time

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.store import RunStore
from cnnlab.sweep import Location, expand_cells, parse_sweep, run_sweep
from cnnlab.sweep.optuna_study import pop_waiting, recover_stale
from cnnlab.sweep.retry import SPEC_ATTR, RetryFailed
from cnnlab.train import single

BASE = {
    "data": {"dataset": "mnist-sample", "train_limit": 256, "test_limit": 64, "val": 0.02},
    "model": {"name": "book_cnn"},
    "train": {"optimizer": "adam", "lr": 0.003, "epochs": 1, "batch_size": 32, "eval_test": False},
}


@pytest.fixture
def home(tmp_path) -> Location:
    return Location(root=str(tmp_path / "home"))


def sweep(location: Location, name: str = "s", workers: int = 1, **raw):
    spec = parse_sweep({"name": name, "base": BASE, **raw})
    return run_sweep(spec, location, workers=workers, threads=1, live=False)


def store(location: Location) -> RunStore:
    return location.open_store()


def study(location: Location, name: str = "s") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=location.open_storage())


def test_runs_are_linked_to_trials_and_a_second_run_trains_nothing(home):
    grid = {"train.lr": [0.003, 0.002]}
    first = sweep(home, seeds=[0, 1], grid=grid)
    assert first.ok
    assert first.status.counts()["done"] == 4
    runs = store(home).list_runs()
    assert len(runs) == 4 and all(r.status == "completed" for r in runs)
    trials = study(home).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    for trial in trials:  # linked both ways
        run = store(home).get_run(trial.user_attrs["run_id"])
        assert (run.sweep, run.trial) == ("s", trial.number)
        assert run.config_hash == trial.user_attrs["config_hash"]
        assert trial.value == store(home).epochs(run.id)[-1]["val_acc"]

    again = sweep(home, seeds=[0, 1], grid=grid)
    assert again.workers == 0  # nothing to start
    assert len(store(home).list_runs()) == 4
    assert len(study(home).get_trials()) == 4

    # An edited grid trains only its new cells; a cell dropped from the file leaves the view.
    edited = sweep(home, seeds=[0, 1], grid={"train.lr": [0.003, 0.004]})
    assert edited.ok
    assert len(store(home).list_runs()) == 6
    assert sorted(c.label for c in edited.status.cells) == ["train.lr=0.003", "train.lr=0.004"]

    # Another sweep with a cell already trained reuses its run instead of training it again.
    other = sweep(home, name="other", seeds=[0], grid={"train.lr": [0.003, 0.005]})
    assert other.ok
    assert len(store(home).list_runs()) == 7
    reused = [t for t in study(home, "other").get_trials() if t.user_attrs["outcome"] == "reused"]
    assert len(reused) == 1
    assert store(home).get_run(reused[0].user_attrs["run_id"]).sweep == "s"


def test_an_interrupted_run_is_resumed_by_the_next_sweep_command(home, monkeypatch):
    real_epoch = single.train_one_epoch
    calls = {"n": 0}

    def sigterm_in_second_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # as Ctrl-C or a scheduler would send it
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(single, "train_one_epoch", sigterm_in_second_epoch)
    raw = {"seeds": [0], "grid": {"train.lr": [0.003, 0.002]}, "set": {"train.epochs": 3}}
    cut = sweep(home, **raw)
    monkeypatch.setattr(single, "train_one_epoch", real_epoch)
    assert cut.interrupted and not cut.ok
    assert cut.status.counts()["interrupted"] == 1
    (run,) = store(home).list_runs()
    assert run.status == "interrupted" and run.epochs_done == 1

    done = sweep(home, **raw)
    assert done.ok
    runs = store(home).list_runs()
    assert len(runs) == 2
    resumed = store(home).get_run(run.id)
    assert resumed.status == "completed"
    assert [e["epoch"] for e in store(home).epochs(run.id)] == [1, 2, 3]
    outcomes = [t.user_attrs.get("outcome") for t in study(home).get_trials()]
    assert outcomes.count("resumed") == 1 and outcomes.count("interrupted") == 1


def test_a_cell_that_always_raises_is_retried_then_stored_failed_with_its_traceback(home, monkeypatch):
    real_epoch = single.train_one_epoch

    def broken_for_one_lr(*args, optimizer, **kwargs):
        if optimizer.param_groups[0]["lr"] == 0.002:
            raise RuntimeError("boom")
        return real_epoch(*args, optimizer=optimizer, **kwargs)

    monkeypatch.setattr(single, "train_one_epoch", broken_for_one_lr)
    outcome = sweep(home, seeds=[0], retries=1, grid={"train.lr": [0.003, 0.002]})
    assert not outcome.ok
    counts = outcome.status.counts()
    assert (counts["done"], counts["failed"], counts["pending"]) == (1, 1, 0)
    failed = [t for t in study(home).get_trials() if t.state == TrialState.FAIL]
    assert len(failed) == 2  # the first attempt and its one retry
    assert failed[1].system_attrs["retry_history"] == [failed[0].number]
    runs = store(home).list_runs(status="failed")
    assert len(runs) == 1  # the retry trained the same run row again: one row per cell and seed
    assert "Traceback" in runs[0].error and "RuntimeError: boom" in runs[0].error
    cell = next(c for c in outcome.status.cells if c.label == "train.lr=0.002")
    assert cell.runs[0].error == "RuntimeError: boom"



def test_a_cell_failing_after_another_completed_in_its_group_fails_only_itself(home, monkeypatch):
    """--vmap 2 with cells trained one at a time: the first cell's run completes, then the
    second raises; only the second's trial and run fail, the first is told done."""
    from cnnlab.train import run as train_run
    from cnnlab.train.vmap import VmapUnsupported

    real_epoch = single.train_one_epoch

    def broken_for_one_lr(*args, optimizer, **kwargs):
        if optimizer.param_groups[0]["lr"] == 0.002:
            raise RuntimeError("boom")
        return real_epoch(*args, optimizer=optimizer, **kwargs)

    def refuse(cells):
        raise VmapUnsupported("one at a time for this test")

    monkeypatch.setattr(single, "train_one_epoch", broken_for_one_lr)
    monkeypatch.setattr(train_run, "VmapCells", refuse)
    spec = parse_sweep({"name": "s", "base": BASE, "seeds": [0], "retries": 0,
                        "grid": {"train.lr": [0.003, 0.002]}})
    outcome = run_sweep(spec, home, threads=1, live=False, vmap=2)
    assert not outcome.ok
    runs = {r.config["train"]["lr"]: r for r in store(home).list_runs()}
    assert runs[0.003].status == "completed" and runs[0.003].error is None
    assert runs[0.002].status == "failed" and "RuntimeError: boom" in runs[0.002].error
    by_run = {t.user_attrs["run_id"]: t for t in study(home).get_trials()}
    assert by_run[runs[0.003].id].state == TrialState.COMPLETE
    assert by_run[runs[0.003].id].user_attrs["outcome"] == "trained"
    assert by_run[runs[0.002].id].state == TrialState.FAIL


def test_the_median_pruner_stops_a_hopeless_cell(home):
    outcome = sweep(home, seeds=[0], metric="val_loss", set={"train.epochs": 3},
                    grid={"train.lr": [0.003, 0.002, 1e-7]},
                    pruner={"type": "median", "n_startup_trials": 2})
    states = {c.label: c.runs[0].state for c in outcome.status.cells}
    assert states == {"train.lr=0.003": "done", "train.lr=0.002": "done", "train.lr=1e-07": "pruned"}
    hopeless = next(r for r in store(home).list_runs() if r.config["train"]["lr"] == 1e-7)
    assert hopeless.status == "pruned"
    assert hopeless.epochs_done < 3
    trial = study(home).get_trials()[hopeless.trial]
    assert trial.state == TrialState.PRUNED and trial.user_attrs["run_id"] == hopeless.id


def test_a_diverged_cell_is_stored_diverged_and_the_sweep_goes_on(home):
    outcome = sweep(home, seeds=[0], set={"train.optimizer": "sgd"}, grid={"train.lr": [1000.0, 0.01]})
    assert outcome.ok
    states = {c.label: c.runs[0].state for c in outcome.status.cells}
    assert states == {"train.lr=1000.0": "diverged", "train.lr=0.01": "done"}
    diverged = next(r for r in store(home).list_runs() if r.config["train"]["lr"] == 1000)
    assert diverged.status == "diverged"
    trial = study(home).get_trials()[diverged.trial]
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["run_status"] == "diverged"


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_optunas_heartbeat_fails_a_silent_workers_trial_and_it_is_queued_again(tmp_path, monkeypatch):
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_interval=1, grace_period=1,
        heartbeat_stale_trial_callback=RetryFailed(),
    )
    spec = parse_sweep({"name": "hb", "base": BASE, "retries": 1, "grid": {"train.lr": [0.003]}})
    study_ = optuna.create_study(study_name="hb", storage=storage, direction="maximize")
    study_.set_user_attr(SPEC_ATTR, spec.to_dict())
    (cell,) = expand_cells(spec)
    study_.enqueue_trial({}, user_attrs=cell.attrs())
    trial = pop_waiting(study_, storage)
    study_id = storage.get_study_id_from_name("hb")
    storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(study_id, trial.number))
    monkeypatch.setattr("cnnlab.sweep.optuna_study.is_alive", lambda worker: None)  # "on another machine"
    time.sleep(2.5)
    recover_stale(study_, storage)
    first, retry = study_.get_trials()
    assert first.state == TrialState.FAIL
    assert retry.state == TrialState.WAITING
    assert retry.user_attrs["config_hash"] == cell.config_hash
    assert retry.system_attrs["retry_history"] == []  # a dead worker uses up no retry of its cell


def test_tpe_samples_n_trials_points_and_repeats_each_for_every_seed(home):
    lr = {"low": 1e-3, "high": 1e-2, "log": True}
    outcome = sweep(home, seeds=[0, 1], tpe={"n_trials": 2, "train.lr": lr})
    assert outcome.ok
    assert outcome.status.counts()["done"] == 4
    trials = study(home).get_trials()
    assert len(trials) == 4
    points = {}
    for trial in trials:
        points.setdefault(trial.params["train.lr"], set()).add(trial.user_attrs["seed"])
    assert list(points.values()) == [{0, 1}, {0, 1}]
    assert study(home).user_attrs[SPEC_ATTR]["mode"] == "tpe"


def test_two_worker_processes_share_the_sqlite_store_without_errors(home):
    outcome = sweep(home, workers=2, seeds=[0, 1], grid={"train.lr": [0.003, 0.002]})
    assert outcome.exitcodes == [0, 0]
    assert outcome.ok, outcome.status
    runs = store(home).list_runs()
    assert len(runs) == 4
    assert len({r.config_hash for r in runs}) == 4
    assert all(r.status == "completed" and r.epochs_done == 1 for r in runs)
    assert all(r.config["train"]["threads"] == 1 for r in runs)
    assert all([e["epoch"] for e in store(home).epochs(r.id)] == [1] for r in runs)


def test_sweeps_and_sweep_status_commands(home, monkeypatch):
    monkeypatch.setenv("CNNLAB_HOME", home.root)
    sweep(home, name="shown", seeds=[0], grid={"train.lr": [0.003, 0.002]})
    runner = CliRunner()
    listed = runner.invoke(app, ["sweeps"])
    assert listed.exit_code == 0, listed.output
    assert "shown" in listed.output and "grid" in listed.output
    status = runner.invoke(app, ["sweep-status", "shown"])
    assert status.exit_code == 0, status.output
    assert "train.lr=0.002" in status.output and "2 runs — 2 done" in status.output
    words = " ".join(status.output.split())  # the title may wrap at 80 columns
    assert "best: train.lr=0.002 final val_acc " in words  # the last epoch, not the best epoch
    missing = runner.invoke(app, ["sweep-status", "nope"])
    assert missing.exit_code == 2
    assert "no sweep named 'nope'" in missing.output and "shown" in missing.output


def test_vmap_sweep_trains_cells_together_and_matches_a_plain_sweep(tmp_path):
    """--vmap 4: the four cells (two lr × two seeds) train as one vmapped group; each stored run
    matches the same cell of a sweep without vmap (no dropout or BN, so up to float rounding)."""
    from rich.console import Console

    base = {**BASE, "model": {"name": "layers", "layers": [
        {"type": "conv", "filters": 4, "kernel": 3}, {"type": "relu"}, {"type": "maxpool", "kernel": 2},
        {"type": "flatten"}, {"type": "linear", "units": 10}]},
        "train": {**BASE["train"], "optimizer": "sgd", "momentum": 0.9, "epochs": 2,
                  "precision": "fp32"}}
    spec = parse_sweep({"name": "v", "base": base, "seeds": [0, 1], "grid": {"train.lr": [0.01, 0.03]}})
    console = Console(record=True, width=200)
    together = run_sweep(spec, Location(root=str(tmp_path / "a")), threads=1, live=False, vmap=4,
                         console=console)
    assert together.ok and together.workers == 1 and together.status.counts()["done"] == 4
    assert "vmap: 4 cells of layers together" in console.export_text()
    alone = run_sweep(spec, Location(root=str(tmp_path / "b")), workers=1, threads=1, live=False)
    assert alone.ok
    a, b = (Location(root=str(tmp_path / d)).open_store() for d in "ab")
    by_hash = {r.config_hash: r for r in b.list_runs()}
    runs = a.list_runs()
    assert len(runs) == 4 and all(r.status == "completed" and r.sweep == "v" for r in runs)
    for run in runs:
        twin = by_hash[run.config_hash]
        for mine, theirs in zip(a.epochs(run.id), b.epochs(twin.id), strict=True):
            assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-4)
            assert mine["val_loss"] == pytest.approx(theirs["val_loss"], rel=1e-4)
            assert abs(mine["val_acc"] - theirs["val_acc"]) <= 1 / 100
    trials = study(Location(root=str(tmp_path / "a")), "v").get_trials()
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["outcome"] == "trained" for t in trials)
    assert {t.user_attrs["run_id"] for t in trials} == {r.id for r in runs}
