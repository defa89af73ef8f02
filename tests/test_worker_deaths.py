"""A cell that kills its worker process every time (as running out of memory does) is queued again
only a few times: then it is stored failed with the cause, and the sweep ends instead of feeding it
workers without end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

import cnnlab
from cnnlab.sweep.retry import DEATHS_ATTR, MAX_WORKER_DEATHS

SRC = Path(cnnlab.__file__).resolve().parents[1]
# A model that kills its own process with SIGKILL when it first sees data: the kernel's OOM killer.
KILLER = """
import os, signal
from torch import nn

class Net(nn.Module):
    def __init__(self, in_channels=1, num_classes=3):
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x):
        os.kill(os.getpid(), signal.SIGKILL)
"""
SWEEP = """
name = "killer"
[base.data]
dataset = "npz"
path = "{npz}"
val = "test"
[base.model]
name = "killer:Net"
[base.train]
epochs = 1
[grid]
"train.lr" = [0.01]
"""


def test_a_cell_that_kills_every_worker_is_failed_with_the_cause_after_a_few_deaths(tmp_path):
    rng = np.random.default_rng(0)
    npz = tmp_path / "tiny.npz"
    np.savez(npz, x=rng.integers(0, 255, (32, 12, 12), dtype=np.uint8), y=rng.integers(0, 3, 32),
             x_test=rng.integers(0, 255, (8, 12, 12), dtype=np.uint8), y_test=rng.integers(0, 3, 8))
    (tmp_path / "killer.py").write_text(KILLER)
    (tmp_path / "killer.toml").write_text(SWEEP.format(npz=npz))
    env = {**os.environ, "CNNLAB_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1", "COLUMNS": "200",
           "PYTHONPATH": os.pathsep.join([str(SRC), str(tmp_path)])}

    def cnnlab_(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cnnlab", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)

    # One worker, in the sweep's own process: each time the cell kills it, and the command run
    # again finds the death and queues the cell again, until the deaths reach the limit.
    for _ in range(MAX_WORKER_DEATHS):
        killed = cnnlab_("sweep", "killer.toml", "--workers", "1", "--threads", "1", "-q")
        assert killed.returncode == -9, killed.stdout + killed.stderr
    last = cnnlab_("sweep", "killer.toml", "--workers", "1", "-q")
    assert last.returncode == 1, last.stdout + last.stderr  # ends: nothing is left to train
    status = cnnlab_("sweep-status", "killer")
    said = " ".join(status.stdout.split())
    assert "1 failed" in said and f"its worker process died {MAX_WORKER_DEATHS} times" in said, said

    study = optuna.load_study(study_name="killer", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "home" / "sweeps.journal"))))
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL] * (MAX_WORKER_DEATHS + 1)
    assert trials[-1].system_attrs[DEATHS_ATTR] == MAX_WORKER_DEATHS
    assert not any(t.state == TrialState.WAITING for t in trials)  # not queued again


def _died(study: optuna.Study, epochs: int, system_attrs: dict) -> optuna.trial.FrozenTrial:
    """A trial whose worker died after its run had reported ``epochs`` epochs."""
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.FAIL, intermediate_values={e: 0.5 for e in range(1, epochs + 1)},
        user_attrs={"outcome": "worker died"}, system_attrs=system_attrs))
    return study.get_trials(deepcopy=False)[-1]


def test_worker_deaths_count_again_from_zero_after_the_run_stored_new_epochs():
    from cnnlab.sweep.retry import requeue

    study = optuna.create_study()
    attrs: dict = {}
    for epochs, deaths in ((2, 1), (2, 2), (3, 1), (3, 2), (5, 1), (0, 2)):
        assert requeue(study, _died(study, epochs, attrs), count=False, died=True)
        attrs = study.get_trials(deepcopy=False)[-1].system_attrs
        assert attrs[DEATHS_ATTR] == deaths, (epochs, attrs)
    # One more death without a new epoch: the limit, and the cell is given up.
    assert not requeue(study, _died(study, 5, attrs), count=False, died=True)
    given_up = study.get_trials(deepcopy=False)[-1]
    assert given_up.system_attrs[DEATHS_ATTR] == MAX_WORKER_DEATHS
    assert "make it need less memory" in given_up.user_attrs["error"]
