"""A local sweep's journal file, checked before Optuna reads it: a file cut mid-line, or with
bytes that are not journal records after some point, is damaged. Commands that only read a sweep
show it from the records before the damage (the run store fills in the rest); `cnnlab sweep` and
`cnnlab worker` repair it: the damaged file is kept beside it, and the journal is cut back to its
readable records, from which the sweep carries on, reusing every run the store holds."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from optuna.storages.journal import BaseJournalBackend, JournalFileSymlinkLock
from optuna.storages.journal._file import LOCK_FILE_SUFFIX, get_lock_file
from rich.console import Console

from cnnlab.errors import StoreError
from cnnlab.files import write_atomic

_notice = Console(stderr=True, soft_wrap=True)
CUT = "cut mid-line"


@dataclass(frozen=True)
class JournalDamage:
    """Where a journal stops being readable: its readable records, the 1-based line and why."""

    path: Path
    records: list[dict[str, Any]]
    good_bytes: int
    line: int
    reason: str

    def describe(self) -> str:
        """``sweeps journal FILE is damaged at line N (why)``."""
        return f"sweeps journal {self.path} is damaged at line {self.line:,} ({self.reason})"


# The last scan of each journal, kept while its size and modification time are unchanged (a live
# view reads the sweep every second).
_scanned: dict[Path, tuple[tuple[int, int], JournalDamage | None]] = {}


def journal_damage(path: Path) -> JournalDamage | None:
    """The damage of the journal at ``path``, None when every line is a whole JSON record. Read
    without the journal's lock (a read-only view needs no write access and never blocks a
    worker): a last line without its end while a worker holds the lock, or one that grew while it
    was read, is being appended now, not damage (Optuna reads the records before it)."""
    stat = path.stat()
    stamp = (stat.st_size, stat.st_mtime_ns)
    cached = _scanned.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    data = path.read_bytes()
    damage = _scan(path, data)
    # Only the last line can lack its end. The lock is looked at before the size: a worker that
    # was appending while the file was read either holds it still or has made the file longer.
    if damage is not None and damage.reason == CUT and (_lock_held(path) or path.stat().st_size != len(data)):
        return None  # being written: not cached, the next read sees the whole line
    _scanned[path] = (stamp, damage)
    return damage


def _lock_held(path: Path) -> bool:
    """Whether a process holds the journal's Optuna lock (its symlink exists) right now."""
    return os.path.lexists(str(path) + LOCK_FILE_SUFFIX)


def _scan(path: Path, data: bytes) -> JournalDamage | None:
    records: list[dict[str, Any]] = []
    offset = 0
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        if not line.endswith(b"\n"):
            return JournalDamage(path, records, offset, number, CUT)
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            record = None
        if not isinstance(record, dict) or "op_code" not in record:
            return JournalDamage(path, records, offset, number, "not a journal record")
        records.append(record)
        offset += len(line)
    return None


def repair_journal(path: Path) -> tuple[JournalDamage, Path] | None:
    """Keep a damaged journal's file beside it and cut the journal back to its readable records
    (atomically, under its lock); returns the damage and where the damaged file was kept, or None
    when the journal is whole."""
    with get_lock_file(JournalFileSymlinkLock(str(path))):
        data = path.read_bytes()
        damage = _scan(path, data)
        if damage is None:
            return None
        kept = path.with_name(f"{path.name}.damaged-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}")
        shutil.copy2(path, kept)
        write_atomic(path, data[:damage.good_bytes])
    return damage, kept


def say(damage: JournalDamage, repaired: Path | None) -> None:
    """One line on stderr: what is damaged, and what cnnlab did about it."""
    if repaired is not None:
        done = (f"kept as {repaired.name}; the sweep goes on from its {len(damage.records):,} readable "
                "records, and runs the store already holds are reused, not trained again")
    else:
        done = (f"showing the sweep from its {len(damage.records):,} readable records and the run "
                "store (`cnnlab sweep FILE` repairs the journal)")
    _notice.print(f"warning: {damage.describe()}: {done}", markup=False, highlight=False)


# The damaged journals already said in this process (path, size, modification time): a live view
# opens the sweep on every request and poll, and says a damage once, until the file changes.
_said: set[tuple[Path, int, int]] = set()


def say_once(damage: JournalDamage) -> None:
    """`say` a damage left unrepaired, once per process for each state of its file."""
    stat = damage.path.stat()
    key = (damage.path, stat.st_size, stat.st_mtime_ns)
    if key not in _said:
        _said.add(key)
        say(damage, None)


class ReadableRecords(BaseJournalBackend):
    """A journal's readable records, in memory, for commands that only read: nothing is written."""

    def __init__(self, damage: JournalDamage):
        self._records = damage.records
        self._describe = damage.describe()

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        """The records from ``log_number_from`` on."""
        yield from self._records[log_number_from:]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        """Refused: the damaged journal is only repaired by `cnnlab sweep` or `cnnlab worker`."""
        raise StoreError(f"{self._describe}: run `cnnlab sweep FILE` to repair it before changing the sweep")
