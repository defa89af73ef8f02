"""What the terminal shows where it is not a terminal or is narrow: a sweep writing into a log file
writes a line per finished epoch and run; `runs --wide` at 80 columns shows whole ids and names;
`quickstart` takes -s."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from cnnlab.analyze.synthetic import curves, store_run
from cnnlab.cli import app
from cnnlab.config import Experiment, apply_overrides
from cnnlab.store import RunStore

runner = CliRunner()
SWEEP = """
name = "logged"
seeds = [0]

[base]
data = { dataset = "mnist-sample", train_limit = 256, test_limit = 64, val = 0.1 }
model = { name = "book_cnn" }
train = { optimizer = "adam", lr = 0.003, epochs = 2, batch_size = 64, threads = 1 }

[grid]
"train.lr" = [0.003, 0.001]
"""


def test_a_sweep_writing_into_a_log_file_writes_a_line_per_epoch_and_per_run(tmp_path):
    (tmp_path / "logged.toml").write_text(SWEEP)
    env = {**os.environ, "CNNLAB_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    log = tmp_path / "log"
    with log.open("w") as out:  # stdout is a file, not a terminal
        command = [sys.executable, "-m", "cnnlab", "sweep", str(tmp_path / "logged.toml"), "--workers", "1"]
        subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, check=True, timeout=600)
    text = log.read_text()
    runs = {r.id for r in RunStore(root=tmp_path / "home").list_runs()}
    assert len(runs) == 2
    for run_id in runs:
        assert re.search(rf"sweep logged: run {run_id} \(train\.lr=0\.00[13], seed 0\) done after 2/2 "
                         r"epochs, final val_acc \d+\.\d\d%", text), text
    assert "2 of 2 runs finished" in text


def test_an_epoch_that_ends_between_two_polls_is_its_own_line(tmp_path, monkeypatch):
    """The 2 s poll is longer than this tiny sweep's epochs; polled every 20 ms, each finished
    epoch shows as its own line before the run's "done" line."""
    import io

    from rich.console import Console

    from cnnlab.sweep import view
    from cnnlab.sweep.runner import run_sweep
    from cnnlab.sweep.storage import Location

    monkeypatch.setattr(view, "REFRESH_S", 0.02)
    (tmp_path / "logged.toml").write_text(SWEEP.replace("epochs = 2", "epochs = 3"))
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    run_sweep(tmp_path / "logged.toml", Location(root=tmp_path / "home"), workers=1, console=console)
    text = out.getvalue()
    for epoch in (1, 2):
        assert re.search(rf"run r[0-9a-f]{{8}} \(train\.lr=0\.00[13], seed 0\) epoch {epoch}/3\n", text), text
    assert text.index("epoch 1/3") < text.index("done after 3/3 epochs"), text


def test_runs_wide_at_80_columns_never_cuts_an_id_or_a_name(tmp_path):
    home = tmp_path / "home"
    long_name = "a-run-name-long-enough-to-be-cut-in-the-runs-table-at-80-cols"
    with RunStore(root=home) as store:
        base = apply_overrides(Experiment().resolved(), {"train.epochs": 3})
        ids = [store_run(store, {**base, "name": long_name, "seed": seed}, curves(3, seed=seed))
               for seed in (0, 1)]
        store.add_tag(ids[0], "baseline")
    env = {**os.environ, "CNNLAB_HOME": str(home), "COLUMNS": "80"}
    wide = subprocess.run([sys.executable, "-m", "cnnlab", "runs", "--wide"], capture_output=True, text=True,
                          env=env, check=True, timeout=120).stdout
    assert max(len(line) for line in wide.splitlines()) <= 80
    for run_id in ids:
        assert f"{run_id}  {long_name}" in wide  # whole, on one line: copyable
    words = " ".join(wide.split())  # every column, wrapped where the terminal ends
    assert "[baseline]" in words and "best val" in words and "created" in words
    assert "…" not in wide
    plain = subprocess.run([sys.executable, "-m", "cnnlab", "runs"], capture_output=True, text=True, env=env,
                           check=True, timeout=120).stdout
    assert all(run_id in plain for run_id in ids) and "…" in plain  # plain `runs` cuts names only


def test_quickstart_takes_settings(home: Path):
    result = runner.invoke(app, ["quickstart", "--epochs", "1", "-q", "-s", "data.train_limit=256",
                                 "-s", "data.test_limit=64", "-s", "train.threads=1"])
    assert result.exit_code == 0, result.output
    (record,) = RunStore(root=home).list_runs()
    assert record.config["data"]["train_limit"] == 256 and record.config["train"]["threads"] == 1
    assert "cnnlab train book-cnn-mnist" in result.output and "examples/" not in result.output
    bad = runner.invoke(app, ["quickstart", "-s", "train.optimizer=adamm"])
    assert bad.exit_code == 2 and "train.optimizer: 'adamm' is not one of" in bad.output
