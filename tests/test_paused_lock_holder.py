"""PostgreSQL: a process paused while it holds a run's row lock (inside the checkpoint rename) does
not block a take-over for longer than the heartbeat grace: the server ends its idle transaction,
another process takes the run over and writes its checkpoint, and when the paused one resumes its
late rename is undone (LeaseLost), leaving the new owner's checkpoint in place."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from test_sweep_postgres import postgres  # noqa: F401 (the server fixture)

from cnnlab.store import RunStore

# Process A: holds the run, and stops itself (SIGSTOP, as a frozen machine would) at its first
# rename inside RunStore.put_fenced, with the run's row locked.
PAUSED = textwrap.dedent("""
    import os, signal, sys
    from cnnlab.errors import LeaseLost
    from cnnlab.store import RunStore

    url, root, run_id, lease = sys.argv[1:]
    store = RunStore(url, root=root)
    target = store.checkpoint_path(run_id)
    staged = target.with_name(".a.staged")
    staged.write_bytes(b"written by A, the paused process")
    real = os.replace

    def paused(source, destination):
        os.replace = real
        print("holding the row lock", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)
        real(source, destination)

    os.replace = paused
    try:
        store.put_fenced(run_id, int(lease), staged, target, store.previous_checkpoint_path(run_id))
    except LeaseLost as exc:
        print(f"lost: {exc}", flush=True)
        sys.exit(3)
""")


def test_a_paused_lock_holder_is_ended_and_its_late_rename_undone(postgres, tmp_path):  # noqa: F811
    url = postgres.replace("postgresql://", "postgresql+psycopg://")
    store = RunStore(url, root=tmp_path)
    run_id = store.create_run(name="paused", config={}, config_hash="h", cell_hash="c", seed=0,
                              host="here", versions={})
    lease = store.acquire(run_id)
    target = store.checkpoint_path(run_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"epoch 1")
    paused = subprocess.Popen([sys.executable, "-c", PAUSED, url, str(tmp_path), run_id, str(lease)],
                              env={**os.environ, "CNNLAB_HEARTBEAT_GRACE_S": "2"},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert paused.stdout is not None
        assert paused.stdout.readline().strip() == "holding the row lock"
        started = time.monotonic()
        new_lease = store.acquire(run_id)  # waits for the row lock: until the server ends A's session
        waited = time.monotonic() - started
        assert new_lease == lease + 1 and 1.5 < waited < 30, waited
        staged = target.with_name(".b.staged")
        staged.write_bytes(b"written by B, the new owner")
        store.put_fenced(run_id, new_lease, staged, target, store.previous_checkpoint_path(run_id))
        os.kill(paused.pid, signal.SIGCONT)
        output = paused.communicate(timeout=60)[0]
    finally:
        if paused.poll() is None:
            paused.kill()
    assert paused.returncode == 3, output
    assert "lost its hold on the run" in output
    assert target.read_bytes() == b"written by B, the new owner"
    # A's file is nowhere (its rename of B's file to the previous one's place was undone too), and
    # the previous checkpoint B kept is back in its place.
    assert not any(b"paused process" in f.read_bytes() for f in target.parent.iterdir() if f.is_file())
    previous = store.previous_checkpoint_path(run_id)
    assert previous.read_bytes() == b"epoch 1"
    assert sorted(f.name for f in target.parent.iterdir()) == sorted([target.name, previous.name])
