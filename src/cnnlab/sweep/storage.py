"""Where a sweep lives: the Optuna storage (a journal file locally, a database when shared) and
the run store beside it."""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy.engine import make_url

from cnnlab.errors import StoreError
from cnnlab.store import RunStore, default_root, open_read_only
from cnnlab.store.liveness import grace_s, heartbeat_interval_s
from cnnlab.store.urls import database_url, default_store_url, sqlite_file, store_url
from cnnlab.sweep.retry import RetryFailed

JOURNAL_FILE = "sweeps.journal"


@dataclass(frozen=True)
class Location:
    """The storages a sweep uses, as plain strings so spawned worker processes can open them.

    ``storage``: a database URL (PostgreSQL for sweeps shared between machines) or a journal file
    path; None means ``ROOT/sweeps.journal``. ``store``: the run store URL; None means the
    storage's database when it is one, else the default SQLite store in ROOT. ``root``: the
    folder for checkpoints (``--artifacts``; shared by all workers of a distributed sweep)."""

    storage: str | None = None
    store: str | None = None
    root: str | None = None

    @property
    def root_path(self) -> Path:
        """The artifacts folder (checkpoints), ``$CNNLAB_HOME`` or ./cnnlab-runs by default."""
        return Path(self.root).expanduser().absolute() if self.root else default_root()

    @property
    def storage_url(self) -> str | None:
        """The storage as a database URL with an installed driver, or None for a journal file."""
        return database_url(self.storage) if self.storage else None

    @property
    def journal_path(self) -> Path:
        """The journal file of a local sweep."""
        return Path(self.storage).expanduser().absolute() if self.storage else self.root_path / JOURNAL_FILE

    def describe(self) -> str:
        """The storage for messages, password hidden."""
        url = self.storage_url
        if url is not None:
            return make_url(url).render_as_string(hide_password=True)
        return str(self.journal_path)

    def open_storage(self, create: bool = True, repair: bool = True) -> optuna.storages.BaseStorage | None:
        """The Optuna storage; None when ``create`` is false and a local journal does not exist.
        A damaged journal (`cnnlab.sweep.journal`) is said in one line and, with ``repair``, cut
        back to its readable records (the damaged file kept beside it); without, it is read from
        those records and nothing can be written to it (said once per process until it changes)."""
        url = self.storage_url
        if url is None:
            path = self.journal_path
            if not create and not path.exists():
                return None
            path.parent.mkdir(parents=True, exist_ok=True)
            from optuna.storages.journal import JournalFileBackend

            from cnnlab.sweep.journal import ReadableRecords, journal_damage, repair_journal, say, say_once

            if path.exists() and (damage := journal_damage(path)) is not None:
                if not repair:
                    say_once(damage)
                    return optuna.storages.JournalStorage(ReadableRecords(damage))
                if (repaired := repair_journal(path)) is not None:
                    say(*repaired)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        return _rdb_storage(url, self.describe())

    def check_writable(self) -> None:
        """Fail before any worker starts when the sweep cannot be written: its local journal (and
        the lock file beside it), or the run store and its run folders."""
        if self.storage_url is None:
            path = self.journal_path
            try:
                with open(path, "ab"), tempfile.TemporaryFile(dir=path.parent):
                    pass
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, str(path)) from exc
        with contextlib.closing(self.open_store()) as store:
            store.check_writable()

    def has_store(self) -> bool:
        """Whether the run store exists (a SQLite file is made by the first command that writes)."""
        url = self.store or self.storage_url
        database = sqlite_file(store_url(url) if url else default_store_url(self.root_path))
        return database is None or database.is_file()

    def open_store(self, read_only: bool = False) -> RunStore:
        """The run store; its run folders go to ``root`` when given, else where RunStore puts them.
        ``read_only``: opened so nothing can be written (`cnnlab.store.open_read_only`)."""
        url = self.store
        if url is None and self.storage_url is not None:
            url = self.storage_url
        from cnnlab.checks import upgrade_hashes

        root = self.root_path if self.root else None
        if read_only:
            return open_read_only(url, root)  # read as it is: hashes are upgraded by a writer
        store = RunStore(url, root=root)
        upgrade_hashes(store)  # runs stored before defaults were filled in are found by their config
        return store


def _rdb_storage(url: str, shown: str) -> optuna.storages.RDBStorage:
    # A worker without a heartbeat for the grace period is dead: its trial is failed and retried
    # (Optuna's heartbeat, database storages only; local workers are also checked by pid).
    options: dict[str, Any] = {"heartbeat_interval": heartbeat_interval_s(), "grace_period": grace_s()}
    # Optuna < 4.9 names the callback failed_trial_callback.
    key = ("heartbeat_stale_trial_callback"
           if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback") else "failed_trial_callback")
    options[key] = RetryFailed()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, **options)
    except Exception as exc:  # driver missing, server down, bad credentials: all reach the user
        raise StoreError(f"cannot open the sweep storage {shown}: {type(exc).__name__}: {exc}") from exc
