"""`cnnlab sweep FILE -s key=value`: set in every cell, part of each cell's config and hash,
printed at the start; bad keys and values are refused once each, and nothing is queued."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.errors import ConfigError
from cnnlab.store import RunStore
from cnnlab.sweep import expand_cells, load_sweep
from cnnlab.sweep.cells import experiment

SWEEP = """
name = "ovr"
seeds = [0, 1]
[base.data]
dataset = "mnist-sample"
train_limit = 64
[base.model]
name = "book_cnn"
[base.train]
epochs = 5
[grid]
"train.lr" = [0.01, 0.03]
"""


@pytest.fixture
def sweep_file(tmp_path) -> Path:
    path = tmp_path / "ovr.toml"
    path.write_text(SWEEP)
    return path


def test_overrides_reach_every_cell_and_change_its_hash(sweep_file):
    plain = expand_cells(load_sweep(sweep_file))
    spec = load_sweep(sweep_file, overrides=["train.epochs=1", "train.precision=fp32"])
    cells = expand_cells(spec)
    assert len(cells) == len(plain) == 4
    for cell in cells:
        train = experiment(spec, cell.overrides, cell.seed).train
        assert (train.epochs, train.precision) == (1, "fp32")
    assert {c.config_hash for c in cells}.isdisjoint({c.config_hash for c in plain})


def test_each_bad_override_is_one_message(sweep_file):
    with pytest.raises(ConfigError) as caught:
        load_sweep(sweep_file, overrides=["train.lrr=1", "train.batch_size=abc", "train.lr=0.1",
                                          "seed=3", "oops"])
    keys = [p.key for p in caught.value.problems]
    assert sorted(keys) == ["-s override", "-s seed", "-s train.batch_size", "-s train.lr", "-s train.lrr"]
    assert "is varied by the sweep" in str(caught.value)


def test_cli_prints_the_overrides_and_queues_them(sweep_file, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["sweep", str(sweep_file), "-s", "train.epochs=1",
                                      "--set", 'train.precision="fp32"', "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == 'set in every cell: train.epochs=1, train.precision="fp32"'
    assert "queued 4 of 4 runs" in result.output


def test_cli_bad_override_exits_2_and_queues_nothing(sweep_file, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("CNNLAB_HOME", str(home))
    result = CliRunner().invoke(app, ["sweep", str(sweep_file), "-s", "train.epochs=0",
                                      "-s", "train.lrr=3", "--workers", "1"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 2, result.output
    assert "-s train.epochs: 0" in errors[0] and "-s train.lrr" in errors[1]
    assert not (home / "sweeps.journal").exists()
    assert RunStore(root=home).list_runs() == []
