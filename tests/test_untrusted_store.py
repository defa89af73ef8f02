"""A copied store and run folder are data a user did not write: a `module:Class` a store names is
never imported unless the user names the module for that command (`--trust-code`), and the
dashboard answers only to its own names and serves only runs' recorded artifacts. Real processes,
a store edited with the `sqlite3` command, a checkpoint edited to agree with it."""

from __future__ import annotations

import http.client
import io
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

import cnnlab
from cnnlab.checks import validate_experiment
from cnnlab.errors import UntrustedCodeError
from cnnlab.store import RunStore
from cnnlab.store.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.train import resume_run, train_experiment

SRC = Path(cnnlab.__file__).resolve().parents[1]
LAYERS = [{"type": "conv", "filters": 4, "kernel": 3}, {"type": "relu"}, {"type": "global_avg_pool"},
          {"type": "flatten"}, {"type": "linear", "units": 3}]
# The same network as LAYERS (same parameter names), so the run's weights load into it.
MARKER_MODULE = """
from pathlib import Path
Path({marker!r}).write_text("imported")
from torch import nn

class Net(nn.Sequential):
    def __init__(self, in_channels=1, num_classes=3, **kw):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 4, 3)
        self.relu1 = nn.ReLU()
        self.gap1 = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(4, num_classes)
"""
ZEN = "Beautiful is better than ugly"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, list[str]]:
    """A store with two one-epoch layer-list runs on 12×12 noise."""
    folder = tmp_path_factory.mktemp("untrusted")
    rng = np.random.default_rng(0)
    npz = folder / "tiny.npz"
    np.savez(npz, x=rng.integers(0, 255, (48, 12, 12), dtype=np.uint8), y=rng.integers(0, 3, 48),
             x_test=rng.integers(0, 255, (12, 12, 12), dtype=np.uint8), y_test=rng.integers(0, 3, 12))
    store = RunStore(root=folder / "home")
    ids = []
    for seed in (0, 1):
        exp = validate_experiment({"name": f"tiny{seed}", "seed": seed,
                                   "data": {"dataset": "npz", "path": str(npz), "val": 0},
                                   "model": {"name": "layers", "layers": LAYERS},
                                   "train": {"epochs": 1, "batch_size": 16}})
        outcome = train_experiment(exp, store, console=Console(file=io.StringIO()), progress=False)
        ids.append(outcome.record.id)
    store.close()
    return folder / "home", ids


@pytest.fixture
def planted(trained, tmp_path) -> dict:
    """A copy of the store whose first run names `markmod:Net` and second `this:Zen`, in both the
    database (edited with the sqlite3 command) and the checkpoint; `markmod.py` (which writes a
    marker file when imported) in the current folder and on PYTHONPATH."""
    home = tmp_path / "home"
    shutil.copytree(trained[0], home)
    code = tmp_path / "code"
    code.mkdir()
    marker = tmp_path / "imported.txt"
    (code / "markmod.py").write_text(MARKER_MODULE.format(marker=str(marker)))
    names = dict(zip(trained[1], ["markmod:Net", "this:Zen"], strict=True))
    store = RunStore(root=home)
    for run_id, name in names.items():
        model = f'{{"name": "{name}"}}'
        subprocess.run(["sqlite3", str(home / "runs.sqlite"), "UPDATE runs SET config = json_set(config, "
                        f"'$.model', json('{model}')) WHERE id = '{run_id}'"], check=True)
        path = store.checkpoint_path(run_id)
        state = load_checkpoint(path)
        state.pop("format")
        state["config"]["model"] = {"name": name}
        save_checkpoint(path, state)
    store.close()
    Image.new("L", (12, 12), 200).save(code / "digit.png")
    env = {**os.environ, "CNNLAB_HOME": str(home), "PYTHONPATH": os.pathsep.join([str(SRC), str(code)]),
           "OMP_NUM_THREADS": "1", "COLUMNS": "400", "MPLBACKEND": "Agg"}
    return {"home": home, "code": code, "marker": marker, "ids": trained[1], "names": names, "env": env}


def _cnnlab(planted: dict, *args: object, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cnnlab", *map(str, args)], cwd=planted["code"],
                          env=planted["env"], capture_output=True, text=True, timeout=timeout)


def _refusal(run_id: str, name: str) -> str:
    module = name.partition(":")[0]
    return (f"error: run {run_id}: model.name = {name!r} would import module {module}, and a stored "
            f"run never decides what cnnlab imports: if you trust {module}, say so for this command "
            f"with --trust-code {module}")


def test_a_stored_module_is_never_imported_by_predict_inspect_report_or_resume(planted):
    mark, zen = planted["ids"]
    for run_id in (mark, zen):
        done = _cnnlab(planted, "predict", run_id, "digit.png")
        assert done.returncode == 2, done.stdout + done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(_refusal(run_id, planted["names"][run_id])), lines
        assert ZEN not in done.stdout + done.stderr
    inspected = _cnnlab(planted, "inspect", mark, "--image", "digit.png", "-o", "figures")
    assert inspected.returncode == 2 and _refusal(mark, "markmod:Net") in inspected.stderr
    resumed = _cnnlab(planted, "train", "--resume", zen, "-s", "train.epochs=2")
    assert resumed.returncode == 2 and _refusal(zen, "this:Zen") in resumed.stderr
    assert ZEN not in resumed.stdout + resumed.stderr
    report = _cnnlab(planted, "report", mark, zen, "-o", "report")
    assert report.returncode == 0, report.stderr
    written = (planted["code"] / "report" / "report.md").read_text()
    assert re.search(r"would import module (markmod|this)", written)  # the best run's figures, refused
    assert ZEN not in report.stdout + report.stderr
    assert not planted["marker"].exists()
    assert not (planted["code"] / "figures").exists()


