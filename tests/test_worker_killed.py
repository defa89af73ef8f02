"""A sweep worker killed with SIGKILL inside a run's first epoch: the next worker trains that same
run row from its seed (no extra 0-epoch `failed` row beside it) and the cell keeps its retries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
from optuna.trial import TrialState
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.store import RunStore

SWEEP = """
name = "killed"
retries = 1
[base.data]
dataset = "npz"
path = "{npz}"
val = "test"
[base.model]
name = "layers"
layers = [{{ type = "conv", filters = 4, kernel = 3 }}, {{ type = "relu" }}, {{ type = "global_avg_pool" }},
          {{ type = "flatten" }}, {{ type = "linear", units = 3 }}]
[base.train]
epochs = 1
batch_size = 1
[grid]
"train.lr" = [0.01]
"""


def test_worker_killed_in_first_epoch_leaves_one_row_and_uses_no_retry(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    npz = tmp_path / "tiny.npz"
    np.savez(npz, x=rng.integers(0, 255, (1000, 12, 12), dtype=np.uint8), y=rng.integers(0, 3, 1000),
             x_test=rng.integers(0, 255, (12, 12, 12), dtype=np.uint8), y_test=rng.integers(0, 3, 12))
    sweep = tmp_path / "killed.toml"
    sweep.write_text(SWEEP.format(npz=npz))
    home = tmp_path / "home"
    monkeypatch.setenv("CNNLAB_HOME", str(home))
    runner = CliRunner()
    assert runner.invoke(app, ["sweep", str(sweep), "--workers", "0"]).exit_code == 0

    worker = subprocess.Popen([sys.executable, "-c", "from cnnlab.cli import main; main()", "worker",
                               "--study", "killed", "--workers", "1", "--threads", "1", "-q"],
                              env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    store = RunStore(root=home)
    try:
        deadline = time.monotonic() + 120
        while not store.list_runs(status="running") and time.monotonic() < deadline:
            time.sleep(0.05)
        (run,) = store.list_runs()
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.kill()
        worker.wait()
    assert store.epochs(run.id) == []  # killed inside its first epoch
    assert not store.checkpoint_path(run.id).exists()

    again = runner.invoke(app, ["worker", "--study", "killed", "--workers", "1", "--threads", "1", "-q"])
    assert again.exit_code == 0, again.output
    runs = store.list_runs()
    assert [(r.id, r.status, r.epochs_done) for r in runs] == [(run.id, "completed", 1)]
    trials = optuna.load_study(study_name="killed", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(home / "sweeps.journal")))).get_trials()
    assert [(t.state, t.user_attrs.get("outcome")) for t in trials] == [
        (TrialState.FAIL, "worker died"), (TrialState.COMPLETE, "resumed")]
    assert trials[1].system_attrs["retry_history"] == []
