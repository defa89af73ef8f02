"""The run lifecycle: checkpoint before epoch row, the previous checkpoint kept, resume that falls
back, failed resumes that harm nothing, and liveness (host, pid, heartbeat) of running runs."""

from __future__ import annotations

import errno
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from cnnlab.checks import validate_experiment
from cnnlab.cli import app
from cnnlab.errors import StoreError
from cnnlab.store import RunStore
from cnnlab.store.checkpoint import load_checkpoint
from cnnlab.store.liveness import GONE, shown_status
from cnnlab.train import lifecycle, resume_run, train_experiment

QUIET = Console(quiet=True)
TIMING = {"seconds", "images_per_s"}


def small(epochs: int = 3) -> dict:
    return {
        "seed": 3,
        "data": {"dataset": "mnist-sample", "train_limit": 256, "test_limit": 64, "val": 0.1},
        "model": {"name": "book_cnn"},
        "train": {"optimizer": "adam", "lr": 0.002, "batch_size": 64, "epochs": epochs, "threads": 1},
    }


def train(store: RunStore, epochs: int = 3):
    return train_experiment(validate_experiment(small(epochs)), store, console=QUIET, progress=False).record


def metrics(store: RunStore, run_id: str) -> list[dict]:
    return [{k: v for k, v in e.items() if k not in TIMING} for e in store.epochs(run_id)]


def test_each_epoch_writes_its_checkpoint_before_its_row(store, monkeypatch):
    events: list[str] = []
    real_save, real_log = lifecycle.save_checkpoint, RunStore.log_epoch

    def save(path, state, keep_previous=None):
        real_save(path, state, keep_previous)
        events.append(f"checkpoint {state['epoch']}")

    def log(self, run_id, epoch, values, lease=None):
        real_log(self, run_id, epoch, values, lease)
        events.append(f"row {epoch}")

    monkeypatch.setattr(lifecycle, "save_checkpoint", save)
    monkeypatch.setattr(RunStore, "log_epoch", log)
    train(store, epochs=2)
    assert events == ["checkpoint 1", "row 1", "checkpoint 2", "row 2"]


def test_crash_between_checkpoint_and_row_leaves_a_resumable_run(store, monkeypatch):
    full = train(store)
    real_log = RunStore.log_epoch

    def crash_on_second_row(self, run_id, epoch, values, lease=None):
        if epoch == 2:
            raise OSError(errno.EIO, "injected crash between checkpoint and epoch row")
        real_log(self, run_id, epoch, values, lease)

    monkeypatch.setattr(RunStore, "log_epoch", crash_on_second_row)
    with pytest.raises(OSError, match="injected crash"):
        train(store)
    monkeypatch.undo()
    (cut,) = [r for r in store.list_runs() if r.id != full.id]
    assert cut.status == "failed" and cut.epochs_done == 1
    assert load_checkpoint(store.checkpoint_path(cut.id))["epoch"] == 2  # one ahead of the rows
    assert load_checkpoint(store.previous_checkpoint_path(cut.id))["epoch"] == 1

    resumed = resume_run(cut.id, store, console=QUIET, progress=False).record
    assert resumed.status == "completed" and resumed.epochs_done == 3
    assert metrics(store, cut.id) == metrics(store, full.id)


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(store):
    four = train(store, epochs=4)
    three = train(store, epochs=3)
    store.checkpoint_path(three.id).write_bytes(os.urandom(2000))
    resumed = resume_run(three.id, store, epochs=4, console=QUIET, progress=False).record
    assert resumed.status == "completed" and resumed.epochs_done == 4
    assert metrics(store, three.id) == metrics(store, four.id)  # epoch 3 trained again from epoch 2


@pytest.mark.parametrize("failing", ["checkpoint", "epoch row"])
def test_failed_resume_leaves_a_finished_run_and_its_files_as_they_were(store, monkeypatch, failing):
    done = train(store, epochs=2)
    checkpoint = store.checkpoint_path(done.id).read_bytes()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    if failing == "checkpoint":
        monkeypatch.setattr(lifecycle, "save_checkpoint", read_only)
    else:  # the new checkpoint is renamed into place, then the row cannot be written
        monkeypatch.setattr(RunStore, "log_epoch", read_only)
    with pytest.raises(OSError, match="Read-only"):
        resume_run(done.id, store, epochs=3, console=QUIET, progress=False)
    after = store.get_run(done.id)
    assert (after.status, after.epochs_done, after.error) == ("completed", 2, None)
    assert after.config["train"]["epochs"] == 2
    assert after.finished_at == done.finished_at
    assert store.checkpoint_path(done.id).read_bytes() == checkpoint
    assert len(store.epochs(done.id)) == 2


