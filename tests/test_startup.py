"""The garbage collector paused while a training process starts, and collecting once it trains."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from cnnlab import startup
from cnnlab.checks import validate_experiment
from cnnlab.cli import app
from cnnlab.store import RunStore
from cnnlab.train import train_experiment

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "book-cnn-mnist.toml"
SMALL = {"seed": 3, "data": {"dataset": "mnist-sample", "train_limit": 256, "test_limit": 128},
         "model": {"name": "book_cnn"}, "train": {"epochs": 2, "batch_size": 64}}


@pytest.fixture(autouse=True)
def _collector() -> Iterator[None]:
    """Each test starts with the collector on and nothing frozen (an earlier test's `cnnlab
    train` in this process froze what it had), and leaves it so."""
    gc.unfreeze()
    gc.enable()
    yield
    startup.resume()
    gc.unfreeze()
    gc.enable()


def test_paused_until_resumed_then_frozen_and_collecting() -> None:
    with startup.paused():
        assert not gc.isenabled()
        with startup.paused():  # a nested pause changes nothing, and does not end the outer one
            pass
        assert not gc.isenabled()
        startup.resume()
        assert gc.isenabled() and gc.get_freeze_count() > 0
        gc.disable()  # what the code inside does after the resume is its own business
    assert not gc.isenabled(), "the end of the block resumes nothing twice"


def test_an_error_at_start_turns_the_collector_back_on() -> None:
    with pytest.raises(RuntimeError), startup.paused():
        raise RuntimeError("no data")
    assert gc.isenabled()


def test_a_collector_the_user_turned_off_stays_off() -> None:
    gc.disable()
    with startup.paused():
        startup.resume()
        assert not gc.isenabled()
    assert not gc.isenabled() and gc.get_freeze_count() == 0


def test_training_resumes_the_collector_as_its_first_epoch_starts(tmp_path: Path) -> None:
    seen = []
    with startup.paused(), RunStore(root=tmp_path) as store:
        record = train_experiment(validate_experiment(SMALL), store, console=Console(quiet=True),
                                  progress=False,
                                  on_epoch=lambda epoch, metrics: seen.append(gc.isenabled())).record
        assert record.status == "completed"
        assert seen == [True, True], "the collector runs while the model trains"


def test_cnnlab_train_starts_with_the_collector_paused(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    resumed = []
    real = startup.resume

    def resume() -> None:  # the real resume, noting whether the start had the collector off
        resumed.append(gc.isenabled())
        real()

    monkeypatch.setattr(startup, "resume", resume)
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["train", str(EXAMPLE), "-q", "-s", "data.dataset='mnist-sample'",
                                      "-s", "data.train_limit=256", "-s", "data.test_limit=128",
                                      "-s", "train.epochs=1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert resumed[0] is False, "paused from the command's start until the engine resumed it"
    assert gc.isenabled()
