"""The store's database engine: SQLite set up for several processes (WAL, busy timeout, BEGIN
IMMEDIATE for writes, foreign keys) or PostgreSQL, and SQLite's disk errors said as what they mean.

Every write transaction on SQLite starts with ``BEGIN IMMEDIATE`` (it takes the write lock up
front, so it waits out the busy timeout instead of failing with "database is locked" when a read
would have to become a write), and the journal is in WAL mode, so readers never block writers.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import NoSuchModuleError, OperationalError

from cnnlab.errors import StoreError
from cnnlab.store.liveness import grace_s
from cnnlab.store.urls import URL_EXAMPLE, sqlite_uri

SQLITE_BUSY_TIMEOUT_S = 30.0
READ_ONLY = ("it is read-only (its file or folder cannot be written): this command needs to write "
             "to it; use a writable store (CNNLAB_HOME or --store)")
OPENED_READ_ONLY = ("it is opened read-only (the dashboard and sweep status only read): open it "
                    "writable to change it")
SQLITE_DISK = re.compile(r"readonly database|disk is full|unable to open database file|disk I/O error")
json_dumps = partial(json.dumps, allow_nan=False)


def existing_sqlite(url: URL) -> bool:
    """A SQLite store in a file that exists (not in memory, not a ``file:`` URI)."""
    return (url.get_backend_name() == "sqlite" and bool(url.database) and url.database != ":memory:"
            and not url.database.startswith("file:") and Path(url.database).is_file())


def unwritable_sqlite(url: URL) -> bool:
    """An existing SQLite store file that this process cannot write, or whose folder it cannot
    write (SQLite's WAL needs files beside it)."""
    if not existing_sqlite(url):
        return False
    path = Path(str(url.database))
    return not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))


def make_engine(url: URL, shown: str, read_only: bool = False) -> Engine:
    """An engine for ``url``; on SQLite with WAL, a busy timeout, foreign keys and BEGIN control.
    ``read_only``: the SQLite file is opened immutable, for reading only: no -shm or -wal is made
    or mapped (a shared-memory file that cannot be written crashed SQLite with SIGBUS when tried),
    so commits still in a WAL that was never checkpointed are not seen."""
    try:
        if url.get_backend_name() != "sqlite":
            # A process paused (SIGSTOP, a frozen VM) inside a transaction holds its row locks:
            # the server ends its session after the heartbeat grace, so another process can take
            # the run over, and the paused one's late writes fail (see RunStore.put_fenced).
            options = " ".join([*([str(url.query["options"])] if "options" in url.query else []),
                                f"-c idle_in_transaction_session_timeout={grace_s() * 1000}"])
            return create_engine(url.difference_update_query(["options"]), pool_pre_ping=True,
                                 json_serializer=json_dumps, connect_args={"options": options})
        if read_only:
            url = URL.create("sqlite", database=sqlite_uri(str(url.database)),
                             query={"mode": "ro", "immutable": "1", "uri": "true"})
        elif url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, json_serializer=json_dumps
        )
    except (NoSuchModuleError, ImportError) as exc:
        hint = ""
        if url.get_backend_name() == "postgresql":
            hint = " (install one: pip install 'psycopg[binary]', URL postgresql+psycopg://…)"
        raise StoreError(
            f"store URL {shown!r}: driver {url.get_driver_name()!r} is not available{hint}: "
            f"{exc}; use for example {URL_EXAMPLE}"
        ) from exc
    except OSError as exc:
        raise StoreError(
            f"store URL {shown!r}: cannot create its folder: {exc}; use for example {URL_EXAMPLE}"
        ) from exc
    event.listen(engine, "connect", _sqlite_on_connect_read_only if read_only else _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect_read_only(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    dbapi_connection.execute("PRAGMA query_only = ON")


def explain(exc: OperationalError) -> str:
    """SQLite's message for a disk or permission problem, said as what it means for the user."""
    message = str(exc.orig)
    if "readonly database" in message:
        return READ_ONLY
    if "disk is full" in message or "disk I/O error" in message:
        return ("no space left on its disk (or the disk refused a write): free some space and run "
                "the command again")
    if "unable to open database file" in message:
        return ("its file cannot be opened or created (folder missing, not writable, or no space "
                "left): check the folder, or use another store (CNNLAB_HOME or --store)")
    return message


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take BEGIN out of the sqlite3 module's hands (we emit it in _sqlite_on_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    cursor.execute("PRAGMA foreign_keys = ON")
    _set_wal(cursor)
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _set_wal(cursor: Any) -> None:
    """Switch to WAL (persistent in the file). While several processes open a new store at once,
    SQLite can refuse the switch with "database is locked" without waiting on the busy timeout
    (seen in CI with four processes), so it is retried until that timeout has passed."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    delay = 0.01
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _sqlite_on_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get("cnnlab_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")
