"""Run store: runs, epochs and artifacts round-trip, upserts, lookups, exports, concurrency."""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import os
import pickle
import sqlite3
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from cnnlab.data.labels import run_dataset
from cnnlab.errors import StoreError
from cnnlab.store import RUN_FIELDS, RunRecord, RunStore, default_root
from cnnlab.store.export import export_epochs
from cnnlab.store.schema import RunRow
from cnnlab.terminal.runs import run_detail, runs_table

CONFIG = {
    "name": None,
    "seed": 0,
    "data": {"dataset": "mnist", "val": 0.1},
    "model": {"name": "book_cnn", "layers": None},
    "train": {"lr": 0.01, "epochs": 3, "optimizer": "sgd"},
}


def new_run(store: RunStore, name: str | None = "mnist-sgd", **kw: Any) -> str:
    args: dict[str, Any] = {
        "name": name,
        "config": CONFIG,
        "config_hash": "c0ffee",
        "cell_hash": "cell01",
        "seed": 0,
        "host": "testhost",
        "versions": {"torch": "2.14.1", "cnnlab": "0.1.0"},
    }
    return store.create_run(**(args | kw))


def test_default_root_follows_cnnlab_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CNNLAB_HOME", str(tmp_path / "home"))
    assert default_root() == tmp_path / "home"
    monkeypatch.delenv("CNNLAB_HOME")
    monkeypatch.chdir(tmp_path)
    assert default_root() == tmp_path / "cnnlab-runs"


def test_run_round_trip(store: RunStore, tmp_path: Path) -> None:
    run_id = new_run(store)
    assert (tmp_path / "runs.sqlite").is_file()
    assert run_id.startswith("r") and len(run_id) == 9
    run = store.get_run(run_id)
    assert isinstance(run, RunRecord)
    assert (run.id, run.name, run.status, run.seed, run.host) == (
        run_id,
        "mnist-sgd",
        "running",
        0,
        "testhost",
    )
    assert run.config == CONFIG and run.versions["torch"] == "2.14.1"
    assert run.created_at.tzinfo is not None and run.created_at.utcoffset().total_seconds() == 0
    assert run.started_at == run.created_at and run.finished_at is None
    assert (run.model, run_dataset(run.config), run.planned_epochs) == ("book_cnn", "mnist", 3)
    assert (run.sweep, run.trial) == (None, None)
    with pytest.raises(AttributeError):
        run.status = "failed"  # type: ignore[misc]


def test_record_fields_are_the_run_columns() -> None:
    columns = {c.name for c in RunRow.__table__.columns} - {"nonfinite"}
    assert {f.name for f in fields(RunRecord)} == columns
    assert "id" not in RUN_FIELDS


def test_epochs_round_trip_with_extra_metrics(store: RunStore) -> None:
    run_id = new_run(store)
    for epoch in (1, 2):
        metrics = {"train_loss": 1.0 / epoch, "val_acc": 0.5 + epoch / 10, "val/svhn_acc": 0.2}
        store.log_epoch(run_id, epoch, metrics)
    rows = store.epochs(run_id)
    assert [row["epoch"] for row in rows] == [1, 2]
    assert rows[1]["train_loss"] == 0.5 and rows[1]["val_acc"] == pytest.approx(0.7)
    assert rows[0]["val/svhn_acc"] == 0.2
    assert rows[0]["test_acc"] is None


def test_logging_an_epoch_again_replaces_it(store: RunStore) -> None:
    run_id = new_run(store)
    store.log_epoch(run_id, 1, {"train_loss": 2.0, "val_acc": 0.1, "lr": 0.1})
    store.log_epoch(run_id, 2, {"train_loss": 1.5})
    store.log_epoch(run_id, 1, {"train_loss": 1.0, "val_acc": 0.2})
    rows = store.epochs(run_id)
    assert [row["epoch"] for row in rows] == [1, 2]
    assert rows[0]["train_loss"] == 1.0 and rows[0]["val_acc"] == 0.2
    assert rows[0]["lr"] is None  # the whole row is replaced, not merged


