"""Read-only, full and locked-down disks: one clear line and exit code 2, nothing half-written,
and a read-only store can still be read.

The tests run as root (as CI does), where folder permissions do not apply, so the disks are made
for real: a small tmpfs mounted and remounted read-only (`mount -o remount,ro`), a tmpfs filled
to the last byte, and a folder made immutable with `chattr +i` (EPERM even for root)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.store import RunStore

runner = CliRunner()
LAYERS = [{"type": "conv", "filters": 4, "kernel": 3}, {"type": "relu"}, {"type": "global_avg_pool"},
          {"type": "flatten"}, {"type": "linear", "units": 3}]
SWEEP = """
name = "disk"
[base.data]
dataset = "mnist-sample"
train_limit = 64
[base.train]
epochs = 1
[grid]
"train.lr" = [0.01, 0.03]
"""


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


def _remount_read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


@pytest.fixture
def mounts() -> Iterator[list[Path]]:
    """Folders mounted by a test, unmounted afterwards (innermost first)."""
    mounted: list[Path] = []
    yield mounted
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def experiment(tmp_path) -> Path:
    """A one-epoch layer-list experiment on 12×12 noise (an npz outside any test mount)."""
    rng = np.random.default_rng(0)
    npz = tmp_path / "tiny.npz"
    np.savez(npz, x=rng.integers(0, 255, (48, 12, 12), dtype=np.uint8), y=rng.integers(0, 3, 48),
             x_test=rng.integers(0, 255, (12, 12, 12), dtype=np.uint8), y_test=rng.integers(0, 3, 12))
    layers = ",\n".join("{ " + ", ".join(f"{k} = {v!r}".replace("'", '"') for k, v in layer.items()) + " }"
                        for layer in LAYERS)
    path = tmp_path / "tiny.toml"
    path.write_text(f'[data]\ndataset = "npz"\npath = "{npz}"\nval = 0\n[model]\nname = "layers"\n'
                    f"layers = [\n{layers}\n]\n[train]\nepochs = 1\nbatch_size = 16\n")
    return path


def invoke(*args: object):
    result = runner.invoke(app, [str(a) for a in args])
    result.said = " ".join(result.output.split())  # the message, unwrapped
    return result


def _one_error(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for word in words:
        assert word in result.said, result.output


def _stored_run(home: Path) -> str:
    store = RunStore(root=home)
    run_id = store.create_run(name="kept", config={"train": {"epochs": 2}}, config_hash="h", cell_hash="c",
                              seed=0, host="here", versions={})
    store.log_epoch(run_id, 1, {"train_loss": 0.5, "val_acc": 0.75})
    store.update_run(run_id, status="completed", epochs_done=1)
    store.close()
    return run_id


def test_read_only_store_is_read_and_refuses_writes_in_one_line(tmp_path, mounts, monkeypatch, experiment):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "8m")
    mounts.append(disk)
    home = disk / "home"
    run_id = _stored_run(home)
    _remount_read_only(disk)
    monkeypatch.setenv("CNNLAB_HOME", str(home))
    listed = invoke("runs")
    assert listed.exit_code == 0 and "kept" in listed.output, listed.output
    shown = invoke("show", run_id)
    assert shown.exit_code == 0 and "completed" in shown.output, shown.output
    exported = invoke("export", run_id, "-f", "json")
    assert exported.exit_code == 0 and '"val_acc": 0.75' in exported.output, exported.output
    _one_error(invoke("train", experiment), "read-only", "CNNLAB_HOME")
    sweep = tmp_path / "disk.toml"
    sweep.write_text(SWEEP)
    _one_error(invoke("sweep", sweep, "--workers", "1"), f"{home / 'sweeps.journal'}: read-only file system")
    assert sorted(p.name for p in home.iterdir()) == ["runs", "runs.sqlite"]


def test_worker_on_a_read_only_home_is_one_line(tmp_path, mounts, monkeypatch):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "8m")
    mounts.append(disk)
    sweep = tmp_path / "disk.toml"
    sweep.write_text(SWEEP)
    monkeypatch.setenv("CNNLAB_HOME", str(disk / "home"))
    queued = invoke("sweep", sweep, "--workers", "0")
    assert queued.exit_code == 0, queued.output
    _remount_read_only(disk)
    worked = subprocess.run([sys.executable, "-c", "from cnnlab.cli import main; main()", "worker",
                             "--study", "disk", "--workers", "2", "-q"],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert worked.returncode == 2, worked.stdout + worked.stderr
    assert worked.stderr.count("error:") == 1 and "Traceback" not in worked.stderr, worked.stderr
    assert " ".join(worked.stderr.split()) == (
        f"error: {disk / 'home' / 'sweeps.journal'}: read-only file system: cnnlab cannot write there; "
        "point CNNLAB_HOME, --store or --artifacts at a writable folder")


@pytest.mark.parametrize("lock", ["read-only mount", "chattr +i"])
def test_unwritable_run_folders_fail_before_a_run_is_stored(tmp_path, mounts, monkeypatch, experiment, lock):
    home = tmp_path / "home"
    runs = home / "runs"
    _stored_run(home)
    if lock == "read-only mount":
        subprocess.run(["mount", "--bind", str(runs), str(runs)], check=True)
        mounts.append(runs)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(runs)], check=True)
        words = (f"{runs}: read-only file system",)
    else:
        subprocess.run(["chattr", "+i", str(runs)], check=True)
        words = (f"{runs}: permission denied",)
    monkeypatch.setenv("CNNLAB_HOME", str(home))
    try:
        _one_error(invoke("train", experiment), *words)
    finally:
        if lock == "chattr +i":
            subprocess.run(["chattr", "-i", str(runs)], check=True)
    assert [r.name for r in RunStore(root=home).list_runs()] == ["kept"]


def test_full_disk_is_one_line_and_leaves_no_partial_checkpoint(tmp_path, mounts, monkeypatch, experiment):
    home = tmp_path / "home"
    _stored_run(home)
    runs = home / "runs"
    _mount_tmpfs(runs, "64k")
    mounts.append(runs)
    with open(runs / "filler", "wb") as f, pytest.raises(OSError):
        f.write(b"\0" * 1_000_000)
    monkeypatch.setenv("CNNLAB_HOME", str(home))
    result = invoke("train", experiment)
    _one_error(result, "no space left on the device", "checkpoint.pt")
    assert "inline_container" not in result.output
    leftovers = [p.name for p in runs.rglob("*") if p.is_file() and p.name != "filler"]
    assert leftovers == []
    failed = RunStore(root=home).list_runs(status="failed")
    assert len(failed) == 1 and "No space left" in (failed[0].error or "")


def test_store_on_a_full_disk_is_read_and_refuses_writes(tmp_path, mounts, monkeypatch, experiment):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "512k")
    mounts.append(disk)
    home = disk / "home"
    run_id = _stored_run(home)
    with open(disk / "filler", "wb") as f, pytest.raises(OSError):
        f.write(b"\0" * 1_000_000)
    monkeypatch.setenv("CNNLAB_HOME", str(home))
    listed = invoke("runs")
    assert listed.exit_code == 0 and run_id in listed.output, listed.output
    _one_error(invoke("train", experiment), "no space left on its disk")
