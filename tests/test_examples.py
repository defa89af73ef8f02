"""The examples shipped inside the package: listed, copied out, found by name wherever a file is
expected, and inside the wheel that `pip install .` builds."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cnnlab
from cnnlab.cli import app
from cnnlab.errors import ConfigError
from cnnlab.example_files import EXAMPLES, copy_examples, find_file, list_examples
from cnnlab.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_the_repositorys_examples_folder_is_the_packages():
    assert (ROOT / "examples").resolve() == EXAMPLES
    assert EXAMPLES.is_relative_to(Path(cnnlab.__file__).resolve().parent)


def test_every_example_is_listed_with_its_kind_and_a_description():
    shipped = {e.relative: e for e in list_examples()}
    assert shipped["book-cnn-mnist.toml"].kind == "experiment"
    assert shipped["sweeps/loss-x-optimizer.toml"].kind == "sweep"
    assert shipped["notebooks/000-loss-x-optimizer.ipynb"].kind == "notebook"
    on_disk = {p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*")
               if p.suffix in (".toml", ".ipynb") and ".ipynb_checkpoints" not in p.parts}
    assert set(shipped) == on_disk
    assert all(e.description for e in shipped.values())
    assert shipped["notebooks/000-loss-x-optimizer.ipynb"].description.startswith("Seed 000")


def test_a_name_or_repository_path_finds_the_example_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_file("book-cnn-mnist") == EXAMPLES / "book-cnn-mnist.toml"
    assert find_file("book-cnn-mnist.toml") == EXAMPLES / "book-cnn-mnist.toml"
    assert find_file("loss-x-optimizer") == EXAMPLES / "sweeps" / "loss-x-optimizer.toml"
    assert find_file("examples/sweeps/domains.toml") == EXAMPLES / "sweeps" / "domains.toml"
    (tmp_path / "book-cnn-mnist.toml").write_text("name = 'mine'\n")
    assert find_file("book-cnn-mnist.toml") == Path("book-cnn-mnist.toml")  # a file that exists wins


def test_an_unknown_name_is_one_error_naming_it_and_the_nearest_example(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        find_file("book-cnn-mnst")
    (problem,) = caught.value.problems
    assert problem.key == "experiment file" and problem.value == "book-cnn-mnst"
    assert "cnnlab examples" in problem.allowed and "did you mean book-cnn-mnist?" in problem.allowed
    with pytest.raises(ConfigError, match="does not exist"):
        find_file("somewhere/book-cnn-mnist.toml")  # only bare names and examples/ paths are looked up


def test_cli_lists_and_copies_the_examples(tmp_path):
    listed = runner.invoke(app, ["examples"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    for name in ("book-cnn-mnist", "loss-x-optimizer", "004-conv-arithmetic"):
        assert name in listed.output
    copied = runner.invoke(app, ["examples", "--copy", str(tmp_path / "mine")])
    assert copied.exit_code == 0, copied.output
    total = len(list_examples())
    assert f"wrote {total} files into" in copied.output
    assert (tmp_path / "mine" / "sweeps" / "loss-x-optimizer.toml").read_bytes() == \
        (EXAMPLES / "sweeps" / "loss-x-optimizer.toml").read_bytes()
    (tmp_path / "mine" / "book-cnn-mnist.toml").write_text("name = 'edited'\n")
    written, kept = copy_examples(tmp_path / "mine")
    assert written == [] and len(kept) == total
    assert (tmp_path / "mine" / "book-cnn-mnist.toml").read_text() == "name = 'edited'\n"


def test_train_and_summary_take_an_example_name(home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", "book-cnn-mnist", "-s", "train.epochs=1", "-s",
                                 "data.dataset='mnist-sample'", "-s", "data.train_limit=256", "-s",
                                 "data.test_limit=128", "-q"])
    assert result.exit_code == 0, result.output
    (record,) = RunStore(root=home).list_runs()
    assert record.name == "book-cnn-mnist" and record.status == "completed"
    assert runner.invoke(app, ["summary", "three-conv-cnn"]).exit_code == 0


def test_the_wheel_ships_every_example(tmp_path):
    # Built from a copy: a build writes build/ and an egg-info beside the sources.
    source = tmp_path / "source"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("cnnlab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for example in list_examples():
        assert f"cnnlab/examples/{example.relative}" in names
