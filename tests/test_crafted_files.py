"""Files an adversary or an accident hands to cnnlab: a checkpoint whose own config names a module
to import, damaged and unsafe checkpoints, non-finite weights, a huge image. Models come from the
run's stored config; nothing in a checkpoint decides what is imported."""

from __future__ import annotations

import io
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from cnnlab.checks import validate_experiment
from cnnlab.cli import app
from cnnlab.errors import CheckpointError, DataError
from cnnlab.inspect import read_image
from cnnlab.inspect.photo import MAX_PIXELS, WORK_SIDE
from cnnlab.store import RunStore
from cnnlab.store.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.train import resume_run, train_experiment

runner = CliRunner()
LAYERS = [{"type": "conv", "filters": 4, "kernel": 3}, {"type": "relu"}, {"type": "global_avg_pool"},
          {"type": "flatten"}, {"type": "linear", "units": 3}]
EVIL_MODULE = """
from pathlib import Path
Path({marker!r}).write_text("imported")
import torch
class Net(torch.nn.Module):
    def __init__(self, in_channels=1, num_classes=3, **kw):
        super().__init__()
        self.fc = torch.nn.Linear(1, num_classes)
    def forward(self, x):
        return self.fc(x.mean(dim=(1, 2, 3))[:, None])
"""


def _npz(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    path = folder / "tiny.npz"
    np.savez(path, x=rng.integers(0, 255, (48, 12, 12), dtype=np.uint8), y=rng.integers(0, 3, 48),
             x_test=rng.integers(0, 255, (12, 12, 12), dtype=np.uint8), y_test=rng.integers(0, 3, 12))
    return path


def _train(store: RunStore, model: dict, npz: Path, name: str) -> str:
    exp = validate_experiment({"name": name, "data": {"dataset": "npz", "path": str(npz), "val": 0},
                               "model": model, "train": {"epochs": 1, "batch_size": 16}})
    return train_experiment(exp, store, console=Console(file=io.StringIO()), progress=False).record.id


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, str, Path]:
    """(store root, run id, npz) of a one-epoch layer-list run on 12×12 noise."""
    folder = tmp_path_factory.mktemp("crafted")
    npz = _npz(folder)
    return folder / "home", _train(RunStore(root=folder / "home"), {"name": "layers", "layers": LAYERS},
                                   npz, "tiny"), npz


@pytest.fixture
def home(trained, tmp_path, monkeypatch) -> tuple[RunStore, str, Path]:
    """A fresh copy of the trained store (tests tamper with its files), cwd a fresh folder."""
    root = tmp_path / "home"
    shutil.copytree(trained[0], root)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("CNNLAB_HOME", str(root))
    return RunStore(root=root), trained[1], trained[2]


def _png(path: Path, size: tuple[int, int] = (12, 12)) -> Path:
    Image.new("L", size, 200).save(path)
    return path


def _tamper(store: RunStore, run_id: str, change) -> Path:
    path = store.checkpoint_path(run_id)
    state = load_checkpoint(path)
    state.pop("format")
    change(state)
    save_checkpoint(path, state)
    return path


def invoke(*args: object):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    result.said = " ".join(result.output.split())  # the message, unwrapped
    return result


@pytest.mark.parametrize("module_name", ["evilmod:Net", "this:Zen"])
def test_checkpoint_config_naming_a_module_is_refused_and_never_imported(home, module_name, capfd):
    store, run_id, _ = home
    marker = Path.cwd() / "imported.txt"
    (Path.cwd() / "evilmod.py").write_text(EVIL_MODULE.format(marker=str(marker)))

    def name_module(state):
        state["config"]["model"] = {"name": module_name}

    _tamper(store, run_id, name_module)
    image = _png(Path.cwd() / "digit.png")
    for args in (("predict", run_id, image), ("inspect", run_id, "--image", image)):
        result = invoke(*args)
        assert result.exit_code == 2, result.said
        assert "its config is not run" in result.said
        assert f"model.name = {module_name!r}" in result.said
    report = invoke("report", run_id, "-o", Path.cwd() / "report")
    assert report.exit_code == 0, report.output
    assert "its config is not run" in (Path.cwd() / "report" / "report.md").read_text()
    assert not marker.exists()
    assert "Beautiful is better than ugly" not in capfd.readouterr().out
    with pytest.raises(CheckpointError, match="its config is not run"):
        resume_run(run_id, store, epochs=2, console=Console(file=io.StringIO()), progress=False)
    assert not marker.exists()


