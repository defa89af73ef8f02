"""The checks layer: every problem of an experiment at once, before anything is written."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnnlab.checks import experiment_problems, validate_experiment
from cnnlab.cli import app
from cnnlab.data.facts import DATASETS
from cnnlab.errors import ConfigError
from cnnlab.store import RunStore

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "book-cnn-mnist.toml"


def train(home: Path, *args: str):
    return CliRunner().invoke(app, ["train", *args], env={"CNNLAB_HOME": str(home), "COLUMNS": "200"},
                              catch_exceptions=False)


def error_lines(output: str) -> list[str]:
    """The CLI's error messages, each joined back into one line (Rich wraps long ones)."""
    return ["error: " + " ".join(part.split()) for part in output.split("error: ")[1:]]


def test_three_overrides_three_messages_with_did_you_mean(tmp_path):
    result = train(tmp_path, str(EXAMPLE), "-s", "train.optimizer=adamm", "-s", "data.dataset=mnst",
                   "-s", "model.droput=1")
    assert result.exit_code == 2
    lines = error_lines(result.output)
    assert len(lines) == 3, result.output
    assert any("train.optimizer: 'adamm'" in line and "(did you mean adam?)" in line for line in lines)
    assert any("data.dataset: 'mnst'" in line and "(did you mean mnist?)" in line for line in lines)
    assert any("model.droput" in line and "(did you mean dropout?)" in line for line in lines)
    assert RunStore(root=tmp_path).list_runs() == []


def test_five_mistakes_five_messages_exit_2(tmp_path):
    path = tmp_path / "five.toml"
    path.write_text('[data]\ndataset = "fashion-mnst"\nalter = "colr"\n[model]\nname = "book_cnn"\n'
                    'droput = 0.5\n[train]\nlos = "mse"\nmonitor = "val_ac"\n')
    result = train(tmp_path, str(path))
    assert result.exit_code == 2
    lines = error_lines(result.output)
    assert len(lines) == 5, result.output
    for key, suggestion in [("data.dataset", "fashion-mnist"), ("data.alter", "colour"),
                            ("model.droput", "dropout"), ("train.los", "loss"), ("train.monitor", "val_acc")]:
        assert any(line.startswith(f"error: {key}:") and f"did you mean {suggestion}?" in line
                   for line in lines), (key, result.output)
    assert RunStore(root=tmp_path).list_runs() == []


def test_nesterov_without_momentum_exits_2_with_one_message_and_stores_nothing(tmp_path):
    result = train(tmp_path, str(EXAMPLE), "-s", "train.optimizer=sgd", "-s", "train.nesterov=true",
                   "-s", "train.momentum=0")
    assert result.exit_code == 2
    assert error_lines(result.output) == ["error: train.nesterov: True needs train.momentum > 0"]
    assert RunStore(root=tmp_path).list_runs() == []


def test_nesterov_with_another_optimizer_is_refused():
    with pytest.raises(ConfigError, match=r"train\.nesterov: True applies only to train\.optimizer 'sgd'"):
        validate_experiment({"train": {"optimizer": "adam", "nesterov": True}})


def test_bad_model_key_reported_beside_field_errors():
    _, problems = experiment_problems({"model": {"name": "book_cnn", "dropuot": 3},
                                       "train": {"lr": -1, "batch_size": "big"}})
    assert sorted(p.key for p in problems) == ["model.dropuot", "train.batch_size", "train.lr"]


@pytest.mark.parametrize(("key", "value", "text"), [
    ("epochs", True, "train.epochs: True is not an integer"),
    ("batch_size", False, "train.batch_size: False is not an integer"),
    ("lr", True, "train.lr: True is not a number"),
    ("lr", math.inf, "train.lr: inf is not a finite number"),
    ("lr", math.nan, "train.lr: nan is not a finite number"),
    ("weight_decay", math.inf, "train.weight_decay: inf is not a finite number"),
])
def test_booleans_are_not_numbers_and_non_finite_numbers_are_named(key, value, text):
    with pytest.raises(ConfigError) as info:
        validate_experiment({"train": {key: value}})
    assert [str(p) for p in info.value.problems] == [text]


