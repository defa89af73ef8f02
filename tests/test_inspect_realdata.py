"""`cnnlab predict` on digits drawn like photos, with a book CNN trained one epoch on real MNIST."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFont
from rich.console import Console
from typer.testing import CliRunner

from cnnlab.checks import validate_experiment
from cnnlab.cli import app
from cnnlab.store import RunStore
from cnnlab.train import train_experiment

from realdata import SHARED, needs_shared

pytestmark = [needs_shared, pytest.mark.realdata]


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory) -> tuple[Path, str]:
    """(store root, run id) of book_cnn trained one epoch on the 60,000 MNIST digits."""
    root = tmp_path_factory.mktemp("mnist-run") / "home"
    exp = validate_experiment({
        "data": {"dataset": "mnist", "root": str(SHARED), "val": 0},
        "model": {"name": "book_cnn"},
        "train": {"optimizer": "adam", "lr": 0.002, "epochs": 1},
    })
    outcome = train_experiment(exp, RunStore(root=root), console=Console(file=io.StringIO()),
                               progress=False)
    assert outcome.record.final_test_acc > 0.95
    return root, outcome.record.id


def photographed_digit(digit: int, path: Path, *, size: int, at: tuple[int, int], seed: int) -> Path:
    """A dark bold digit on light, unevenly lit, noisy paper: a phone photo of a written digit."""
    font_file = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans", weight="bold"))
    paper = Image.new("L", (320, 240), 255)
    ImageDraw.Draw(paper).text(at, str(digit), fill=35, anchor="mm",
                               font=ImageFont.truetype(font_file, size))
    rng = np.random.default_rng(seed)
    pixels = np.asarray(paper, dtype=np.float64) * np.linspace(0.8, 1.0, 320)[None, :]
    pixels += rng.normal(0, 10, pixels.shape)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert("RGB").save(path)
    return path


def test_predict_photographed_digits_and_a_corrupt_file(mnist_run, tmp_path, monkeypatch):
    root, run_id = mnist_run
    monkeypatch.setenv("CNNLAB_HOME", str(root))
    drawn = {
        0: photographed_digit(0, tmp_path / "zero.png", size=150, at=(160, 120), seed=0),
        3: photographed_digit(3, tmp_path / "three.jpg", size=90, at=(80, 70), seed=1),
        5: photographed_digit(5, tmp_path / "five.png", size=120, at=(230, 150), seed=2),
        7: photographed_digit(7, tmp_path / "seven.png", size=180, at=(170, 130), seed=3),
    }
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + b"\x13" * 64)
    files = [drawn[0], drawn[3], corrupt, drawn[5], drawn[7]]
    result = CliRunner().invoke(app, ["predict", run_id, *map(str, files), "--show", str(tmp_path / "seen")],
                                catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert f"error: {corrupt}: cannot read it as an image" in result.output
    for digit, path in drawn.items():
        (line,) = [line for line in result.output.splitlines() if line.startswith(f"{path}: ")]
        assert line.removeprefix(f"{path}: ").startswith(f"{digit} "), line
    seen = np.asarray(Image.open(tmp_path / "seen" / "three.input.png"))
    assert seen.shape == (224, 224) and seen[0, 0] == 0 and seen.max() > 200  # white on black
