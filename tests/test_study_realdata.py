"""Seed 000's study (loss × optimizer, optimizer and lr moved together by [zip]) on real MNIST digits
(`mnist-sample`, 1,024 training images, 3 epochs, 2 seeds) through `cnnlab sweep` and `cnnlab report`:
the conclusions name the loss × optimizer interaction and never call the MSE+SGD collapse noise."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from cnnlab.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SWEEP = """
name = "loss-x-optimizer-small"
base = "{base}"
seeds = [0, 1]

[set]
"data.dataset" = "mnist-sample"
"data.train_limit" = 1024
"model.filters" = [8, 16, 16]
"train.epochs" = 3
"train.batch_size" = 16
"train.momentum" = 0.9
"train.eval_test" = false

[grid]
"train.loss" = ["mse", "cross_entropy"]

[zip]
"train.optimizer" = ["adam", "sgd"]
"train.lr" = [0.001, 0.01]
"""


def test_seed_000_study_concludes_the_interaction_from_real_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))
    sweep_file = tmp_path / "lxo.toml"
    sweep_file.write_text(SWEEP.format(base=EXAMPLES / "three-conv-cnn.toml"))
    runner = CliRunner()
    swept = runner.invoke(app, ["sweep", str(sweep_file), "-q", "--workers", "2", "--threads", "1"])
    assert swept.exit_code == 0, swept.output
    written = runner.invoke(app, ["report", "loss-x-optimizer-small", "-o", str(tmp_path / "out")])
    assert written.exit_code == 0, written.output
    markdown = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    conclusions = markdown.split("## Conclusions")[1].split("## What was run")[0]
    assert "optimizer+lr, moved together" in conclusions
    assert re.search(r"loss × optimizer\+lr interact \(F\(1, 4\) = [\d.]+, p [<=] 0\.0\d", conclusions)
    assert "loss makes a difference only with optimizer+lr=sgd+0.01: cross\\_entropy " in conclusions
    plain = conclusions.replace("\\", "")
    collapse = re.escape("loss=mse, optimizer+lr=sgd+0.01")
    assert re.search(r"At chance \(.*" + collapse + r" \(", plain) or re.search(  # the collapse is not noise
        collapse + r" [\d.]+%, difference −[\d.]+ points \(95% CI [^)]*\): lower", plain
    )
    assert "| loss | optimizer+lr | runs |" in markdown  # keys moved together share a column
    assert "within the noise" not in conclusions
    assert "&gt;" not in markdown and "&lt;" not in markdown
    assert (tmp_path / "out" / "fig-interaction.png").is_file()
    assert "step too small" in markdown.split("## Diagnoses")[1]  # MSE+SGD: not "more capacity"


def test_diagnose_points_the_right_way_on_real_runs(tmp_path, monkeypatch):
    """As a new user would: tiny real runs on mnist-sample, then `cnnlab diagnose` on them."""
    from cnnlab.checks import load_experiment
    from cnnlab.store import RunStore
    from cnnlab.train import train_experiment

    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))
    common = [
        "data.dataset='mnist-sample'",
        "data.train_limit=512",
        "model.filters=[8, 16, 16]",
        "train.epochs=2",
        "train.batch_size=32",
        "train.eval_test=false",
    ]
    cases = {
        "adam-lr-1": ["train.optimizer='adam'", "train.lr=1.0"],
        "mse-sgd": ["train.loss='mse'", "train.optimizer='sgd'", "train.lr=0.01"],
    }
    with RunStore(root=tmp_path / "home") as store:
        for name, overrides in cases.items():
            exp = load_experiment(
                EXAMPLES / "three-conv-cnn.toml", overrides=[*common, *overrides, f"name='{name}'"]
            )
            train_experiment(exp, store, progress=False)
    result = CliRunner().invoke(app, ["diagnose", "adam-lr-1", "mse-sgd"])
    assert result.exit_code == 0, result.output
    adam, mse = result.output.split(" (mse-sgd): ")  # one diagnosis per run, in the order asked
    assert "step too large: the epoch-1 training loss" in adam
    assert "try: lower the learning rate, e.g. 10× to train.lr=0.1" in adam and "raise" not in adam
    assert "step too small: the training loss moved only from" in mse
    assert "capacity" not in mse and "raise the learning rate, e.g. 10× to train.lr=0.1" in mse