def test_seed_true_is_not_an_integer():
    with pytest.raises(ConfigError, match="seed: True is not an integer"):
        validate_experiment({"seed": True})


@pytest.mark.parametrize("facts", DATASETS.values(), ids=list(DATASETS))
def test_dataset_facts_decide_the_checks(facts):
    _, missing_path = experiment_problems({"data": {"dataset": facts.name}})
    assert [p.key for p in missing_path] == (["data.path"] if facts.needs_path else [])
    _, extra = experiment_problems({"data": {"dataset": facts.name, "extra": True,
                                             "path": "x" if facts.needs_path else None}})
    assert [p.key for p in extra] == ([] if facts.has_extra else ["data.extra"])


def test_a_text_file_named_npz_is_called_what_it_is(tmp_path):
    fake = tmp_path / "digits.npz"
    fake.write_text("x,y\n1,2\n")
    result = train(tmp_path, str(EXAMPLE), "-s", "data.dataset=npz", "-s", f"data.path='{fake}'")
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "is not an .npz file (a zip of NumPy arrays" in text and "pickled" not in text
    assert RunStore(root=tmp_path).list_runs() == []


def test_an_image_folder_with_one_class_is_refused(tmp_path):
    from PIL import Image

    folder = tmp_path / "pictures" / "cat"
    folder.mkdir(parents=True)
    for i in range(6):
        Image.new("L", (28, 28), color=i * 40).save(folder / f"{i}.png")
    result = train(tmp_path, str(EXAMPLE), "-s", "data.dataset=imagefolder",
                   "-s", f"data.path='{folder.parent}'")
    assert result.exit_code == 2
    assert "has 1 class (cat); a classifier needs at least two" in " ".join(result.output.split())
    assert RunStore(root=tmp_path).list_runs() == []


def test_cross_checks_are_reported_beside_field_errors_of_the_same_section():
    _, problems = experiment_problems({"train": {"lr": math.inf, "epochs": True, "nesterov": True,
                                                 "momentum": 0}})
    assert [str(p) for p in problems] == ["train.lr: inf is not a finite number",
                                          "train.epochs: True is not an integer",
                                          "train.nesterov: True needs train.momentum > 0"]


@pytest.mark.parametrize(("base", "key"), [
    ({"model": {"name": "layers", "layers": [{"type": ["conv"]}]}}, "model.layers"),
    ({"model": {"name": "layers", "layers": [{"type": {"conv": 1}}]}}, "model.layers"),
    ({"train": {"precision": ["auto"]}}, "train.precision"),
])
def test_an_unhashable_value_is_one_message_not_a_traceback(base, key):
    from cnnlab.checks import load_experiment

    with pytest.raises(ConfigError) as caught:
        load_experiment(base=base)
    assert key in str(caught.value)


def test_odd_stored_configs_hash_and_one_that_cannot_leaves_the_others_rehashed(tmp_path):
    """A store is data: sections that are not tables hash as they are, and a run whose config the
    hash function refuses stays at its old hash version while the others are upgraded."""
    import sqlite3

    from cnnlab.checks import filled_hashes
    from cnnlab.config import config_hash

    odd = [{"train": 5, "data": [1], "model": {"name": "layers", "layers": [{"type": ["conv"]}]}},
           {"train": {"precision": ["auto"]}}, ["not", "a", "table"]]
    for config in odd:
        assert len(config_hash(config)) == 16 and len(config_hash(config, include_seed=False)) == 16
        filled_hashes(config)
    store = RunStore(root=tmp_path)
    ids = [store.create_run(name=None, config=config, config_hash="old", cell_hash="old", seed=0,
                            host="h", versions={}) for config in [{"seed": 1}, {"seed": 2}]]
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        db.execute("UPDATE runs SET hash_version = 1")

    def hashes(config):
        if config["seed"] == 2:
            raise TypeError("unhashable type: 'list'")
        return "new", "newcell"

    assert store.rehash(hashes, 2) == 1
    first, second = (store.get_run(run_id) for run_id in ids)
    assert (first.config_hash, first.legacy_hash, first.hash_version) == ("new", "old", 2)
    assert (second.config_hash, second.legacy_hash, second.hash_version) == ("old", None, 1)
