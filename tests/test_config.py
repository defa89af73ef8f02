"""Experiment files: overrides, and one clear message per bad value before anything runs."""

from __future__ import annotations

import pytest

from cnnlab.checks import load_experiment, validate_experiment
from cnnlab.config import QUICKSTART, apply_overrides, config_hash, parse_override
from cnnlab.errors import ConfigError


def problems_of(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_experiment(raw)
    return [str(p) for p in info.value.problems]


def test_defaults_validate():
    exp = validate_experiment({})
    assert exp.train.optimizer == "sgd"
    assert exp.data.dataset == "mnist-sample"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("train.lr=0.001", ("train.lr", 0.001)),
        ("train.epochs=5", ("train.epochs", 5)),
        ("train.optimizer=adam", ("train.optimizer", "adam")),
        ("model.filters=[32, 64, 64]", ("model.filters", [32, 64, 64])),
        ("train.nesterov=true", ("train.nesterov", True)),
        ("data.val='test'", ("data.val", "test")),
    ],
)
def test_parse_override(text, expected):
    assert parse_override(text) == expected


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        parse_override("train.lr")


def test_apply_overrides_creates_sections_and_keeps_input():
    raw = {"train": {"lr": 0.1}}
    out = apply_overrides(raw, ["train.lr=0.5", "model.dropout=0.2"])
    assert out == {"train": {"lr": 0.5}, "model": {"dropout": 0.2}}
    assert raw == {"train": {"lr": 0.1}}


def test_load_experiment_file_with_overrides(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('[train]\noptimizer = "sgd"\nlr = 0.01\n')
    exp = load_experiment(path, ["train.lr=0.001", "train.epochs=5"])
    assert exp.train.lr == 0.001
    assert exp.train.epochs == 5


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nlr = ")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_experiment(bad)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"train": {"lr": 0}}, "train.lr: 0 is out of range: must be > 0"),
        ({"train": {"lr": -1e-3}}, "train.lr: -0.001 is out of range: must be > 0"),
        ({"train": {"batch_size": 0}}, "train.batch_size: 0 is out of range: must be ≥ 1"),
        ({"train": {"epochs": 0}}, "train.epochs: 0 is out of range: must be ≥ 1"),
        ({"train": {"optimizer": "adamm"}},
         "train.optimizer: 'adamm' is not one of sgd, adam, adamw, rmsprop"),
        ({"train": {"loss": "hinge"}}, "train.loss: 'hinge' is not one of cross_entropy, mse, nll"),
        ({"train": {"lr": "fast"}}, "train.lr: 'fast' is not a number"),
        ({"train": {"epochs": 2.5}}, "train.epochs: 2.5 is not an integer"),
        ({"train": {"momentum": 1.0}}, "train.momentum: 1.0 is out of range: must be ≥ 0 and < 1"),
        ({"data": {"val": 1.5}}, "data.val: 1.5 must be a fraction in [0, 1)"),
        ({"data": {"dataset": "imagenet"}}, "data.dataset: 'imagenet' is not one of"),
        ({"model": {"name": "resnet999"}}, "model.name: 'resnet999'"),
        ({"model": {"name": "book_cnn", "dropout": 1.0}}, "model.dropout: 1.0"),
        ({"model": {"name": "book_cnn", "dropout": -0.1}}, "model.dropout: -0.1"),
    ],
)
def test_each_bad_value_names_key_value_and_allowed(raw, expected):
    messages = problems_of(raw)
    assert len(messages) == 1, messages
    assert messages[0].startswith(expected), messages


def test_unknown_keys_list_allowed_ones():
    messages = problems_of({"train": {"learning_rate": 0.1}, "colour": "red"})
    assert any(m.startswith("train.learning_rate: 'learning_rate' is not a known key; allowed:")
               and "lr" in m for m in messages)
    assert any(m.startswith("colour:") for m in messages)


def test_unknown_model_kwarg_lists_allowed_ones():
    messages = problems_of({"model": {"name": "book_cnn", "dropot": 0.5}})
    assert messages[0].startswith("model.dropot")
    assert "dropout" in messages[0]


def test_several_problems_reported_together():
    messages = problems_of({"train": {"lr": 0, "batch_size": 0, "optimizer": "x"}})
    assert {m.split(":")[0] for m in messages} == {"train.lr", "train.batch_size", "train.optimizer"}


def test_user_data_needs_a_path():
    assert problems_of({"data": {"dataset": "npz"}})[0].startswith("data.path")


def test_hash_ignores_machine_keys_and_optionally_seed():
    a = validate_experiment({"seed": 1, "data": {"root": "/a"}, "train": {"threads": 1}})
    b = validate_experiment({"seed": 1, "data": {"root": "/b"}, "train": {"threads": 2}})
    c = validate_experiment({"seed": 2})
    assert a.hash() == b.hash()
    assert a.hash() != c.hash()
    assert a.hash(include_seed=False) == c.hash(include_seed=False)
    assert config_hash(a.resolved()) == a.hash()


def test_quickstart_is_valid_and_offline():
    exp = validate_experiment(QUICKSTART)
    assert exp.data.dataset == "mnist-sample"
