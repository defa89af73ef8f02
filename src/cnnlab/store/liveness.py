"""Is the process that trains a ``running`` run still there? Host, pid and heartbeat decide.

On the run's own host the pid is asked directly; elsewhere only the heartbeat can tell. Either
way a heartbeat older than the grace period (``CNNLAB_HEARTBEAT_GRACE_S``, 60 s by default: four
missed beats) means the process is gone or paused, and its run may be taken over. The same grace
decides when Optuna fails a silent sweep worker's trial."""

from __future__ import annotations

import contextlib
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

from cnnlab.errors import StoreError
from cnnlab.store.record import RunRecord

GONE = "interrupted (process gone)"


def grace_s() -> int:
    """Seconds without a heartbeat after which a run's (or a sweep worker's) process counts as gone."""
    return max(1, int(os.environ.get("CNNLAB_HEARTBEAT_GRACE_S") or 60))


def heartbeat_interval_s() -> int:
    """Seconds between heartbeats: a quarter of the grace period."""
    return max(1, grace_s() // 4)


def hostname(record: RunRecord) -> str:
    """The machine a run was last trained on (its ``host`` up to the description in brackets)."""
    return record.host.split(" (", 1)[0]


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine is alive (a killed child not yet reaped by its
    parent, a zombie, is not)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
            return False
    return True


def process_gone(record: RunRecord, now: datetime | None = None) -> bool:
    """True for a ``running`` run whose process has died or stopped beating; runs stored before
    pids were kept (no pid) cannot be judged and count as alive."""
    if record.status != "running" or record.pid is None:
        return False
    if hostname(record) == socket.gethostname() and not pid_alive(record.pid):
        return True
    if record.heartbeat_at is None:
        return False
    age = ((now or datetime.now(UTC)) - record.heartbeat_at).total_seconds()
    return age > grace_s()


def shown_status(record: RunRecord) -> str:
    """The status to show people: ``interrupted (process gone)`` for a dead ``running`` run."""
    return GONE if process_gone(record) else record.status


def refuse_if_alive(record: RunRecord) -> None:
    """StoreError naming host and pid when a live process is training the run."""
    if record.status == "running" and record.pid is not None and not process_gone(record):
        raise StoreError(f"run {record.id} is being trained right now by process {record.pid} on "
                         f"{hostname(record)}; stop that process first, or wait until it has ended")
