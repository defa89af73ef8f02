"""The Python API: the same validation, store, config hash and numbers as the CLI; Run and Study objects
with DataFrames, figures and escaped HTML; unknown runs, bad input and Ctrl-C handled as in the CLI."""

from __future__ import annotations

import html
import inspect
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import cnnlab
from cnnlab.cli import app
from cnnlab.errors import ConfigError, StoreError, UnknownRunError
from cnnlab.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "examples" / "book-cnn-mnist.toml"
# The same tiny run twice: as -s overrides for the CLI, as dicts for the API.
SMALL_SETS = ["data.dataset='mnist-sample'", "data.train_limit=256", "data.test_limit=128", "data.val=0.1",
              "train.epochs=2", "train.optimizer='adam'", "train.lr=0.002"]
SMALL_DATA = {"dataset": "mnist-sample", "train_limit": 256, "test_limit": 128, "val": 0.1}
SMALL_TRAIN = {"epochs": 2, "optimizer": "adam", "lr": 0.002}


def cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def same_message(cli_output: str, exc: Exception) -> bool:
    """The exception says what the CLI printed: one `error:` line per line (Rich may wrap them)."""
    lines = str(exc).splitlines()
    printed = " ".join(cli_output.replace("error: ", "", len(lines)).split())
    return cli_output.count("error: ") == len(lines) and printed == " ".join(" ".join(lines).split())


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> cnnlab.Run:
    """One small run trained through the API, shared by the tests that only read it."""
    store = tmp_path_factory.mktemp("store") / "runs.sqlite"
    return cnnlab.train(BOOK, data=SMALL_DATA, train=SMALL_TRAIN, name="<b>tiny</b>", store=f"sqlite:///{store}")


def test_import_is_fast_and_lists_the_api():
    code = "import cnnlab, sys; print('torch' in sys.modules, 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    assert {"train", "sweep", "report", "load_run", "runs", "resume", "Run", "Study"} <= set(cnnlab.__all__)
    for name in cnnlab.__all__:
        assert getattr(cnnlab, name) is not None


def test_stage_packages_stay_packages_and_are_callable():
    import cnnlab.report.render
    import cnnlab.sweep.optuna_study
    import cnnlab.train.run

    for package in (cnnlab.train, cnnlab.sweep, cnnlab.report):
        assert callable(package)
    assert list(inspect.signature(cnnlab.train).parameters)[:2] == ["experiment", "settings"]
    assert "grid" in inspect.signature(cnnlab.sweep).parameters
    assert cnnlab.train.run.train_experiment is cnnlab.train.train_experiment
    assert cnnlab.sweep.optuna_study.queue_sweep is cnnlab.sweep.queue_sweep


def test_train_matches_the_cli_run_for_run(home):
    result = cli("train", str(BOOK), *[arg for s in SMALL_SETS for arg in ("-s", s)], "--quiet")
    assert result.exit_code == 0, result.output
    run = cnnlab.train(BOOK, data=SMALL_DATA, train=SMALL_TRAIN)
    store = RunStore(root=home)
    (cli_record,) = [r for r in store.list_runs() if r.id != run.id]
    api_record = store.get_run(run.id)
    assert api_record.config == cli_record.config
    assert api_record.config_hash == cli_record.config_hash
    columns = ["train_loss", "train_acc", "val_loss", "val_acc"]
    assert (run.history[columns].to_numpy().tolist()
            == [[row[c] for c in columns] for row in store.epochs(cli_record.id)])
    assert run.status == "completed" and len(run.history) == 2


@pytest.mark.parametrize(
    ("override", "dicts"),
    [
        ("train.optimizer=adamm", {"train": {"optimizer": "adamm"}}),
        ("train.lr=0", {"train": {"lr": 0}}),
        ("train.colour=1", {"train": {"colour": 1}}),
        ("data.dataset=imagenet", {"data": {"dataset": "imagenet"}}),
    ],
)
def test_bad_value_raises_the_cli_message_and_stores_nothing(home, override, dicts):
    result = cli("train", str(BOOK), "-s", override)
    assert result.exit_code == 2
    with pytest.raises(ConfigError) as caught:
        cnnlab.train(BOOK, **dicts)
    assert same_message(result.output, caught.value), (result.output, str(caught.value))
    assert RunStore(root=home).list_runs() == []


def test_experiment_of_the_wrong_type_is_refused(home):
    with pytest.raises(ConfigError, match="experiment: 'int' must be an experiment file path or a dict"):
        cnnlab.train(3)


