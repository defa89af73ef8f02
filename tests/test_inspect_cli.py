"""`cnnlab inspect / samples / confusion / predict` on runs stored from synthetic data: each
command writes its figures and registers them; unreadable files fail alone."""

from __future__ import annotations

import io
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from cnnlab.checks import validate_experiment
from cnnlab.cli import app
from cnnlab.inspect import report_figures
from cnnlab.store import RunStore
from cnnlab.train import train_experiment

runner = CliRunner()
CLASSES = ["top-left", "top-right", "bottom-left", "bottom-right"]
LAYERS = [
    {"type": "conv", "filters": 8, "kernel": 3, "padding": "same"},
    {"type": "batchnorm"},
    {"type": "relu"},
    {"type": "maxpool", "kernel": 2},
    {"type": "conv", "filters": 12, "kernel": 3},
    {"type": "relu"},
    {"type": "global_avg_pool"},
    {"type": "flatten"},
    {"type": "linear", "units": 4},
]


def squares(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 N×28×28 images whose class is the quadrant with a bright square."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    images = rng.integers(0, 60, (n, 28, 28))
    for i, label in enumerate(labels):
        top, left = 3 + 13 * (label // 2), 3 + 13 * (label % 2)
        images[i, top:top + 9, left:left + 9] += 180
    return images.astype(np.uint8), labels


def train(store: RunStore, model: dict, data: dict, name: str) -> str:
    exp = validate_experiment({"name": name, "data": data, "model": model,
                               "train": {"optimizer": "adam", "lr": 0.01, "epochs": 2,
                                         "batch_size": 32}})
    outcome = train_experiment(exp, store, console=Console(file=io.StringIO()), progress=False)
    return outcome.record.id


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> tuple[Path, str, Path]:
    """(store root, run id, npz path) of a layer-list CNN trained on the squares; a tenth of the
    test labels are wrong on purpose, so there are mistakes to show."""
    folder = tmp_path_factory.mktemp("inspect-cli")
    x, y = squares(320, seed=0)
    x_test, y_test = squares(60, seed=1)
    y_test[:6] = (y_test[:6] + 1) % 4
    npz = folder / "squares.npz"
    np.savez(npz, x=x, y=y, x_test=x_test, y_test=y_test, classes=np.array(CLASSES))
    store = RunStore(root=folder / "home")
    run_id = train(store, {"name": "layers", "layers": LAYERS},
                   {"dataset": "npz", "path": str(npz), "val": 0}, "squares")
    return folder / "home", run_id, npz


@pytest.fixture
def home(stored, monkeypatch) -> RunStore:
    monkeypatch.setenv("CNNLAB_HOME", str(stored[0]))
    return RunStore(root=stored[0])


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def pngs(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.suffix == ".png"}


def test_inspect_writes_every_figure_and_registers_them(home, stored, tmp_path):
    run_id = stored[1]
    result = invoke("inspect", run_id, "--index", 3, "-o", tmp_path)
    assert result.exit_code == 0, result.output
    assert "test image 3 (true " in result.output
    written = pngs(tmp_path)
    assert {"filters-01-conv1.png", "filters-02-conv2.png", "maps-01-conv1.png",
            "maps-04-pool1.png", "maps-nopool-04-conv2.png", "attribution.png"} <= written
    unpooled = [name.removeprefix("maps-nopool-") for name in written if "nopool" in name]
    assert len(unpooled) == 5 and not any("pool" in name for name in unpooled)
    registered = {Path(a["path"]).name: a["kind"] for a in home.artifacts(run_id)}
    assert registered["attribution.png"] == "inspect-attribution"
    assert written <= set(registered)

    bad = invoke("inspect", run_id, "--layer", "relu1")
    assert bad.exit_code == 2 and "layer: 'relu1' is not one of conv1, conv2" in bad.output


def test_samples_grid_and_most_confident_mistakes(home, stored, tmp_path):
    run_id = stored[1]
    result = invoke("samples", run_id, "--grid", "2x3")
    assert result.exit_code == 0, result.output
    assert "6 images of 60 test images" in result.output
    assert (home.run_dir(run_id) / "inspect" / "samples.png").is_file()  # default: the run's folder

    mistakes = invoke("samples", run_id, "--grid", "10x10", "--errors", "-o", tmp_path)
    assert mistakes.exit_code == 0, mistakes.output
    shown, wrong = re.search(r"the (\d+) most confident of (\d+) mistakes on 60 test images",
                             mistakes.output).groups()
    assert shown == wrong and 6 <= int(wrong) <= 60 and pngs(tmp_path) == {"mistakes.png"}
    few = invoke("samples", run_id, "--grid", "1x2", "--errors", "-o", tmp_path / "few.png")
    # The grid is not the count of mistakes.
    assert f"the 2 most confident of {wrong} mistakes on 60 test images" in few.output
    assert (tmp_path / "few.png").is_file()  # -o names the figure's file when it ends in .png

    bad = invoke("samples", run_id, "--grid", "ten")
    assert bad.exit_code == 2 and "grid: 'ten' must be ROWSxCOLS" in bad.output


def test_samples_refuses_an_image_file_of_another_kind_instead_of_making_a_folder(home, stored, tmp_path):
    for args, allowed in ([stored[1]], ".png, .svg, .pdf"), (["--dataset", "mnist-sample"], ".png"):
        for name in ("out.jpg", "out.JPEG", *(["out.svg"] if allowed == ".png" else [])):
            result = invoke("samples", *args, "-o", tmp_path / name)
            assert result.exit_code == 2, result.output
            said = " ".join(result.output.split())
            assert f"is a {Path(name).suffix.lower()} file" in said
            assert f"figures are written as {allowed}" in said
    assert list(tmp_path.iterdir()) == []


def test_confusion_prints_per_class_scores_and_saves_the_figure(home, stored, tmp_path):
    result = invoke("confusion", stored[1], "-o", tmp_path)
    assert result.exit_code == 0, result.output
    for text in ("precision", "recall", "support", *CLASSES, "accuracy"):
        assert text in result.output
    assert pngs(tmp_path) == {"confusion.png"}


def test_predict_reports_a_corrupt_file_and_still_predicts_the_others(home, stored, tmp_path):
    x, _ = squares(2, seed=9)
    for i in range(2):
        Image.fromarray(x[i]).save(tmp_path / f"good{i}.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    args = [tmp_path / "good0.png", tmp_path / "corrupt.png", tmp_path / "good1.png"]
    result = invoke("predict", stored[1], *args, "--top", 2, "--show", tmp_path / "seen")
    assert result.exit_code == 1, result.output
    assert f"error: {tmp_path / 'corrupt.png'}: cannot read it as an image" in result.output
    lines = [line for line in result.output.splitlines() if line.startswith(str(tmp_path / "good"))]
    assert len(lines) == 2 and all(line.count("%") == 2 for line in lines)
    assert pngs(tmp_path / "seen") == {"good0.input.png", "good1.input.png"}
    assert Image.open(tmp_path / "seen" / "good0.input.png").size == (224, 224)

    fine = invoke("predict", stored[1], tmp_path / "good0.png", "-k", 1)
    assert fine.exit_code == 0 and fine.output.count("%") == 1


def test_report_figures_for_the_best_run(home, stored, tmp_path):
    before = len(home.artifacts(stored[1]))
    figures = report_figures(home, stored[1], tmp_path, register=False)
    titles = [title for title, _ in figures]
    assert titles[:2] == ["filters of conv1", "filters of conv2"]
    assert "conv2 · 12×12×12" in titles and "confusion matrix" in titles
    assert all(path.is_file() and path.parent == tmp_path for _, path in figures)
    assert len(home.artifacts(stored[1])) == before


def test_a_users_own_model_class_in_a_stored_run(home, stored, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mynets.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn
        import torch.nn.functional as F

        class Net(nn.Module):
            def __init__(self, in_channels=1, num_classes=10):
                super().__init__()
                self.c1 = nn.Conv2d(in_channels, 6, 5)
                self.c2 = nn.Conv2d(6, 8, 3)
                self.out = nn.Linear(8, num_classes)

            def forward(self, x):
                x = F.max_pool2d(F.relu(self.c1(x)), 2)
                x = F.relu(self.c2(x))
                return self.out(x.mean(dim=(2, 3)))
    """))
    train(home, {"name": "mynets:Net"},
          {"dataset": "npz", "path": str(stored[2]), "val": 0}, "own-model")
    x, _ = squares(1, seed=5)
    Image.fromarray(x[0]).resize((90, 90)).save(tmp_path / "mine.png")
    result = invoke("inspect", "own-model", "--image", tmp_path / "mine.png", "-o", tmp_path / "out",
                    "--trust-code", "mynets")
    assert result.exit_code == 0, result.output
    assert result.stderr == "--trust-code: a stored run may import module mynets in this command\n"
    assert result.stdout.startswith("mine.png: ")
    # Pooling is functional here, so there is no view without it; the input is saved as seen.
    assert pngs(tmp_path / "out") == {"input.png", "filters-01-c1.png", "filters-02-c2.png",
                                      "maps-01-c1.png", "maps-02-c2.png", "attribution.png"}
    assert Image.open(tmp_path / "out" / "input.png").size == (224, 224)