def test_truncate_epochs(store: RunStore) -> None:
    run_id = new_run(store)
    other = new_run(store, name="other")
    for epoch in range(1, 6):
        store.log_epoch(run_id, epoch, {"train_loss": 1.0})
        store.log_epoch(other, epoch, {"train_loss": 1.0})
    assert store.truncate_epochs(run_id, after_epoch=3) == 2
    assert [row["epoch"] for row in store.epochs(run_id)] == [1, 2, 3]
    assert len(store.epochs(other)) == 5


def test_nan_and_inf_survive(store: RunStore) -> None:
    run_id = new_run(store)
    nan, inf = float("nan"), float("inf")
    store.log_epoch(run_id, 1, {"train_loss": nan, "val_loss": inf, "test_loss": -inf, "x": nan})
    row = store.epochs(run_id)[0]
    assert math.isnan(row["train_loss"]) and math.isnan(row["x"])
    assert row["val_loss"] == inf and row["test_loss"] == -inf
    store.update_run(run_id, status="diverged", final_train_loss=nan, best_val_loss=1.5)
    run = store.get_run(run_id)
    assert math.isnan(run.final_train_loss) and run.best_val_loss == 1.5
    store.update_run(run_id, final_train_loss=2.0)
    assert store.get_run(run_id).final_train_loss == 2.0


def test_lookup_by_id_prefix_and_name(store: RunStore) -> None:
    first = new_run(store, name="study")
    second = new_run(store, name="study")
    third = new_run(store, name=None)
    assert store.get_run(third).id == third
    assert store.get_run("study").id == second  # the latest run with that name
    ids = [first, second, third]
    unique = next(
        run_id[:n]
        for n in range(2, 10)
        for run_id in ids
        if sum(other.startswith(run_id[:n]) for other in ids) == 1
    )
    assert store.get_run(unique.upper()).id.startswith(unique)
    with pytest.raises(StoreError, match=r"no run matches 'nope'; `cnnlab runs` lists them"):
        store.get_run("nope")
    with pytest.raises(StoreError, match="matches 3 runs") as err:
        store.get_run("r")
    assert all(run_id in str(err.value) for run_id in ids)


def test_update_run_status_and_unknown_field(store: RunStore) -> None:
    run_id = new_run(store)
    finished = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    store.update_run(
        run_id,
        status="completed",
        finished_at=finished,
        duration_s=12.5,
        epochs_done=3,
        best_val_acc=0.9,
        best_epoch=2,
        final_val_acc=0.88,
        final_test_acc=0.87,
        precision="bf16",
        error=None,
    )
    run = store.get_run(run_id)
    assert (run.status, run.finished_at, run.duration_s, run.epochs_done) == (
        "completed",
        finished,
        12.5,
        3,
    )
    assert (run.best_val_acc, run.best_epoch, run.final_test_acc) == (0.9, 2, 0.87)
    with pytest.raises(StoreError, match="'colour' is not one of"):
        store.update_run(run_id, colour="red")
    with pytest.raises(StoreError, match="'done' is not one of created, running"):
        store.update_run(run_id, status="done")
    with pytest.raises(StoreError, match="timezone-aware"):
        store.update_run(run_id, finished_at=datetime(2026, 1, 1))
    with pytest.raises(StoreError, match="no run matches"):
        store.update_run("r00000000", status="failed")
    assert store.get_run(run_id).status == "completed"


def test_create_run_rejects_bad_values(store: RunStore) -> None:
    with pytest.raises(StoreError, match="status"):
        new_run(store, status="finished")
    with pytest.raises(StoreError, match="config: is not JSON"):
        new_run(store, config={"path": Path("x")})
    assert new_run(store, status="created", sweep="s1", trial=4)
    assert store.list_runs()[0].started_at is None


def test_log_epoch_rejects_bad_input(store: RunStore) -> None:
    run_id = new_run(store)
    with pytest.raises(StoreError, match="no run matches 'r12345678'"):
        store.log_epoch("r12345678", 1, {"train_loss": 1.0})
    with pytest.raises(StoreError, match="'train_loss': 'low' is not a number"):
        store.log_epoch(run_id, 1, {"train_loss": "low"})
    with pytest.raises(StoreError, match="epoch"):
        store.log_epoch(run_id, -1, {})
    assert store.epochs(run_id) == []