def test_trust_code_names_the_module_to_import_for_this_command_only(planted):
    mark, _ = planted["ids"]
    other = _cnnlab(planted, "predict", mark, "digit.png", "--trust-code", "othermod")
    assert other.returncode == 2 and _refusal(mark, "markmod:Net") in other.stderr
    assert not planted["marker"].exists()
    trusted = _cnnlab(planted, "predict", mark, "digit.png", "--trust-code", "markmod")
    assert trusted.returncode == 0, trusted.stderr
    assert "a stored run may import module markmod in this command" in trusted.stderr
    assert re.match(r"digit\.png: \d ", trusted.stdout)
    assert planted["marker"].exists()


def test_the_python_api_asks_for_trust_code_too(planted, monkeypatch):
    mark, zen = planted["ids"]
    store = RunStore(root=planted["home"])
    run = cnnlab.load_run(zen, store=store)
    with pytest.raises(UntrustedCodeError, match=f"run {zen}: model.name = 'this:Zen' would import module"):
        _ = run.model
    with pytest.raises(UntrustedCodeError, match="--trust-code this"):
        resume_run(zen, store, epochs=2, console=Console(file=io.StringIO()), progress=False)
    with pytest.raises(UntrustedCodeError, match="trust_code='markmod'"):
        cnnlab.load_run(mark, store=store).predict(np.zeros((1, 12, 12), dtype=np.uint8))
    assert not planted["marker"].exists()


def _get(port: int, path: str, host: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})  # sent as written, dots too
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_the_dashboard_imports_nothing_answers_only_its_names_and_serves_only_artifacts(planted):
    mark, zen = planted["ids"]
    home = planted["home"]
    (home / "beside.txt").write_text("a file beside the database")
    server = subprocess.Popen([sys.executable, "-m", "cnnlab", "ui", "--store", f"sqlite:///{home}/runs.sqlite",
                               "--port", "0"], cwd=planted["code"], env=planted["env"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert server.stdout is not None
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", server.stdout.readline()).group(1))
        deadline = time.monotonic() + 60
        while _get(port, "/api/runs")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        for run_id in (mark, zen):
            status, body = _get(port, f"/api/runs/{run_id}/figures")
            assert status == 200 and b"would import module" in body, body
        assert _get(port, "/api/runs", host="evil.example")[0] == 400
        assert _get(port, f"/api/runs/{mark}", host="evil.example:80")[0] == 400
        assert _get(port, "/api/runs", host=f"localhost:{port}")[0] == 200
        for path in ["/files/../runs.sqlite", "/files/runs.sqlite", "/files/beside.txt",
                     f"/files/{mark}/../../beside.txt", f"/files/{mark}/checkpoint.pt",
                     "/files/../../../etc/passwd"]:
            assert _get(port, path)[0] == 404, path
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert ZEN not in output
    assert not planted["marker"].exists()


WORKER_SWEEP = """
name = "mine"
[base.data]
dataset = "npz"
path = "{npz}"
val = "test"
[base.model]
name = "markmod:Net"
[base.train]
epochs = 1
[grid]
"train.lr" = [0.01]
"""


def test_a_worker_imports_a_module_the_sweeps_storage_names_only_with_trust_code(planted, tmp_path):
    code, marker = planted["code"], planted["marker"]
    rng = np.random.default_rng(0)
    npz = tmp_path / "w.npz"
    np.savez(npz, x=rng.integers(0, 255, (32, 12, 12), dtype=np.uint8), y=rng.integers(0, 3, 32),
             x_test=rng.integers(0, 255, (8, 12, 12), dtype=np.uint8), y_test=rng.integers(0, 3, 8))
    (code / "mine.toml").write_text(WORKER_SWEEP.format(npz=npz))
    queued = _cnnlab(planted, "sweep", "mine.toml", "--workers", "0")  # the file names it: queued
    assert queued.returncode == 0, queued.stderr
    assert not marker.exists()
    # Refused once, before any worker starts: not a failed trial per cell.
    refused = _cnnlab(planted, "worker", "--study", "mine", "--workers", "1", "-q")
    assert not marker.exists()
    assert refused.returncode == 2, refused.stdout + refused.stderr
    said = refused.stderr.strip().splitlines()
    assert len(said) == 1 and "would import module markmod" in said[0], said
    assert "--trust-code markmod" in said[0], said
    status = " ".join(_cnnlab(planted, "sweep-status", "mine").stdout.split())
    assert "failed" not in status and "1 pending" in status, status
    again = _cnnlab(planted, "sweep", "mine.toml", "--workers", "1", "-q")  # the user's file: trusted
    assert again.returncode == 0, again.stdout + again.stderr
    assert marker.exists()
