"""A run store file of random bytes, or cut short: every command that opens it says so in one line
naming the file (with the way to recover a SQLite file), exits with 2, and leaves it untouched."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cnnlab
from cnnlab.analyze.synthetic import make_sweep
from cnnlab.cli import app
from cnnlab.store import RunStore
from cnnlab.store.damage import damage

SRC = Path(cnnlab.__file__).resolve().parents[1]
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "book-cnn-mnist.toml"
SWEEP = """
name = "tiny"
seeds = [0]
[base]
data = { dataset = "mnist-sample", train_limit = 64, test_limit = 32 }
train = { epochs = 1 }
[grid]
"train.lr" = [0.01, 0.1]
"""


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """A healthy store of 12 synthetic runs (40 epochs each, several pages) and a queued sweep."""
    home = tmp_path_factory.mktemp("good") / "home"
    with RunStore(root=home) as store:
        make_sweep(store, "study", {"train.lr": [1e-3, 1e-2, 1e-1], "train.optimizer": ["adam", "sgd"]},
                   seeds=(0, 1), epochs=40)
    sweep = home.parent / "tiny.toml"
    sweep.write_text(SWEEP)
    queued = CliRunner().invoke(app, ["sweep", str(sweep), "--workers", "0", "--store",
                                      f"sqlite:///{home}/runs.sqlite"], env={"CNNLAB_HOME": str(home)})
    assert queued.exit_code == 0, queued.output
    return home


def _damaged(good: Path, tmp_path: Path, how: str) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "sweeps.journal").write_bytes((good / "sweeps.journal").read_bytes())
    data = (good / "runs.sqlite").read_bytes()
    assert len(data) > 8 * 4096 and damage(good / "runs.sqlite") is None
    cut = data[:len(data) // 2 // 4096 * 4096]  # whole pages: SQLite itself must find the damage
    (home / "runs.sqlite").write_bytes(os.urandom(len(data)) if how == "random" else cut)
    return home


COMMANDS = {
    "runs": ["runs"],
    "show": ["show", "study"],
    "sweep-status": ["sweep-status", "tiny"],
    "report": ["report", "study", "-o", "report"],
    "train": ["train", str(EXAMPLE), "-s", "data.dataset='mnist-sample'", "-s", "train.epochs=1"],
    "ui": ["ui", "--port", "0"],
}


@pytest.mark.parametrize("how", ["random", "truncated"])
def test_every_command_says_one_line_exits_2_and_leaves_the_file(good, tmp_path, how):
    home = _damaged(good, tmp_path, how)
    database = home / "runs.sqlite"
    before = hashlib.sha256(database.read_bytes()).hexdigest()
    env = {**os.environ, "CNNLAB_HOME": str(home), "PYTHONPATH": str(SRC), "COLUMNS": "100"}
    commands = COMMANDS if how == "random" else {k: COMMANDS[k] for k in ("runs", "train", "ui")}
    what = ("is not a SQLite database (its first bytes are not SQLite's header)" if how == "random"
            else "is truncated (")
    for name, args in commands.items():
        done = subprocess.run([sys.executable, "-m", "cnnlab", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        assert len(lines) == 1 and lines[0].startswith(f"error: run store {database} {what}"), (name, lines)
        assert "cnnlab changed nothing" in lines[0]
        if how == "truncated":
            assert f'sqlite3 {database} ".recover" | sqlite3 ' in lines[0]
        assert hashlib.sha256(database.read_bytes()).hexdigest() == before, name
    assert not (tmp_path / "report").exists()