def test_list_runs_filters(store: RunStore) -> None:
    a = new_run(store, name="mnist-adam")
    b = new_run(store, name="cifar-adam")
    c = new_run(store, name="mnist-sgd_1")
    store.update_run(a, status="completed")
    assert [r.id for r in store.list_runs()] == [c, b, a]
    assert [r.id for r in store.list_runs(status="completed")] == [a]
    assert [r.id for r in store.list_runs(name="ADAM")] == [b, a]
    assert [r.id for r in store.list_runs(name="mnist-*")] == [c, a]
    assert [r.id for r in store.list_runs(name="*_?")] == [c]
    assert store.list_runs(name="%") == []  # SQL wildcards are plain characters
    assert [r.id for r in store.list_runs(limit=2)] == [c, b]
    with pytest.raises(StoreError, match="'finished' is not one of"):
        store.list_runs(status="finished")


def test_export_csv_and_json(store: RunStore, tmp_path: Path) -> None:
    run_id = new_run(store)
    store.log_epoch(run_id, 1, {"train_loss": 0.5, "val_acc": 0.9, "val/svhn_acc": 0.25})
    store.log_epoch(run_id, 2, {"train_loss": float("nan"), "val_loss": float("inf")})

    out = tmp_path / "out" / "epochs.csv"
    text = export_epochs(store, run_id, "csv", out)
    assert out.read_text() == text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["epoch"] == "1" and float(rows[0]["val/svhn_acc"]) == 0.25
    assert rows[0]["test_acc"] == "" and rows[1]["val/svhn_acc"] == ""
    assert math.isnan(float(rows[1]["train_loss"])) and float(rows[1]["val_loss"]) == math.inf

    text = export_epochs(store, run_id, "json", tmp_path / "epochs.json")
    records = json.loads(text)
    assert json.loads((tmp_path / "epochs.json").read_text()) == records
    assert records[0]["val_acc"] == 0.9 and records[1]["val/svhn_acc"] is None
    assert records[1]["train_loss"] == "NaN" and float(records[1]["val_loss"]) == math.inf
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["epochs.csv"]  # no temp file left
    with pytest.raises(StoreError, match="'xml' is not one of csv, json"):
        export_epochs(store, run_id, "xml")  # type: ignore[arg-type]


