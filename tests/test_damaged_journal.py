"""A local sweep's journal cut mid-line, or half of it followed by garbage: `sweep-status` says so in
one line and shows the sweep as the run store has it; `cnnlab sweep` says so, keeps the damaged
file, repairs the journal and carries on without training any finished cell again."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import cnnlab
from cnnlab.store import RunStore

SRC = Path(cnnlab.__file__).resolve().parents[1]
SWEEP = """
name = "tiny"
seeds = [0, 1]
[base]
data = { dataset = "mnist-sample", train_limit = 64, test_limit = 32, val = 0.25 }
train = { epochs = 1, batch_size = 32 }
[grid]
"train.lr" = [0.01, 0.1]
"""


def _cnnlab(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CNNLAB_HOME": str(tmp_path / "home"), "PYTHONPATH": str(SRC), "COLUMNS": "150",
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "cnnlab", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


def _runs(home: Path) -> dict[str, tuple[str, int, str]]:
    """Each run's status, epochs and checkpoint sha256: what retraining would change."""
    with RunStore(root=home) as store:
        return {r.id: (r.status, len(store.epochs(r.id)),
                       hashlib.sha256(store.checkpoint_path(r.id).read_bytes()).hexdigest())
                for r in store.list_runs()}


def _all_done(status: subprocess.CompletedProcess[str]) -> bool:
    return "sweep tiny: 4 runs — 4 done" in status.stdout


def test_a_damaged_journal_is_said_shown_from_the_store_and_repaired_without_retraining(tmp_path):
    (tmp_path / "tiny.toml").write_text(SWEEP)
    first = _cnnlab(tmp_path, "sweep", "tiny.toml", "--workers", "1", "-q")
    assert first.returncode == 0, first.stderr
    journal = tmp_path / "home" / "sweeps.journal"
    whole = journal.read_bytes()
    trained = _runs(tmp_path / "home")
    assert len(trained) == 4 and all(status == "completed" for status, _, _ in trained.values())

    for damage, expected in (
        (whole[:len(whole) * 45 // 100], "(cut mid-line)"),
        (whole[:len(whole) // 2] + b"\n\x00\x17garbage{not json\n" + os.urandom(300) + b"\n",
         "(not a journal record)"),
    ):
        journal.write_bytes(damage)
        assert not damage.endswith(b"\n") or expected != "(cut mid-line)"
        status = _cnnlab(tmp_path, "sweep-status", "tiny")
        assert status.returncode == 0, status.stderr
        assert _all_done(status), status.stdout
        lines = status.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"warning: sweeps journal {journal} is damaged at "
                                                       f"line ") and expected in lines[0], lines
        assert journal.read_bytes() == damage  # reading changes nothing

        again = _cnnlab(tmp_path, "sweep", "tiny.toml", "--workers", "1", "-q")
        assert again.returncode == 0, again.stderr
        notice = [line for line in again.stderr.splitlines() if "sweeps journal" in line]
        assert len(notice) == 1 and "kept as sweeps.journal.damaged-" in notice[0], again.stderr
        assert _runs(tmp_path / "home") == trained  # no run trained again, no epoch added
        after = _cnnlab(tmp_path, "sweep-status", "tiny")
        assert _all_done(after) and after.stderr == "", after.stderr
    kept = sorted(p.name for p in journal.parent.glob("sweeps.journal.damaged-*"))
    assert len(kept) == 2
