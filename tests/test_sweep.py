"""Sweep files: grid, zip and sampled spaces expand into the right cells, and bad files are
rejected before anything is written, each problem naming its cell."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.errors import ConfigError
from cnnlab.store import RunStore
from cnnlab.sweep import expand_cells, load_sweep, parse_sweep

ROOT = Path(__file__).resolve().parents[1]
SWEEP_EXAMPLES = sorted((ROOT / "examples" / "sweeps").glob("*.toml"))

BASE = {
    "data": {"dataset": "mnist-sample", "train_limit": 128, "test_limit": 64, "val": 0.02},
    "model": {"name": "book_cnn"},
    "train": {"optimizer": "adam", "lr": 0.003, "epochs": 1, "eval_test": False},
}


def spec(**raw):
    return parse_sweep({"name": "t", "base": BASE, **raw})


def problems(**raw) -> str:
    with pytest.raises(ConfigError) as info:
        expand_cells(spec(**raw))
    return str(info.value)


def test_grid_is_the_cartesian_product_repeated_for_every_seed():
    cells = expand_cells(spec(seeds=[0, 1, 2], grid={"train.loss": ["mse", "cross_entropy"],
                                                      "train": {"optimizer": ["adam", "sgd"]}}))
    assert len(cells) == 12
    first = [c.overrides for c in cells[:4]]
    assert first == [
        {"train.loss": "mse", "train.optimizer": "adam"},
        {"train.loss": "mse", "train.optimizer": "sgd"},
        {"train.loss": "cross_entropy", "train.optimizer": "adam"},
        {"train.loss": "cross_entropy", "train.optimizer": "sgd"},
    ]
    assert [c.seed for c in cells] == [0] * 4 + [1] * 4 + [2] * 4
    assert len({c.config_hash for c in cells}) == 12
    assert len({c.cell_hash for c in cells}) == 4  # the cell hash leaves the seed out
    assert cells[0].label == "train.loss=mse, train.optimizer=adam"


def test_zip_values_move_together_and_cross_the_grid():
    cells = expand_cells(spec(
        grid={"train.loss": ["mse", "cross_entropy"]},
        zip={"train.optimizer": ["adam", "sgd"], "train.lr": [0.001, 0.01]},
    ))
    pairs = {(c.overrides["train.optimizer"], c.overrides["train.lr"]) for c in cells}
    assert pairs == {("adam", 0.001), ("sgd", 0.01)}
    assert len(cells) == 4


def test_grids_are_unioned_and_the_same_config_is_kept_once():
    cells = expand_cells(spec(grid=[{"train.lr": [0.003, 0.01]}, {"train.batch_size": [64, 32]}]))
    # lr 0.003 and batch_size 64 are both the base config: one cell, not two.
    assert len(cells) == 3
    assert [c.label for c in cells] == ["train.lr=0.003", "train.lr=0.01", "train.batch_size=32"]


def test_random_space_is_sampled_reproducibly_and_within_its_ranges():
    raw = {"random": {"n_trials": 6, "train.lr": {"low": 1e-4, "high": 1e-1, "log": True},
                      "train.batch_size": {"low": 16, "high": 128, "step": 16},
                      "model.dropout": [0.2, 0.5]}}
    cells = expand_cells(spec(**raw))
    assert len(cells) == 6
    assert [c.config_hash for c in cells] == [c.config_hash for c in expand_cells(spec(**raw))]
    for cell in cells:
        assert 1e-4 <= cell.overrides["train.lr"] <= 1e-1
        assert cell.overrides["train.batch_size"] % 16 == 0
        assert isinstance(cell.overrides["train.batch_size"], int)
        assert cell.overrides["model.dropout"] in (0.2, 0.5)
        assert set(cell.params) == {"train.lr", "train.batch_size", "model.dropout"}
    assert len({round(math.log10(c.overrides["train.lr"]), 6) for c in cells}) == 6
    more = expand_cells(spec(random={**raw["random"], "n_trials": 8}))
    assert [c.config_hash for c in more[:6]] == [c.config_hash for c in cells]


def test_list_choices_in_a_sampled_space_come_back_as_lists():
    filters = expand_cells(parse_sweep({
        "name": "f", "base": {**BASE, "model": {"name": "three_conv_cnn"}},
        "random": {"n_trials": 3, "model.filters": [[8, 16, 16], [16, 16, 16]]},
    }))
    assert filters and all(c.overrides["model.filters"] in ([8, 16, 16], [16, 16, 16]) for c in filters)
    assert all(c.params["model.filters"] in ("[8,16,16]", "[16,16,16]") for c in filters)


def test_tpe_space_checks_every_choice_and_both_ends_of_every_range():
    assert expand_cells(spec(tpe={"n_trials": 5, "train.lr": {"low": 1e-5, "high": 0.1, "log": True}})) == []
    text = problems(tpe={"n_trials": 5, "model.dropout": [0.2, 1.5]})
    assert "model.dropout: 1.5" in text
    text = problems(tpe={"n_trials": 5, "train.batch_size": {"low": 0, "high": 64}})
    assert "train.batch_size: 0" in text


def test_an_invalid_value_in_one_cell_is_rejected_naming_the_cell():
    text = problems(grid={"train.loss": ["mse", "cross_entropy"], "train.lr": [0.01, 0]})
    assert "cell 2 of 4 (train.loss=mse, train.lr=0): train.lr: 0 is out of range" in text
    assert "cell 4 of 4 (train.loss=cross_entropy, train.lr=0)" in text
    assert "cell 1 of 4" not in text


def test_a_model_that_does_not_fit_the_data_is_rejected_naming_the_cell():
    raw = {**BASE, "model": {"name": "keras_cifar_cnn", "pool": 2}}
    with pytest.raises(ConfigError, match=r"\(model.pool=3\): model") as info:
        expand_cells(parse_sweep({"name": "t", "base": raw, "grid": {"model.pool": [2, 3]}}))
    assert "does not fit" in str(info.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"grid": {"train.lr": []}}, "grid.train.lr: [] is an empty list"),
        ({"grid": {"training.lr": [0.1]}}, "grid.training.lr: [0.1] is not a setting"),
        ({"grid": {"train.colour": [1, 2]}}, "(train.colour=1): train.colour: 'colour' is not a known key"),
        ({"grid": {"train.lr": 0.1}}, "grid.train.lr: 0.1 must be a list of values"),
        ({"zip": {"train.lr": [0.1, 0.2], "train.batch_size": [32]}}, "zip: 'train.lr has 2, "),
        ({"grid": {"train.lr": [0.1]}, "tpe": {"n_trials": 2, "train.lr": [0.1]}}, "mixes modes"),
        ({"random": {"train.lr": [0.1]}}, "random.n_trials: None must be an integer ≥ 1"),
        ({"random": {"n_trials": 2, "train.lr": {"low": 1, "high": 0}}}, "has low > high"),
        ({"tpe": {"n_trials": 2, "train.lr": {"low": 0, "high": 1, "log": True}}}, "needs low > 0"),
        ({"seeds": []}, "seeds: [] must be a non-empty list"),
        ({"seeds": [1, 1]}, "distinct"),
        ({"metric": "accuracy"}, "metric: 'accuracy' is not one of val_acc"),
        ({"pruner": {"type": "mediam"}}, "pruner.type: 'mediam' is not one of median"),
        ({"pruner": {"type": "median", "warmup": 2}}, "pruner.warmup: 2 is not an option of the median"),
        ({"gird": {"train.lr": [0.1]}}, "gird: {'train.lr': [0.1]} is not a known key"),
        ({"base": "missing.toml"}, "base: 'missing.toml' does not exist"),
        ({"claim": False}, "claim: False must be a table with text, source and order or best"),
        ({"claim": 0}, "claim: 0 must be a table with text, source and order or best"),
        ({"claim": []}, "claim: [] must be a table with text, source and order or best"),
        ({"claim": ""}, "claim: '' must be a table with text, source and order or best"),
        ({"claim": {"text": "t"}}, "claim.source: None must be a non-empty string"),
    ],
)
def test_bad_sweep_files_are_rejected_with_the_key(raw, expected):
    with pytest.raises(ConfigError) as info:
        expand_cells(parse_sweep({"name": "t", "base": BASE, **raw}, folder=Path("/nonexistent")))
    assert expected in str(info.value)


def test_metric_needs_its_split():
    text = problems(metric="test_acc")
    assert "metric: 'test_acc' needs train.eval_test = true" in text


def test_base_file_is_read_relative_to_the_sweep_file(tmp_path):
    (tmp_path / "exps").mkdir()
    (tmp_path / "exps" / "base.toml").write_text('seed = 4\n[train]\nlr = 0.02\n')
    sweep = tmp_path / "exps" / "sweeps" / "s.toml"
    sweep.parent.mkdir()
    sweep.write_text('base = "../base.toml"\n[set]\ntrain.epochs = 2\n[grid]\ntrain.batch_size = [16, 32]\n')
    loaded = load_sweep(sweep)
    assert loaded.name == "s"
    assert loaded.seeds == [4]
    assert loaded.base["train"] == {"lr": 0.02, "epochs": 2}
    assert len(expand_cells(loaded)) == 2


# What each seed study must contain: (cells, a key, the values it must take).
SEED_STUDIES = {
    "loss-x-optimizer": (12, "train.loss", {"mse", "cross_entropy"}),
    "keras-cifar-ablation": (16, "model.pool", {1, 2}),
    "mnist-bn-factors": (14, "train.lr", {1e-1, 1e-2, 1e-3, 1e-4, 1e-5}),
    "mnist-bn-tpe": (0, "train.lr", set()),
    "domains": (6, "train.lr", {1e-3}),
}


@pytest.mark.parametrize("example", SWEEP_EXAMPLES, ids=lambda p: p.name)
def test_every_example_sweep_validates_without_its_data(example):
    loaded = load_sweep(example)
    cells = expand_cells(loaded)  # builds every cell's model: cifar10 itself is not needed
    count, key, values = SEED_STUDIES[example.stem]
    assert len(cells) == count
    assert {c.overrides.get(key, loaded.base["train"].get("lr")) for c in cells} >= values
    if loaded.mode == "tpe":
        assert loaded.pruner == {"type": "median", "n_startup_trials": 5, "n_warmup_steps": 5}


def test_cli_rejects_a_bad_sweep_with_exit_2_and_writes_nothing(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("CNNLAB_HOME", str(home))
    sweep = tmp_path / "bad.toml"
    sweep.write_text('[base.data]\ndataset = "mnist-sample"\n[grid]\n"train.lr" = [0.01, -1]\n')
    result = CliRunner().invoke(app, ["sweep", str(sweep), "--workers", "1"])
    assert result.exit_code == 2, result.output
    assert "(train.lr=-1): train.lr: -1 is out of range" in result.output
    assert not (home / "sweeps.journal").exists()
    assert RunStore(root=home).list_runs() == []