def test_runs_store_host_pid_and_heartbeat_and_count_stored_epochs(store):
    record = train(store, epochs=2)
    assert record.host.startswith(socket.gethostname())
    assert record.pid == os.getpid()
    assert record.heartbeat_at is not None and record.heartbeat_at >= record.created_at
    assert record.epochs_done == 2


def test_live_run_refuses_a_second_resume_and_a_killed_one_shows_process_gone(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "CNNLAB_HOME": str(home), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    example = Path(__file__).resolve().parents[1] / "examples" / "book-cnn-mnist.toml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "train", str(example), "-s", "data.dataset='mnist-sample'",
         "-s", "data.train_limit=256", "-s", "train.epochs=500", "-s", "train.threads=1", "--quiet"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = RunStore(root=home)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
                (runs := store.list_runs()) and store.epochs(runs[0].id)):
            time.sleep(0.2)
        (live,) = store.list_runs()
        assert live.status == "running" and live.pid == proc.pid

        with pytest.raises(StoreError, match=f"process {proc.pid} on {socket.gethostname()}"):
            resume_run(live.id, store, console=QUIET, progress=False)
        refused = CliRunner().invoke(app, ["train", "--resume", live.id], env=env)
        assert refused.exit_code == 2 and str(proc.pid) in refused.output
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)

    gone = store.get_run(live.id)
    stored = len(store.epochs(gone.id))
    assert gone.status == "running" and shown_status(gone) == GONE
    assert gone.epochs_done == stored >= 1
    listed = CliRunner().invoke(app, ["runs"], env=env)
    assert GONE in listed.output and f"{stored}/500" in listed.output
    shown = CliRunner().invoke(app, ["show", gone.id], env=env)
    assert GONE in shown.output

    resumed = resume_run(gone.id, store, epochs=stored + 1, console=QUIET, progress=False).record
    assert resumed.status == "completed" and resumed.epochs_done == stored + 1


def test_a_run_taken_over_by_another_process_gets_not_a_word_more_from_the_old_owner(store):
    """Fencing on SQLite: after a take-over (the token grows) the old owner's next epoch writes
    neither its checkpoint nor its row nor a status, and it says so in one line."""
    taken: list[int] = []

    def take_over_after_first_epoch(epoch: int, values: dict) -> None:
        if epoch == 1:
            (run,) = store.list_runs()
            taken.append(store.acquire(run.id))  # what another worker's resume does first

    console = Console(quiet=False, record=True, width=200)
    outcome = train_experiment(validate_experiment(small(3)), store, console=console, progress=False,
                               on_epoch=take_over_after_first_epoch)
    lines = console.export_text().splitlines()
    assert outcome.lost
    run = store.get_run(outcome.record.id)
    assert run.lease == taken[0] == 2
    assert (run.status, run.epochs_done, run.finished_at) == ("running", 1, None)
    assert load_checkpoint(store.checkpoint_path(run.id))["epoch"] == 1
    assert [line for line in lines if "taken over" in line] == [
        f"run {run.id} was taken over by another process (its lease is now 2, this process held 1); "
        "this process stopped it and wrote nothing more"]
    with pytest.raises(StoreError, match="taken over"):
        store.log_epoch(run.id, 2, {"train_loss": 0.1}, lease=1)


def test_sweep_views_name_runs_whose_process_is_gone():
    from cnnlab.sweep.status import CellStatus, SeedRun, SweepStatus
    from cnnlab.sweep.view import status_table, summary_line, sweeps_table

    cell = CellStatus("train.lr=0.01", "c1",
                      [SeedRun(0, GONE, 0, "r1"), SeedRun(1, "done", 1, "r2", value=0.9)])
    status = SweepStatus("s", "grid", "val_acc", "maximize", "journal", [cell])
    console = Console(record=True, width=200, file=io.StringIO())
    for renderable in (summary_line(status), status_table(status), sweeps_table([status])):
        console.print(renderable)
    text = console.export_text()
    assert f"1 {GONE}" in text  # summary line and the sweeps table
    assert not status.finished


def test_a_failed_restore_of_the_best_weights_still_stores_the_runs_end(store, monkeypatch):
    from cnnlab.train import best

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(best, "restore_checkpoint", disk_full)
    raw = small(2)
    raw["train"]["restore_best"] = True
    record = train_experiment(validate_experiment(raw), store, console=QUIET, progress=False).record
    assert record.status == "completed" and record.epochs_done == 2
    assert "the best epoch's weights" in record.error and "No space left on device" in record.error
    assert load_checkpoint(store.checkpoint_path(record.id))["epoch"] == 2  # the last epoch's, whole
    assert "restored_best" not in load_checkpoint(store.checkpoint_path(record.id))
    files = sorted(p.name for p in store.run_dir(record.id).iterdir())
    assert files == ["checkpoint.previous.pt", "checkpoint.pt"]
