"""A local sweep's journal cut mid-line, or half of it followed by garbage: `sweep-status` says so in
one line and shows the sweep as the run store has it; `cnnlab sweep` says so, keeps the damaged
file, repairs the journal and carries on without training any finished cell again."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def _journal(path: Path) -> bytes:
    """A whole journal of one study with one finished trial."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    optuna.create_study(study_name="j", storage=storage).add_trial(optuna.trial.create_trial(value=1.0))
    return path.read_bytes()


def test_reading_a_sweep_takes_no_lock_and_writes_nothing(tmp_path, monkeypatch):
    import optuna

    from cnnlab.sweep import journal
    from cnnlab.sweep.storage import Location

    path = tmp_path / "sweeps.journal"
    whole = _journal(path)

    def no_lock(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path) + ".lock")

    monkeypatch.setattr(journal, "get_lock_file", no_lock)  # as on a read-only mount
    for content in (whole, whole + b'{"op_code": 1, "half'):
        path.write_bytes(content)
        storage = Location(storage=str(path)).open_storage(create=False, repair=False)
        assert len(optuna.load_study(study_name="j", storage=storage).trials) == 1
        assert sorted(p.name for p in tmp_path.iterdir()) == ["sweeps.journal"]
        assert path.read_bytes() == content


def test_a_last_line_being_appended_is_not_damage(tmp_path):
    from cnnlab.sweep.journal import journal_damage

    path = tmp_path / "sweeps.journal"
    whole = _journal(path)
    path.write_bytes(whole + b'{"op_code": 1, "half')
    lock = Path(str(path) + ".lock")
    lock.symlink_to(path)  # a worker holds the journal's lock: it is appending that line now
    assert journal_damage(path) is None
    lock.unlink()  # nobody holds it, and the line stays cut: a worker died while writing it
    damage = journal_damage(path)
    assert damage is not None and damage.reason == "cut mid-line" and damage.good_bytes == len(whole)


def test_status_of_a_sweep_in_a_read_only_folder(tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir(mode=0o555)
    if os.access(probe, os.W_OK):
        pytest.skip("chmod does not stop this user (root) from writing")
    (tmp_path / "tiny.toml").write_text(SWEEP.replace("seeds = [0, 1]", "seeds = [0]").replace(
        '"train.lr" = [0.01, 0.1]', '"train.lr" = [0.01]'))
    first = _cnnlab(tmp_path, "sweep", "tiny.toml", "--workers", "1", "-q")
    assert first.returncode == 0, first.stderr
    home = tmp_path / "home"
    journal = home / "sweeps.journal"
    journal.write_bytes(journal.read_bytes()[:-5])  # cut mid-line, as by a crash
    os.chmod(home, 0o555)
    try:
        status = _cnnlab(tmp_path, "sweep-status", "tiny")
    finally:
        os.chmod(home, 0o755)
    assert status.returncode == 0, status.stderr
    assert "1 done" in status.stdout and "Permission" not in status.stderr, status.stderr
    assert "cut mid-line" in status.stderr


def test_an_unrepaired_damage_is_said_once_per_process_until_the_file_changes(tmp_path, capsys):
    from cnnlab.sweep.storage import Location

    path = tmp_path / "sweeps.journal"
    whole = _journal(path)
    path.write_bytes(whole + b"\x00garbage\n")
    location = Location(storage=str(path))
    for _ in range(3):  # a dashboard's requests and polls
        location.open_storage(create=False, repair=False)
    assert capsys.readouterr().err.count("is damaged at line") == 1
    path.write_bytes(whole + b"\x00more garbage\n")
    location.open_storage(create=False, repair=False)
    assert capsys.readouterr().err.count("is damaged at line") == 1