def test_artifacts_and_delete(store: RunStore, tmp_path: Path) -> None:
    run_id = new_run(store)
    keep = new_run(store, name="keep")
    folder = store.run_dir(run_id)
    assert folder == tmp_path / "runs" / run_id and folder.is_dir()
    (folder / "last.pt").write_bytes(b"x")
    store.add_artifact(run_id, "checkpoint", folder / "last.pt")
    store.add_artifact(run_id, "checkpoint", folder / "last.pt")  # same file again: one row
    store.add_artifact(run_id, "report", "s3://bucket/report.html")
    store.log_epoch(run_id, 1, {"train_loss": 1.0})
    artifacts = store.artifacts(run_id)
    assert [(a["kind"], a["path"]) for a in artifacts] == [
        ("checkpoint", str(folder / "last.pt")),
        ("report", "s3://bucket/report.html"),
    ]
    store.delete_run(run_id)
    assert not folder.exists()
    with pytest.raises(StoreError, match="no run matches"):
        store.epochs(run_id)
    assert [r.id for r in store.list_runs()] == [keep]
    with pytest.raises(StoreError, match="is not a run id"):
        store.run_dir("../escape")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("runs.sqlite", "is not a database URL"),
        ("mysql://user@host/db", "'mysql' is not one of sqlite, postgresql"),
        ("postgresql+psycopg://me:s3cret@127.0.0.1:1/cnnlab", "postgresql"),
    ],
)
def test_bad_url(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as err:
        RunStore(url, root=tmp_path)
    assert "sqlite:///" in str(err.value)  # an example of a valid URL
    assert "s3cret" not in str(err.value)


def test_explicit_sqlite_url_and_pickle(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'store.db'}"
    with RunStore(url, root=tmp_path / "artifacts") as first:
        run_id = new_run(first)
        copy = pickle.loads(pickle.dumps(first))
        assert copy.url == first.url and copy.root == first.root
        assert copy.get_run(run_id).id == run_id
        copy.close()


def test_tables_render(store: RunStore) -> None:
    run_id = new_run(store)
    store.log_epoch(run_id, 1, {"train_loss": 0.5, "val_acc": 0.9012, "val/svhn_acc": 0.25})
    store.log_epoch(run_id, 2, {"train_loss": float("nan")})
    store.update_run(run_id, status="diverged", best_val_acc=0.9012, best_epoch=1, duration_s=75)
    console = Console(record=True, width=200)
    console.print(runs_table(store.list_runs()))
    console.print(*run_detail(store.get_run(run_id), store.epochs(run_id)))
    text = console.export_text()
    assert run_id in text and "diverged" in text and "book_cnn" in text and "1m 15s" in text
    assert "90.12%" in text and "NaN" in text and "svhn" in text.split("epochs")[-1]
    assert "accuracy per domain" in text and "25.00%" in text
    assert "train.lr" in text and "test acc" not in text.split("epochs")[-1]


def _write_epochs(url: str, root: str, worker: int, epochs: int, barrier: Any) -> None:
    """Worker process: opens the store with the others, then logs (and re-logs) its epochs."""
    barrier.wait()
    with RunStore(url, root=root) as worker_store:
        run_id = new_run(worker_store, name=f"worker-{worker}")
        for epoch in range(epochs):
            worker_store.log_epoch(run_id, epoch, {"train_loss": 1.0, "val/extra": float(worker)})
            worker_store.log_epoch(run_id, epoch, {"train_loss": 0.5})  # replaces, never adds
            worker_store.update_run(run_id, epochs_done=epoch + 1)
        worker_store.update_run(run_id, status="completed")


def test_processes_write_one_sqlite_store_concurrently(tmp_path: Path) -> None:
    workers, epochs = 4, 25
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(workers)  # all open the new store (and create tables) at once
    processes = [
        context.Process(target=_write_epochs, args=(url, str(tmp_path), worker, epochs, barrier))
        for worker in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0] * workers
    with RunStore(url, root=tmp_path) as store:
        runs = store.list_runs(name="worker-*")
        assert len(runs) == workers
        assert {(r.status, r.epochs_done) for r in runs} == {("completed", epochs)}
        for run in runs:
            rows = store.epochs(run.id)
            assert [row["epoch"] for row in rows] == list(range(epochs))
            assert all(row["train_loss"] == 0.5 and "val/extra" not in row for row in rows)


def test_a_sqlite_url_keeps_run_folders_beside_its_file(tmp_path):
    store = RunStore(f"sqlite:///{tmp_path}/elsewhere/runs.sqlite")
    assert store.root == tmp_path / "elsewhere"


def test_a_store_made_before_liveness_and_fencing_gets_their_columns(tmp_path: Path) -> None:
    with RunStore(root=tmp_path) as old:
        run_id = old.create_run(name="old", config={}, config_hash="h", cell_hash="c", seed=0,
                                host="h", versions={})
    with sqlite3.connect(tmp_path / "runs.sqlite") as conn:
        for column in ("pid", "heartbeat_at", "lease"):
            conn.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    with RunStore(root=tmp_path) as reopened:
        record = reopened.get_run(run_id)
        assert (record.name, record.pid, record.heartbeat_at, record.lease) == ("old", None, None, None)
        assert reopened.acquire(run_id) == 1


def _checkpoint_folder(store: RunStore, run_id: str) -> tuple[Path, Path]:
    target = store.checkpoint_path(run_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"epoch 2")
    store.previous_checkpoint_path(run_id).write_bytes(b"epoch 1")
    return target, store.previous_checkpoint_path(run_id)


def _staged_checkpoint(store: RunStore) -> tuple[str, int, Path, Path, Path]:
    """A held run with checkpoint "epoch 2", previous "epoch 1" and a staged "epoch 3"."""
    run_id = new_run(store)
    lease = store.acquire(run_id)
    target, previous = _checkpoint_folder(store, run_id)
    staged = store.staged_path(target, lease)
    staged.write_bytes(b"epoch 3")
    return run_id, lease, target, previous, staged


def test_each_holder_stages_its_checkpoint_under_its_own_name(store: RunStore) -> None:
    run_id = new_run(store)
    target = store.checkpoint_path(run_id)
    old, new = store.staged_path(target, 1), store.staged_path(target, 2)
    assert old != new and old.parent == target.parent
    assert store.staged_path(target, 2, "best") not in (old, new)


def test_put_fenced_undoes_its_renames_on_any_error(store: RunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id, lease, target, previous, staged = _staged_checkpoint(store)
    real = os.replace
    calls = []

    def interrupted(source: Path, destination: Path) -> None:
        calls.append(destination)
        if len(calls) == 3:  # the staged file's rename: the previous ones must be undone
            raise KeyboardInterrupt
        real(source, destination)

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.put_fenced(run_id, lease, staged, target, previous)
    monkeypatch.undo()
    assert target.read_bytes() == b"epoch 2" and previous.read_bytes() == b"epoch 1"
    assert sorted(f.name for f in target.parent.iterdir()) == sorted([target.name, previous.name])


def test_put_fenced_keeps_the_set_aside_file_when_putting_it_back_fails(
        store: RunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id, lease, target, previous, staged = _staged_checkpoint(store)
    real = os.replace
    calls = []

    def disk_error(source: Path, destination: Path) -> None:
        calls.append(destination)
        if len(calls) >= 2:  # the second rename fails, and so does every undo
            raise OSError("disk error")
        real(source, destination)

    monkeypatch.setattr(os, "replace", disk_error)
    with pytest.raises(OSError, match="disk error"):
        store.put_fenced(run_id, lease, staged, target, previous)
    monkeypatch.undo()
    kept = [f for f in target.parent.iterdir() if f.name.endswith(".undo")]
    assert [f.read_bytes() for f in kept] == [b"epoch 1"]
    assert target.read_bytes() == b"epoch 2"


def test_put_fenced_success_leaves_only_the_two_checkpoints(store: RunStore) -> None:
    run_id, lease, target, previous, staged = _staged_checkpoint(store)
    store.put_fenced(run_id, lease, staged, target, previous)
    assert target.read_bytes() == b"epoch 3" and previous.read_bytes() == b"epoch 2"
    assert sorted(f.name for f in target.parent.iterdir()) == sorted([target.name, previous.name])


def test_a_store_in_a_folder_named_with_uri_characters_opens_that_file(tmp_path: Path) -> None:
    """SQLite reads ``?``, ``#`` and ``%`` in a ``file:`` URI as URI syntax: the path is quoted."""
    from sqlalchemy import text
    from sqlalchemy.engine import URL

    from cnnlab.store import open_read_only
    from cnnlab.store.damage import sqlite_path
    from cnnlab.store.database import make_engine
    from cnnlab.store.urls import read_only_url, sqlite_file

    folder = tmp_path / "a?b#c%d"
    with RunStore(root=folder) as store:
        run_id = new_run(store)
    database = folder / "runs.sqlite"
    url = read_only_url(RunStore(root=folder)._url)
    assert sqlite_file(url) == database and sqlite_path(url) == database
    with open_read_only(root=folder) as store:
        assert [run.id for run in store.list_runs()] == [run_id]
    engine = make_engine(URL.create("sqlite", database=str(database)), "shown", read_only=True)
    with engine.connect() as conn:  # immutable, for a file that cannot be written
        assert conn.execute(text("SELECT id FROM runs")).scalars().all() == [run_id]
    engine.dispose()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a?b#c%d"]  # no file made elsewhere


def test_read_only_postgresql_url_keeps_the_options_it_had() -> None:
    from sqlalchemy.engine import make_url

    from cnnlab.store.urls import read_only_url

    url = make_url("postgresql+psycopg://u@h/db?options=-c%20search_path%3Dlab")
    assert read_only_url(url).query["options"] == "-c search_path=lab -c default_transaction_read_only=on"
    plain = read_only_url(make_url("postgresql+psycopg://u@h/db"))
    assert plain.query["options"] == "-c default_transaction_read_only=on"
