"""A config that sets a model default explicitly is the same computation as one that leaves it out:
one hash, one run, no difference in `compare`. A store written before defaults were filled in
(tests/data/store-written-by-0.1.0, made by cnnlab 0.1.0 at commit 00ffd34) has its hashes
computed again when opened, keeps the old ones, and its runs are found by their filled-in config."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import cnnlab
from cnnlab.analyze.synthetic import curves, store_run
from cnnlab.checks import load_experiment
from cnnlab.store import RunStore

SRC = Path(cnnlab.__file__).resolve().parents[1]
OLD_STORE = Path(__file__).resolve().parent / "data" / "store-written-by-0.1.0" / "runs.sqlite"
OLD_RUN, OLD_HASH = "r72107cb7", "ac34d5b192620cad"  # book_cnn, defaults left out, 1 epoch, seed 0
SWEEP = """
name = "{name}"
seeds = [0]
[base]
train = {{ epochs = 1 }}
{grid}
"""


def test_an_explicit_model_or_layer_default_hashes_as_leaving_it_out():
    plain = load_experiment(base={"train": {"epochs": 1}})
    explicit = load_experiment(base={"train": {"epochs": 1}},
                               overrides=["model.dropout=0.5", "model.conv_dropout=0.5"])
    assert plain.hash() == explicit.hash() and plain.model.params == explicit.model.params
    assert load_experiment(base={}, overrides=["model.dropout=0.25"]).hash() != plain.hash()
    layers = [{"type": "conv", "filters": 4, "kernel": 3}, {"type": "relu"}, {"type": "flatten"},
              {"type": "linear", "units": 10}]
    written = [{**layers[0], "stride": 1, "padding": "valid"}, *layers[1:3], {**layers[3], "bias": True}]
    assert (load_experiment(base={"model": {"name": "layers", "layers": layers}}).hash()
            == load_experiment(base={"model": {"name": "layers", "layers": written}}).hash())


def _cnnlab(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CNNLAB_HOME": str(home), "PYTHONPATH": str(SRC), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "cnnlab", *args], cwd=home.parent, env=env,
                          capture_output=True, text=True, timeout=300)


def test_an_old_store_is_rehashed_and_its_run_reused_by_configs_with_or_without_the_default(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(OLD_STORE, home / "runs.sqlite")
    with sqlite3.connect(home / "runs.sqlite") as db:
        assert db.execute("SELECT config_hash FROM runs").fetchall() == [(OLD_HASH,)]

    shown = _cnnlab(home, "show", OLD_RUN)
    assert shown.returncode == 0, shown.stderr
    filled = load_experiment(base={"train": {"epochs": 1}}, overrides=["model.dropout=0.5"])
    assert f"{filled.hash()} (cell {filled.hash(include_seed=False)}; {OLD_HASH} before defaults were " \
        "filled in)" in " ".join(shown.stdout.split())
    with sqlite3.connect(home / "runs.sqlite") as db:
        assert db.execute("SELECT config_hash, legacy_hash, hash_version FROM runs").fetchall() == [
            (filled.hash(), OLD_HASH, 2)]

    # Two sweeps: one leaves the dropouts out, one sets them to their defaults. Neither trains.
    (tmp_path / "plain.toml").write_text(SWEEP.format(name="plain", grid=""))
    (tmp_path / "explicit.toml").write_text(SWEEP.format(
        name="explicit", grid='[grid]\n"model.dropout" = [0.5]\n"model.conv_dropout" = [0.5]'))
    for sweep in ("plain", "explicit"):
        done = _cnnlab(home, "sweep", str(tmp_path / f"{sweep}.toml"), "--workers", "1", "-q")
        assert done.returncode == 0, done.stderr
        assert "1 done" in done.stdout, done.stdout
    with RunStore(root=home) as store:
        assert [run.id for run in store.list_runs()] == [OLD_RUN]
        twin = store_run(store, {**filled.resolved(), "seed": 1}, curves(1, seed=1))
    compared = _cnnlab(home, "compare", OLD_RUN, twin, "-o", str(tmp_path / "curves.png"))
    assert compared.returncode == 0, compared.stderr
    assert "model.dropout" not in compared.stdout and "seed" in compared.stdout


def test_an_old_store_is_read_as_it_is_by_the_dashboard_and_sweep_status(tmp_path):
    """Read-only opens do not upgrade a store: the columns it lacks read as None, nothing is written."""
    from starlette.testclient import TestClient

    from cnnlab.store import open_read_only
    from cnnlab.ui import create_app, open_source

    shutil.copy(OLD_STORE, tmp_path / "runs.sqlite")
    before = (tmp_path / "runs.sqlite").read_bytes()
    with open_read_only(root=tmp_path) as store:
        assert store.read_only
        run = store.get_run(OLD_RUN)
        assert (run.config_hash, run.hash_version, run.legacy_hash) == (OLD_HASH, None, None)
        assert [r.id for r in store.list_runs()] == [OLD_RUN] and len(store.epochs(OLD_RUN)) == 1
    source = open_source(f"sqlite:///{tmp_path}/runs.sqlite")
    with TestClient(create_app(source), base_url="http://127.0.0.1") as client:
        listed = client.get("/api/runs")
        assert listed.status_code == 200, listed.text
        assert [r["id"] for r in listed.json()["runs"]] == [OLD_RUN]
        assert client.get(f"/api/runs/{OLD_RUN}").status_code == 200
    assert (tmp_path / "runs.sqlite").read_bytes() == before


def test_a_read_only_store_lacking_a_table_says_to_upgrade_it_in_one_line(tmp_path):
    import pytest

    from cnnlab.errors import StoreError
    from cnnlab.store import open_read_only

    shutil.copy(OLD_STORE, tmp_path / "runs.sqlite")
    with sqlite3.connect(tmp_path / "runs.sqlite") as db:
        db.execute("DROP TABLE tags")
    with pytest.raises(StoreError, match=r"was made by an earlier cnnlab: run any cnnlab command that "
                       r"writes \(e\.g\. `cnnlab runs`\) once to upgrade it") as caught:
        open_read_only(root=tmp_path)
    assert "\n" not in str(caught.value)
