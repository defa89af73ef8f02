"""A distributed sweep on a real PostgreSQL server: queued by `cnnlab sweep --storage`, drained by
two `cnnlab worker` processes, one of them killed with SIGKILL in the middle of a run.

The test starts its own server (initdb + pg_ctl, as the `postgres` user when run as root) in a
temporary folder, on 127.0.0.1 and a free port, and stops it afterwards. It skips only where
Debian's PostgreSQL server binaries are missing (`apt-get install postgresql`);
CNNLAB_REQUIRE_POSTGRES=1 turns that skip into a failure.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import psycopg
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.store import RunStore
from cnnlab.store.checkpoint import load_checkpoint


def _pg_bin() -> Path | None:
    candidates = [os.environ.get("CNNLAB_PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))[::-1]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).parent))
    for folder in candidates:
        if folder and (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


PG_BIN = _pg_bin()
if PG_BIN is None and os.environ.get("CNNLAB_REQUIRE_POSTGRES") == "1":
    raise RuntimeError("CNNLAB_REQUIRE_POSTGRES=1 but no PostgreSQL server binaries (initdb, pg_ctl) found")
pytestmark = pytest.mark.skipif(
    PG_BIN is None, reason="PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A fresh server; yields the URL of an empty database `cnnlab` on it."""
    assert PG_BIN is not None
    folder = Path(tempfile.mkdtemp(prefix="cnnlab-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data, log, port = folder / "data", folder / "server.log", _free_port()

    def run(*args: str) -> None:
        subprocess.run([*as_postgres, *args], check=True, capture_output=True, timeout=120)

    run(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
    try:
        run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start")
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE cnnlab")
        yield f"postgresql://postgres@127.0.0.1:{port}/cnnlab"
    finally:
        subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


SWEEP = """
name = "distributed"
seeds = [0, 1]

[base]
data = { dataset = "mnist-sample", train_limit = 768, test_limit = 64, val = 0.02 }
model = { name = "book_cnn" }
train = { optimizer = "adam", lr = 0.003, epochs = 4, batch_size = 32, eval_test = false }

[grid]
"train.lr" = [0.003, 0.002]
"""


def test_two_workers_on_postgres_one_killed_mid_run(postgres, tmp_path):
    home = tmp_path / "home"  # checkpoints: shared by both workers (same machine here)
    env = {**os.environ, "CNNLAB_HOME": str(home), "COLUMNS": "200"}
    sweep_file = tmp_path / "distributed.toml"
    sweep_file.write_text(SWEEP)
    queued = CliRunner(env={"CNNLAB_HOME": str(home)}).invoke(
        app, ["sweep", str(sweep_file), "--storage", postgres, "--workers", "0"])
    assert queued.exit_code == 0, queued.output
    assert "queued 4 of 4 runs" in queued.output

    command = [sys.executable, "-m", "cnnlab", "worker", "--storage", postgres, "--study", "distributed",
               "--workers", "1", "--threads", "1", "--quiet"]
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    store = RunStore(postgres.replace("postgresql://", "postgresql+psycopg://"), root=home)
    study = optuna.load_study(study_name="distributed", storage=postgres.replace(
        "postgresql://", "postgresql+psycopg://"))
    victim = _kill_a_worker_mid_run(workers, store, study)
    try:
        for proc in workers:
            proc.wait(timeout=240)
    finally:
        for proc in workers:
            proc.kill()
    survivor = next(p for p in workers if p.pid != victim)
    assert survivor.returncode == 0, survivor.stdout.read() if survivor.stdout else ""

    runs = store.list_runs(sweep="distributed")
    assert len(runs) == 4  # the killed run was continued, not started again
    assert len({r.config_hash for r in runs}) == 4
    for run in runs:
        assert run.status == "completed"
        assert [e["epoch"] for e in store.epochs(run.id)] == [1, 2, 3, 4]
    trials = study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["config_hash"] for t in complete) == sorted(r.config_hash for r in runs)
    died = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.user_attrs["outcome"] for t in died] == ["worker died"]
    assert sum(t.user_attrs["outcome"] == "resumed" for t in complete) == 1

    status = CliRunner(env={"CNNLAB_HOME": str(home)}).invoke(
        app, ["sweep-status", "distributed", "--storage", postgres])
    assert status.exit_code == 0, status.output
    assert "4 runs — 4 done" in status.output


def _kill_a_worker_mid_run(workers: list[subprocess.Popen], store: RunStore, study: optuna.Study) -> int:
    """SIGKILL the worker of a run that has stored an epoch but is far from done; its pid."""
    pids = {p.pid: p for p in workers}
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for trial in study.get_trials(states=(TrialState.RUNNING,)):
            pid = int(trial.user_attrs.get("worker", "/0").rsplit("/", 1)[1])
            run_id = trial.user_attrs.get("run_id")
            if pid in pids and run_id and 1 <= len(store.epochs(run_id)) <= 2:
                os.kill(pid, signal.SIGKILL)
                pids[pid].wait(timeout=30)
                return pid
        time.sleep(0.05)
    raise AssertionError("no worker was ever seen in the middle of a run")


PAUSED_SWEEP = """
name = "paused"
seeds = [0, 1]

[base]
data = { dataset = "mnist-sample", train_limit = 480, test_limit = 32, val = 0.1 }
model = { name = "book_cnn" }
train = { optimizer = "adam", epochs = 3, batch_size = 8, eval_test = false }

[grid]
"train.lr" = [0.01, 0.03]
"""


def test_a_paused_worker_cannot_damage_the_run_another_worker_took_over(postgres, tmp_path):
    """(Epochs of ~50 steps: long enough on a quiet machine for the test to see a run with exactly
    one epoch stored; with 11 steps both workers could finish before it looked.)
    SIGSTOP a worker once its run has one epoch stored, let the other worker take the run over
    after the (shortened) grace period and complete it, then SIGCONT: the paused worker's next
    write is fenced off, so the completed run keeps its rows and checkpoint, and the paused
    worker says so in one line and exits cleanly."""
    home = tmp_path / "home"
    env = {**os.environ, "CNNLAB_HOME": str(home), "COLUMNS": "200", "CNNLAB_HEARTBEAT_GRACE_S": "4"}
    sweep_file = tmp_path / "paused.toml"
    sweep_file.write_text(PAUSED_SWEEP)
    queued = CliRunner(env={"CNNLAB_HOME": str(home), "CNNLAB_HEARTBEAT_GRACE_S": "4"}).invoke(
        app, ["sweep", str(sweep_file), "--sweep-storage", postgres, "--workers", "0"])
    assert queued.exit_code == 0, queued.output

    command = [sys.executable, "-m", "cnnlab", "worker", "--sweep-storage", postgres, "--study", "paused",
               "--workers", "1", "--threads", "1", "--quiet"]
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    url = postgres.replace("postgresql://", "postgresql+psycopg://")
    store = RunStore(url, root=home)
    study = optuna.load_study(study_name="paused", storage=url)
    paused: subprocess.Popen | None = None
    try:
        paused, run_id = _pause_a_worker_after_one_epoch(workers, store, study, postgres)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            run = store.get_run(run_id)
            if run.lease is not None and run.lease >= 2 and run.status == "completed":
                break
            time.sleep(0.2)
        taken = store.get_run(run_id)
        assert (taken.status, taken.lease) == ("completed", 2)
        rows = store.epochs(run_id)
        checkpoint = store.checkpoint_path(run_id).read_bytes()
        paused.send_signal(signal.SIGCONT)
        outputs = {proc.pid: proc.communicate(timeout=240)[0] for proc in workers}
    finally:
        for proc in workers:
            proc.kill()

    assert all(proc.returncode == 0 for proc in workers), outputs
    lost_lines = [line for line in outputs[paused.pid].splitlines() if "taken over" in line]
    assert len(lost_lines) == 1 and run_id in lost_lines[0], outputs[paused.pid]
    assert "Traceback" not in outputs[paused.pid]
    after = store.get_run(run_id)
    assert (after.status, after.epochs_done, after.lease) == ("completed", 3, 2)
    assert store.epochs(run_id) == rows  # not one row rewritten by the paused worker
    assert store.checkpoint_path(run_id).read_bytes() == checkpoint
    assert load_checkpoint(store.checkpoint_path(run_id))["epoch"] == 3
    runs = store.list_runs(sweep="paused")
    assert len(runs) == 4 and {r.status for r in runs} == {"completed"}
    assert all([e["epoch"] for e in store.epochs(r.id)] == [1, 2, 3] for r in runs)


def _pause_a_worker_after_one_epoch(workers: list[subprocess.Popen], store: RunStore, study: optuna.Study,
                                    postgres: str) -> tuple[subprocess.Popen, str]:
    """SIGSTOP the worker of a run that has stored exactly one epoch; (that worker, the run id).
    A worker that moved on before the signal landed, or was stopped inside a transaction on the
    run's row, is continued and another moment is chosen."""
    pids = {p.pid: p for p in workers}
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for trial in study.get_trials(states=(TrialState.RUNNING,)):
            pid = int(trial.user_attrs.get("worker", "/0").rsplit("/", 1)[1])
            run_id = trial.user_attrs.get("run_id")
            if pid in pids and run_id and len(store.epochs(run_id)) == 1:
                os.kill(pid, signal.SIGSTOP)
                time.sleep(0.3)
                if len(store.epochs(run_id)) == 1 and not _row_locked(postgres, run_id):
                    return pids[pid], run_id
                os.kill(pid, signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("no worker was ever seen with one epoch stored")


def _row_locked(postgres: str, run_id: str) -> bool:
    with psycopg.connect(postgres) as conn:
        try:
            conn.execute("SELECT 1 FROM runs WHERE id = %s FOR UPDATE NOWAIT", (run_id,))
        except psycopg.errors.LockNotAvailable:
            return True
        finally:
            conn.rollback()
    return False
