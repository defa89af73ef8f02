"""`cnnlab datasets NAME` and `samples --dataset` give the true split sizes and images per class."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from cnnlab.checks import load_experiment
from cnnlab.cli import app
from cnnlab.config import DataConfig
from cnnlab.data.overview import dataset_overview

from realdata import SHARED, needs_shared

runner = CliRunner()


def idx_labels(path: Path) -> np.ndarray:
    """Labels straight from an IDX label file (8 header bytes, then one byte per label)."""
    with gzip.open(path) as handle:
        return np.frombuffer(handle.read()[8:], dtype=np.uint8)


@needs_shared
def test_mnist_counts_are_the_files_counts(tmp_path: Path) -> None:
    overview = dataset_overview(DataConfig(dataset="mnist", root=str(SHARED), val=0.0))
    raw = SHARED / "MNIST" / "raw"
    train = idx_labels(raw / "train-labels-idx1-ubyte.gz")
    test = idx_labels(raw / "t10k-labels-idx1-ubyte.gz")
    assert [(s.name, s.size) for s in overview.splits] == [("train", 60_000), ("test", 10_000)]
    assert overview.splits[0].per_class == np.bincount(train, minlength=10).tolist()
    assert overview.splits[1].per_class == np.bincount(test, minlength=10).tolist()
    assert overview.shape == (1, 28, 28)
    assert abs(overview.splits[0].mean[0] - 0.1307) < 1e-4 and abs(overview.splits[0].std[0] - 0.3081) < 1e-4
    assert overview.locations == [str(raw.resolve())]

    chart = tmp_path / "classes.png"
    result = runner.invoke(app, ["datasets", "mnist", "--data-dir", str(SHARED), "-o", str(chart)])
    assert result.exit_code == 0, result.output
    assert "60,000" in result.output and "10,000" in result.output
    assert f"{np.bincount(train)[1]:,}" in result.output  # 6,742 ones
    assert chart.read_bytes().startswith(b"\x89PNG")



def test_mnist_sample_counts_and_samples_say_the_split_sizes(tmp_path: Path) -> None:
    overview = dataset_overview(DataConfig(dataset="mnist-sample", val=0.0))
    assert [(s.name, s.size) for s in overview.splits] == [("train", 4_000), ("test", 1_000)]
    assert overview.splits[0].per_class == [400] * 10 and overview.splits[1].per_class == [100] * 10

    result = runner.invoke(app, ["samples", "--dataset", "mnist-sample", "--grid", "5x5", "-o",
                                 str(tmp_path / "grid.png")])
    assert result.exit_code == 0, result.output
    assert "25 images of" in result.output and "4,000 train / 1,000 test" in result.output

    nothing = runner.invoke(app, ["samples"])
    assert nothing.exit_code == 2 and "None" not in nothing.output and "--dataset" in nothing.output


def test_an_experiments_mixture_is_counted_per_domain(tmp_path: Path) -> None:
    experiment = tmp_path / "mix.toml"
    experiment.write_text('seed = 3\n[data]\ntrain = ["mnist-sample", { dataset = "mnist-sample", '
                          'alter = "colour" }]\nval = 0.1\ntrain_limit = 1000\n[model]\nname = "book_cnn"\n')
    overview = dataset_overview(load_experiment(experiment).data, 3)
    sizes = {s.name: s.size for s in overview.splits}
    assert sizes == {"train": 1_000, "val": 800, "test": 2_000, "val mnist-sample": 400,
                     "test mnist-sample": 1_000, "val mnist-sample-colour": 400,
                     "test mnist-sample-colour": 1_000}
    assert all(sum(s.per_class) == s.size for s in overview.splits)
    assert overview.shape == (3, 28, 28)
    result = runner.invoke(app, ["datasets", "-e", str(experiment)])
    assert result.exit_code == 0, result.output
    assert "mnist-sample + mnist-sample-colour" in result.output and "1,000" in result.output
    assert runner.invoke(app, ["datasets", "mnist", "-e", str(experiment)]).exit_code == 2