def test_unknown_run_is_a_key_error_naming_it_and_how_to_list_runs(home):
    with pytest.raises(KeyError) as caught:
        cnnlab.load_run("r-nope")
    assert isinstance(caught.value, UnknownRunError) and isinstance(caught.value, StoreError)
    assert str(caught.value) == "no run matches 'r-nope'; `cnnlab runs` lists them (cnnlab.runs() in Python)"


def test_run_summary_history_and_figures(trained):
    assert trained.status == "completed"
    history = trained.history
    assert list(history.index) == [1, 2]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "seconds"} <= set(history.columns)
    html = trained._repr_html_()
    assert "&lt;b&gt;tiny&lt;/b&gt;" in html and "<b>tiny</b>" not in html
    assert "completed" in html and str(trained.folder) in html and trained.config_hash in html
    from matplotlib.figure import Figure

    assert isinstance(trained.plot(), Figure)
    assert cnnlab.load_run(trained.id, store=trained.store).config_hash == trained.record.config_hash


def test_inspect_writes_the_cli_figures_and_shows_them_inline(trained):
    figures = trained.inspect(index=7)
    kinds = {written.kind for written in figures.files}
    assert {"inspect-filters", "inspect-feature-maps", "inspect-attribution"} <= kinds
    assert any("pooling skipped" in written.title for written in figures.files)
    assert all(path.is_file() for path in figures.paths)
    html = figures._repr_html_()
    assert html.count("<img src=\"data:image/png;base64,") == len(figures.files)
    assert figures.label is not None and "test image 7" in html


def test_predict_arrays_and_files(trained, tmp_path):
    import torch

    assert isinstance(trained.model, torch.nn.Module)
    digits = np.zeros((3, 28, 28), dtype=np.uint8)
    digits[:, 6:22, 12:16] = 255  # a vertical bar: a "1"
    probabilities = trained.predict(digits)
    assert probabilities.shape == (3, 10) and list(probabilities.columns) == trained.classes
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(trained.predict(digits.astype(np.float32) / 255).to_numpy(), probabilities.to_numpy(),
                       atol=1e-6)
    assert np.allclose(trained.predict(digits[0]).to_numpy(), probabilities.to_numpy()[:1], atol=1e-6)
    path = tmp_path / "bar.png"
    Image.fromarray(255 - digits[0]).save(path)
    from_file = trained.predict([path])
    assert list(from_file.index) == [str(path)] and list(from_file.columns) == [*trained.classes, "error"]
    assert np.isclose(from_file[trained.classes].to_numpy().sum(), 1.0, atol=1e-5)
    assert from_file.loc[str(path), "error"] == ""


def test_predict_refuses_what_does_not_fit(trained, tmp_path):
    with pytest.raises(ConfigError, match=r"images: 'array of shape \(2, 1, 32, 32\)' does not fit"):
        trained.predict(np.zeros((2, 1, 32, 32), dtype=np.uint8))


