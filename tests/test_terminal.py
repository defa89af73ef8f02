"""What the terminal shows: tables that fit 80 columns, user text never read as markup, and the
commands that manage runs (rm, tag, show's files, compare)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from cnnlab.analyze.compare import compare_runs
from cnnlab.cli import app
from cnnlab.config import TrainConfig
from cnnlab.store import RunStore
from cnnlab.sweep import Location, parse_sweep, run_sweep, sweep_status
from cnnlab.sweep.view import sweep_detail, sweeps_table
from cnnlab.terminal.runs import run_detail
from cnnlab.train.lifecycle import closing_line

runner = CliRunner()
MARKUP_NAMES = ["[/]oops", "[link=https://evil.example]click me[/link]", "[bold red]loud"]


def config(**train: Any) -> dict[str, Any]:
    return {
        "name": None,
        "seed": 0,
        "data": {"dataset": "mnist-sample", "val": 0.1, "root": "/data/here"},
        "model": {"name": "book_cnn", "layers": None},
        "train": {"lr": 0.01, "epochs": 3, "optimizer": "sgd", "loss": "cross_entropy"} | train,
    }


def stored_run(store: RunStore, name: str | None, status: str = "completed", seed: int = 0,
               best: float = 0.9312, **train: Any) -> str:
    cfg = config(**train) | {"seed": seed, "name": name}
    run_id = store.create_run(name=name, config=cfg, config_hash=f"h{seed}", cell_hash="c", seed=seed,
                              host="testhost", versions={"torch": "2.14.1"})
    for epoch in (1, 2, 3):
        store.log_epoch(run_id, epoch, {"train_loss": 1 / epoch, "val_acc": best - 0.01 * (3 - epoch),
                                        "val_loss": 0.5 / epoch, "test_acc": best - 0.02})
    store.update_run(run_id, status=status, epochs_done=3, best_epoch=3, best_val_acc=best,
                     final_val_acc=best, final_test_acc=best - 0.02, duration_s=754.0)
    return run_id


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def cnnlab(home: Path, *args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    """The real command in a fresh process, output piped as in a terminal of ``columns``."""
    env = os.environ | {"CNNLAB_HOME": str(home), "COLUMNS": str(columns)}
    command = [sys.executable, "-c", "from cnnlab.cli import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def test_runs_at_80_columns_keep_numbers_whole_and_one_line_per_run(home: Path) -> None:
    with RunStore(root=home) as store:
        ids = {
            stored_run(store, f"loss-x-optimizer-sample train.loss=cross_entropy train.lr={lr} "
                       f"train.optimizer=adam seed={seed}", seed=seed, best=best, lr=lr): best
            for seed, (lr, best) in enumerate([(0.001, 0.9312), (0.0003, 0.8876), (0.01, 1.0)])
        }
        ids |= {stored_run(store, name, seed=10 + i, best=0.5): 0.5 for i, name in enumerate(MARKUP_NAMES)}
    result = cnnlab(home, "runs")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for run_id, best in ids.items():
        (line,) = [line for line in lines if run_id in line]  # one line per run: nothing wraps
        assert f"{100 * best:.2f}%" in line
        assert f"{100 * (best - 0.02):.2f}%" in line
    assert not re.search(r"\d…|…\d|…%", " ".join(line[60:] for line in lines))  # no cut number
    assert "[/]oops" in result.stdout and "[link=https://ev" in result.stdout
    assert "\x1b]8;" not in result.stdout  # no terminal hyperlink escape

    wide = cnnlab(home, "runs", "--wide", columns=300)
    assert "loss-x-optimizer-sample train.loss=cross_entropy train.lr=0.0003 train.optimizer=adam seed=1" \
        in wide.stdout
    assert MARKUP_NAMES[1] in wide.stdout and "12m 34s" in wide.stdout


def test_markup_names_in_show_and_sweeps(home: Path) -> None:
    with RunStore(root=home) as store:
        run_id = stored_run(store, "[/]oops", status="completed")
        stored_run(store, "[link=https://evil.example]click me[/link]")
    shown = runner.invoke(app, ["show", run_id])
    assert shown.exit_code == 0, shown.output
    assert "[/]oops" in shown.output

    spec = parse_sweep({"name": "[/]swx", "base": config(epochs=1), "seeds": [0],
                        "grid": {"train.lr": [0.01, 0.001]}})
    location = Location(root=str(home))
    run_sweep(spec, location, workers=0, live=False)
    for args in (["sweeps"], ["sweep-status", "[/]swx"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "[/]swx" in result.output


def test_sweep_tables_fit_80_columns_without_breaking_a_setting(home: Path) -> None:
    spec = parse_sweep({"name": "lxo", "base": config(epochs=1), "seeds": [0, 1],
                        "grid": {"train.loss": ["cross_entropy", "mse"],
                                 "train.optimizer": ["adam", "rmsprop"], "train.lr": [0.001, 0.0003]}})
    location = Location(root=str(home))
    run_sweep(spec, location, workers=0, live=False)
    status = sweep_status(location, "lxo")
    console = Console(width=80, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(*sweep_detail(status), sweeps_table([status]))
    shown = console.export_text()
    assert max(len(line.rstrip()) for line in shown.splitlines()) <= 80
    assert "train.loss=cross_entropy" in shown and "train.optimizer=rmsprop" in shown  # whole settings
    assert "pending" in shown and "failed" not in shown and "pruned" not in shown  # empty states left out
    assert "run ids" not in shown


def test_rm_leaves_no_rows_or_files_and_refuses_a_running_run(home: Path) -> None:
    with RunStore(root=home) as store:
        done = stored_run(store, "done")
        store.add_tag(done, "keep")
        (store.run_dir(done) / "checkpoint.pt").write_bytes(b"x")
        store.add_artifact(done, "figure", store.run_dir(done) / "inspect" / "filters.png")
        live = stored_run(store, "live", status="running", seed=1)
        url = store.url

    asked = runner.invoke(app, ["rm", done], input="n\n")
    assert asked.exit_code == 1 and "Delete 1 run" in asked.output
    refused = runner.invoke(app, ["rm", done, live, "--yes"])
    assert refused.exit_code == 2 and f"run {live} is running" in refused.output
    assert (home / "runs" / done).is_dir()  # nothing deleted when one is refused

    removed = runner.invoke(app, ["rm", done, "--yes"])
    assert removed.exit_code == 0, removed.output
    assert not (home / "runs" / done).exists()
    engine = create_engine(url)
    with engine.connect() as conn:
        for table, column in (("runs", "id"), ("epochs", "run_id"), ("artifacts", "run_id"),
                              ("tags", "run_id")):
            query = text(f"SELECT count(*) FROM {table} WHERE {column} = :id")
            assert conn.execute(query, {"id": done}).scalar() == 0, table
        assert conn.execute(text("SELECT count(*) FROM runs")).scalar() == 1  # the running one stays
    engine.dispose()


def test_tag_filters_runs_and_show_lists_tags_and_files(home: Path) -> None:
    with RunStore(root=home) as store:
        first, second = stored_run(store, "first"), stored_run(store, "second", seed=1)
        (store.run_dir(first) / "checkpoint.pt").write_bytes(b"0" * 2048)
        store.add_artifact(first, "confusion", home / "elsewhere" / "confusion.png")
    assert runner.invoke(app, ["tag", first, "baseline", "[b]x"]).exit_code == 0
    assert "already tagged" in runner.invoke(app, ["tag", first, "baseline"]).output
    listed = runner.invoke(app, ["runs", "--tag", "baseline"])
    assert first in listed.output and second not in listed.output
    assert "no run matches --tag 'nothing'" in runner.invoke(app, ["runs", "--tag", "nothing"]).output

    shown = runner.invoke(app, ["show", first]).output
    assert "[b]x baseline" in shown
    assert "checkpoint.pt" in shown and "2.0 kB" in shown
    assert "confusion.png" in shown and "missing" in shown
    assert "untagged baseline" in runner.invoke(app, ["tag", first, "baseline", "--remove"]).output
    untagged = runner.invoke(app, ["runs", "--tag", "baseline"]).output
    assert untagged.startswith("no run matches --tag 'baseline'")


def test_compare_names_exactly_the_settings_that_differ(home: Path, tmp_path: Path) -> None:
    with RunStore(root=home) as store:
        a = stored_run(store, "a", lr=0.01, optimizer="sgd")
        b = stored_run(store, "b", lr=0.001, optimizer="adam", best=0.95)
        c = stored_run(store, "c", seed=3, lr=0.001, optimizer="adam")
        assert compare_runs(store, [a, b]).differing == ["train.lr", "train.optimizer"]
        assert compare_runs(store, [b, c]).differing == ["seed"]
    output = tmp_path / "cmp.png"
    result = runner.invoke(app, ["compare", a, b, "-o", str(output)])
    assert result.exit_code == 0, result.output
    settings = result.output.split("settings that differ")[1].split("final metrics")[0]
    assert re.findall(r"^(\S+=?\S*)\s", settings, re.M)[-2:] == ["train.lr", "train.optimizer"]
    assert "93.12%" in result.output and "95.00%" in result.output
    assert output.read_bytes().startswith(b"\x89PNG")
    assert runner.invoke(app, ["compare", a]).exit_code == 2


def test_words_flags_take_no_value_and_counts_agree(home: Path) -> None:
    helped = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "120"})
    assert "<bool>" not in helped.output and "KEY=VALUE" in helped.output
    assert " -s " not in runner.invoke(app, ["explain", "size", "--help"], env={"COLUMNS": "120"}).output

    examples = Path(__file__).parents[1] / "examples"
    summary = runner.invoke(app, ["summary", str(examples / "seed003-best.toml")])
    assert summary.exit_code == 0, summary.output
    assert summary.output.startswith("mnist_bn_cnn on svhn + mnist-colour input 3×28×28")

    with RunStore(root=home) as store:
        run_id = stored_run(store, "one")
        store.update_run(run_id, epochs_done=1)
        assert f"run {run_id} completed after 1 epoch in " in closing_line(store.get_run(run_id), store)

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    (line,) = [line for line in readme.splitlines() if line.startswith("eval_test = ")]
    assert line.split()[2] == str(TrainConfig().eval_test).lower()


def test_a_run_trained_with_a_markup_name_lists_and_errors_print_as_text(home: Path) -> None:
    small = ["-s", "data.dataset='mnist-sample'", "-s", "data.train_limit=128", "-s", "data.test_limit=64",
             "-s", "train.epochs=1", "-s", "train.threads=1"]
    experiment = Path(__file__).parents[1] / "examples" / "book-cnn-mnist.toml"
    trained = runner.invoke(app, ["train", str(experiment), *small, "-q", "--name", "[/]oops"])
    assert trained.exit_code == 0, trained.output
    listed = runner.invoke(app, ["runs"])
    assert listed.exit_code == 0 and "[/]oops" in listed.output
    missing = runner.invoke(app, ["show", "[link=https://evil.example]x[/link]"])
    assert missing.exit_code == 2
    assert "no run matches '[link=https://evil.example]x[/link]'" in " ".join(missing.output.split())


def test_show_of_a_mixture_run_fits_80_columns(home: Path) -> None:
    with RunStore(root=home) as store:
        run_id = stored_run(store, "mixed")
        for epoch in (1, 2, 3):
            store.log_epoch(run_id, epoch, {
                "train_loss": 2.3036, "train_acc": 0.1211, "val_loss": 2.2976, "val_acc": 0.1075,
                "test_loss": 2.2966, "test_acc": 0.0935, "lr": 0.01, "seconds": 12.5, "images_per_s": 6984.0,
                "val/mnist-sample_acc": 0.125, "val/mnist-sample-colour_acc": 0.0912,
                "test/mnist-sample_acc": 0.114, "test/mnist-sample-colour_acc": 0.086})
        record, epochs = store.get_run(run_id), store.epochs(run_id)
    console = Console(width=80, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(*run_detail(record, epochs, width=80))
    shown = console.export_text()
    assert max(len(line.rstrip()) for line in shown.splitlines()) <= 80
    table = shown.split("accuracy per domain")[1]
    assert "mnist-sample-colour" in table and "…" not in table  # whole domain names, whole numbers
    assert "epoch" in table.split("epochs")[1] and "9.12%" in table and "6,984" not in table
    assert "img/s, s left out to fit" in table


def test_rm_deletes_a_running_run_whose_process_is_gone(home: Path) -> None:
    """`running` in the store but its process died (kill -9): `runs` shows it as gone, and rm may
    delete it; a run whose process is alive stays refused."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with RunStore(root=home) as store:
        gone = stored_run(store, "gone", status="running")
        store.update_run(gone, pid=dead.pid, host=socket.gethostname(), heartbeat_at=datetime.now(UTC))
        alive = stored_run(store, "alive", status="running", seed=1)
        store.update_run(alive, pid=os.getpid(), host=socket.gethostname(), heartbeat_at=datetime.now(UTC))
    refused = runner.invoke(app, ["rm", alive, "--yes"])
    assert refused.exit_code == 2 and f"run {alive} is running" in refused.output
    removed = runner.invoke(app, ["rm", gone, "--yes"])
    assert removed.exit_code == 0, removed.output
    with RunStore(root=home) as store:
        assert [record.id for record in store.list_runs()] == [alive]