def test_checkpoint_of_another_config_is_refused(home):
    store, run_id, _ = home

    def other_lr(state):
        state["config"]["train"]["lr"] = 0.5

    _tamper(store, run_id, other_lr)
    result = invoke("predict", run_id, _png(Path.cwd() / "x.png"))
    assert result.exit_code == 2
    assert "train.lr = 0.5 (stored: 0.01)" in result.said


def test_users_own_module_named_in_their_experiment_file_is_imported(home):
    store, _, npz = home
    marker = Path.cwd() / "imported.txt"
    (Path.cwd() / "mynet.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    run_id = _train(store, {"name": "mynet:Net"}, npz, "mine")
    assert marker.exists()
    # Stored, the run is data: its module is imported again only when named for the command.
    refused = invoke("predict", run_id, _png(Path.cwd() / "x.png"))
    assert refused.exit_code == 2
    assert f"run {run_id}: model.name = 'mynet:Net' would import module mynet" in refused.said
    result = invoke("predict", run_id, Path.cwd() / "x.png", "--trust-code", "mynet")
    assert result.exit_code == 0, result.output
    assert "x.png" in result.said


def test_random_bytes_are_damaged_not_unsafe(home):
    store, run_id, _ = home
    store.checkpoint_path(run_id).write_bytes(os.urandom(4096))
    result = invoke("predict", run_id, _png(Path.cwd() / "x.png"))
    assert result.exit_code == 2
    assert "corrupt or truncated" in result.said
    assert "could run code" not in result.said
    assert "weights_only" not in result.said
    store.checkpoint_path(run_id).write_text("hello, this is not a checkpoint\n" * 10)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(store.checkpoint_path(run_id))


class _Exploit:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_unsafe_checkpoint_names_the_global_and_never_suggests_weights_only_false(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": 1, "payload": _Exploit(str(marker))}, path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert "could run code" in str(caught.value) and "open" in str(caught.value)
    assert "weights_only" not in str(caught.value)
    with open(path, "wb") as f:
        pickle.dump({"format": 1, "payload": _Exploit(str(marker))}, f, protocol=2)
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(path)
    assert not marker.exists()


def test_nan_weights_are_refused(home):
    store, run_id, _ = home

    def poison(state):
        next(iter(state["model"].values()))[0] = float("nan")

    _tamper(store, run_id, poison)
    result = invoke("predict", run_id, _png(Path.cwd() / "x.png"))
    assert result.exit_code == 2
    assert "hold NaN or infinite values" in result.said


def test_huge_image_is_refused_before_decoding(tmp_path):
    side = int(MAX_PIXELS**0.5) + 100
    path = tmp_path / "huge.png"
    Image.new("1", (side, side), 1).save(path)  # 1 bit per pixel: a small file
    with pytest.raises(DataError, match=f"{side}×{side} is .* megapixels; cnnlab reads images of at most"):
        read_image(path)


def test_large_image_is_reduced_while_read(tmp_path):
    path = tmp_path / "large.jpg"
    Image.new("RGB", (6000, 4000), (250, 250, 250)).save(path)
    image = read_image(path)
    assert max(image.size) <= WORK_SIDE
    assert image.size[0] / image.size[1] == pytest.approx(1.5, rel=0.01)


def test_runs_name_without_match_says_no_run_matches(home):
    result = invoke("runs", "--name", "zzz")
    assert result.exit_code == 0
    assert "no run matches --name 'zzz'" in result.said
    assert "no runs stored yet" not in result.said