def test_predict_gives_a_row_per_file_with_its_error_as_the_cli_does(trained, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not an image")
    good = tmp_path / "bar.png"
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[6:22, 12:16] = 255
    Image.fromarray(255 - digit).save(good)
    missing, broken = tmp_path / "missing.png", tmp_path / "broken.png"
    frame = trained.predict([missing, good, broken])
    assert list(frame.index) == [str(missing), str(good), str(broken)]
    assert "missing.png" in frame.loc[str(missing), "error"] and frame.loc[str(broken), "error"]
    assert frame.loc[str(missing), trained.classes].isna().all()
    assert frame.loc[str(good), "error"] == ""
    assert np.isclose(frame.loc[str(good), trained.classes].sum(), 1.0, atol=1e-5)


def test_html_tables_escape_every_text():
    from cnnlab.api.display import fields_html, table_html

    table = table_html(["<th>"], [["<script>alert(1)</script>"]], caption="a & b", bold_row=0)
    assert "<script>" not in table and "&lt;script&gt;" in table and "a &amp; b" in table
    assert "&lt;th&gt;" in table and 'style="font-weight:bold"' in table
    assert "&lt;img&gt;" in fields_html("<img>", [("k", "<img>")])


def test_runs_is_a_dataframe_of_the_store(trained):
    frame = cnnlab.runs(store=trained.store)
    assert list(frame.index) == [trained.id]
    assert frame.loc[trained.id, "status"] == "completed" and frame.loc[trained.id, "epochs_done"] == 2


def _interrupt_after_first_epoch(store: RunStore) -> threading.Thread:
    """Send this process SIGINT (what Jupyter's interrupt button does) once a run has stored an epoch."""

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            runs = store.list_runs()
            if runs and store.epochs(runs[0].id):
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_interrupt_marks_the_run_interrupted_and_resume_finishes_it(home):
    watcher = _interrupt_after_first_epoch(RunStore(root=home))
    # An experiment given as a dict, with nested and dotted overrides on top.
    raw = {"data": SMALL_DATA, "model": {"name": "book_cnn"}, "train": {**SMALL_TRAIN, "epochs": 3}}
    with pytest.raises(KeyboardInterrupt, match=r"continue it with cnnlab.resume\('r"):
        cnnlab.train(raw, {"train.lr": 0.001, "seed": 5}, train={"epochs": 4}, progress=False)
    watcher.join()
    (record,) = RunStore(root=home).list_runs()
    assert record.status == "interrupted" and 1 <= record.epochs_done < 4
    assert record.config["train"]["lr"] == 0.001 and record.config["seed"] == 5
    assert record.config["data"]["train_limit"] == 256 and record.planned_epochs == 4
    run = cnnlab.resume(record.id)
    assert run.status == "completed" and list(run.history.index) == [1, 2, 3, 4]


SWEEP = """
name = "api-vs-cli"
seeds = [0]
[base]
data = {{ dataset = "mnist-sample", train_limit = 128, test_limit = 64, val = 0.1 }}
model = {{ name = "book_cnn" }}
train = {{ epochs = 1, optimizer = "adam", lr = 0.002 }}
[grid]
"train.lr" = [0.002, 0.004]
{extra}
"""


def test_sweep_shares_the_cli_study_and_reports(home, tmp_path):
    path = tmp_path / "api-vs-cli.toml"
    path.write_text(SWEEP.format(extra=""))
    result = cli("sweep", str(path), "--workers", "1", "--quiet")
    assert result.exit_code == 0, result.output
    cli_runs = {r.id for r in RunStore(root=home).list_runs()}
    study = cnnlab.sweep(path, workers=1, progress=False)  # nothing left to train: the same two runs
    assert set(study.results["run"]) == cli_runs and len(RunStore(root=home).list_runs()) == 2
    results = study.results
    assert list(results["state"]) == ["done", "done"] and sorted(results["train.lr"]) == [0.002, 0.004]
    assert results["final_val_acc"].between(0, 1).all()
    ranking = study.ranking
    assert sorted(ranking["configuration"]) == ["lr=0.002", "lr=0.004"] and list(ranking.index) == [1, 2]
    assert study.conclusions and all(isinstance(s, str) for s in study.conclusions)
    assert "2 of 2 runs done" in study._repr_html_()
    files = study.report(tmp_path / "report")
    assert files.html.is_file() and "api-vs-cli" in files.html.read_text()
    shown = files._repr_html_()  # a notebook shows a link to the report and its conclusions
    assert f'href="{files.html.absolute().as_uri()}"' in shown
    assert all(html.escape(sentence) in shown for sentence in study.conclusions)
    assert str(files.html) in repr(files) and study.conclusions[0] in repr(files)
    same = cnnlab.report("api-vs-cli", output=tmp_path / "again")
    assert same.markdown.read_text().count("|") == files.markdown.read_text().count("|")
    assert [run.id for run in study.runs()] == list(results["run"])


def test_sweep_settings_make_a_smaller_study_and_bad_ones_give_the_cli_message(home, tmp_path):
    path = tmp_path / "api-vs-cli.toml"
    path.write_text(SWEEP.format(extra="colour = 1"))
    result = cli("sweep", str(path), "--workers", "1", "--quiet")
    assert result.exit_code == 2
    with pytest.raises(ConfigError) as caught:
        cnnlab.sweep(path, progress=False)
    assert same_message(result.output, caught.value), (result.output, str(caught.value))
    assert RunStore(root=home).list_runs() == []
    path.write_text(SWEEP.format(extra=""))
    study = cnnlab.sweep(path, {"train": {"epochs": 1}}, grid={"train.lr": [0.003]}, name="smaller",
                         workers=1, progress=False)
    assert study.name == "smaller" and study.results["state"].tolist() == ["done"]
    (run,) = study.runs()
    assert run.config["train"]["lr"] == 0.003 and run.record.sweep == "smaller"
