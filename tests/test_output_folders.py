"""`-o DIR` of report, inspect and samples: a symbolic link is refused (never followed), a folder of
files cnnlab did not write is refused unless --force (nothing written), and the output is built in
a temporary folder renamed into place."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

import cnnlab
from cnnlab.analyze.synthetic import curves, store_run
from cnnlab.checks import validate_experiment
from cnnlab.cli import app
from cnnlab.config import Experiment, apply_overrides
from cnnlab.errors import ConfigError
from cnnlab.files import OUTPUT_MARKER, OutputFolder
from cnnlab.store import RunStore
from cnnlab.train import train_experiment

SRC = Path(cnnlab.__file__).resolve().parents[1]
runner = CliRunner()


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def home(tmp_path) -> Path:
    root = tmp_path / "home"
    with RunStore(root=root) as store:
        for seed in (0, 1):
            config = {**apply_overrides(Experiment().resolved(), {"train.epochs": 4}), "seed": seed}
            store_run(store, config, curves(4, seed=seed))
    return root


def _report(home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CNNLAB_HOME": str(home), "PYTHONPATH": str(SRC), "COLUMNS": "300",
           "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "cnnlab", "report", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_report_onto_a_symlink_or_a_foreign_folder_writes_nothing(home, tmp_path):
    system = tmp_path / "etc"
    system.mkdir()
    (system / "passwd").write_text("root:x:0:0\n")
    (tmp_path / "link").symlink_to(system)
    foreign = tmp_path / "site"
    foreign.mkdir()
    (foreign / "index.html").write_text("<h1>my own page</h1>")
    before = {"etc": _snapshot(system), "site": _snapshot(foreign)}
    ids = [run.id for run in RunStore(root=home).list_runs()]

    linked = _report(home, tmp_path, *ids, "-o", "link")
    assert linked.returncode == 2
    assert linked.stderr.strip().splitlines() == [
        f"error: --output: 'link' is a symbolic link (to {system}); cnnlab does not write through a "
        "link: give the folder itself to write there"]
    linked_forced = _report(home, tmp_path, *ids, "-o", "link", "--force")
    assert linked_forced.returncode == 2 and "symbolic link" in linked_forced.stderr
    taken = _report(home, tmp_path, *ids, "-o", "site")
    assert taken.returncode == 2
    assert "'site' is a folder with files cnnlab did not write (index.html); nothing was written" \
        in " ".join(taken.stderr.split())
    assert {"etc": _snapshot(system), "site": _snapshot(foreign)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["etc", "home", "link", "site"]  # no temporary left

    forced = _report(home, tmp_path, *ids, "-o", "site", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "my own page" not in (foreign / "index.html").read_text()
    assert (foreign / OUTPUT_MARKER).read_text() == "report\n"


def test_a_report_is_built_aside_and_renamed_into_place_then_replaced(home, tmp_path):
    ids = [run.id for run in RunStore(root=home).list_runs()]
    first = _report(home, tmp_path, *ids, "-o", "out")
    assert first.returncode == 0, first.stderr
    out = tmp_path / "out"
    assert {"index.html", "report.md", OUTPUT_MARKER} <= {p.name for p in out.iterdir()}
    (out / "fig-stale.png").write_bytes(b"drawn by an earlier report")
    again = _report(home, tmp_path, ids[0], "-o", "out")  # an earlier report: replaced, no --force
    assert again.returncode == 0, again.stderr
    assert not (out / "fig-stale.png").exists()
    assert "1 run" in (out / "report.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "out"]


def test_output_folder_failing_midway_leaves_the_folder_as_it_was(tmp_path):
    out = tmp_path / "out"
    with OutputFolder(out, "report") as staging:
        (staging / "index.html").write_text("first")
    before = _snapshot(out)
    with pytest.raises(RuntimeError), OutputFolder(out, "report") as staging:
        (staging / "index.html").write_text("half")
        raise RuntimeError("drawing failed")
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(ConfigError, match="is a file"):
        OutputFolder(out / "index.html", "report")


@pytest.fixture
def trained(tmp_path) -> tuple[Path, str]:
    rng = np.random.default_rng(0)
    npz = tmp_path / "tiny.npz"
    np.savez(npz, x=rng.integers(0, 255, (48, 12, 12), dtype=np.uint8), y=rng.integers(0, 3, 48),
             x_test=rng.integers(0, 255, (24, 12, 12), dtype=np.uint8), y_test=rng.integers(0, 3, 24))
    exp = validate_experiment({"data": {"dataset": "npz", "path": str(npz), "val": 0},
                               "model": {"name": "layers", "layers": [
                                   {"type": "conv", "filters": 4, "kernel": 3}, {"type": "relu"},
                                   {"type": "global_avg_pool"}, {"type": "flatten"},
                                   {"type": "linear", "units": 3}]},
                               "train": {"epochs": 1, "batch_size": 16}})
    with RunStore(root=tmp_path / "home") as store:
        outcome = train_experiment(exp, store, console=Console(file=io.StringIO()), progress=False)
    return tmp_path / "home", outcome.record.id


def test_inspect_and_samples_errors_refuse_links_and_foreign_folders(trained, tmp_path, monkeypatch):
    home, run_id = trained
    monkeypatch.setenv("CNNLAB_HOME", str(home))
    target = tmp_path / "target"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for args in (["samples", run_id, "--errors", "-o"], ["inspect", run_id, "-o"]):
        for folder in ("link", "mine"):
            result = runner.invoke(app, [*args, str(tmp_path / folder)])
            assert result.exit_code == 2, result.output
            assert ("symbolic link" if folder == "link" else "files cnnlab did not write") in result.output
    assert list(target.iterdir()) == [] and [p.name for p in mine.iterdir()] == ["notes.txt"]
    result = runner.invoke(app, ["samples", run_id, "--errors", "-o", str(tmp_path / "new")])
    assert result.exit_code == 0, result.output
    again = runner.invoke(app, ["inspect", run_id, "-o", str(tmp_path / "new")])  # cnnlab's own: added to
    assert again.exit_code == 0, again.output
    written = {p.name for p in (tmp_path / "new").iterdir()}
    assert {"mistakes.png", OUTPUT_MARKER, "attribution.png"} <= written
    recorded = {Path(a["path"]) for a in RunStore(root=home).artifacts(run_id)}
    assert tmp_path / "new" / "mistakes.png" in recorded and tmp_path / "new" / "attribution.png" in recorded
    forced = runner.invoke(app, ["inspect", run_id, "-o", str(mine), "--force"])
    assert forced.exit_code == 0, forced.output
    assert (mine / "notes.txt").read_text() == "keep me" and (mine / "attribution.png").is_file()
