"""A damaged SQLite run store found before anything is read from it or written to it: a file that is
not a database (random bytes, another kind of file) or one that is truncated or corrupt. One line
names the file, says what is wrong and how to recover what it holds; the file is not touched."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy.engine import URL

from cnnlab.errors import StoreError
from cnnlab.store.urls import sqlite_file, sqlite_uri

_HEADER = b"SQLite format 3\x00"


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite store URL (plain path or ``file:`` URI), None for other databases,
    memory and files that do not exist yet."""
    path = sqlite_file(url)
    return path if path is not None and path.is_file() else None


def damage(path: Path, immutable: bool = False) -> str | None:
    """What is wrong with the SQLite file at ``path``, or None when it reads as a whole database
    (SQLite's header, then its quick_check over every page). Opened read-only; ``immutable``
    (a file on a read-only disk) also keeps SQLite from looking for a -wal or -shm file."""
    with open(path, "rb") as handle:
        header = handle.read(100)
    if not header:
        return None  # an empty file is a new, empty database to SQLite
    if not header.startswith(_HEADER):
        return "is not a SQLite database (its first bytes are not SQLite's header)"
    if len(header) < 100:
        return "is truncated (shorter than SQLite's 100-byte header)"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    valid_count = header[24:28] == header[92:96]
    size = path.stat().st_size
    if page_size and size % page_size:
        return f"is truncated or damaged ({size:,} bytes is not a whole number of {page_size:,}-byte pages)"
    # The header's page count is only a hint (a checkpoint writes page 1 before the pages it
    # adds): it names truncation once SQLite has found the file damaged.
    short = valid_count and size < pages * page_size
    cut = f"is truncated ({size:,} of {pages * page_size:,} bytes)" if short else ""
    try:
        rows = _quick_check(path, immutable)
    except sqlite3.OperationalError:
        # SQLite could not read it beside its -wal/-shm (a full or read-only disk): read the file
        # alone; the store's own open then says what is wrong with the disk.
        try:
            rows = _quick_check(path, True)
        except sqlite3.DatabaseError as exc:
            return _damaged(cut, exc)
    except sqlite3.DatabaseError as exc:
        return _damaged(cut, exc)
    problems = [str(row[0]).splitlines()[0] for row in rows if row and row[0] != "ok"]
    return f"{cut or 'is damaged'} ({' · '.join(problems)})" if problems else None


def _quick_check(path: Path, immutable: bool) -> list[tuple[object, ...]]:
    uri = f"{sqlite_uri(path.absolute())}?mode=ro" + ("&immutable=1" if immutable else "")
    connection = sqlite3.connect(uri, uri=True, timeout=30)
    try:
        return connection.execute("PRAGMA quick_check(3)").fetchall()
    finally:
        connection.close()


def _damaged(cut: str, exc: sqlite3.DatabaseError) -> str | None:
    """What a SQLite error says about the file: damaged, or None for errors of the disk or of
    access (the store's own open explains those)."""
    text = str(exc)
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return f"{cut or 'is damaged'} ({text})"
    return None


def refuse_damaged(path: Path, immutable: bool = False) -> None:
    """StoreError (one line: the file, what is wrong, how to recover) when the file is damaged."""
    wrong = damage(path, immutable)
    if wrong is None:
        return
    if wrong.startswith("is not a SQLite database"):
        raise StoreError(f"run store {path} {wrong}; cnnlab changed nothing: move it away (or point "
                         "CNNLAB_HOME or --store elsewhere) to start a new store")
    recovered = path.with_name(f"{path.stem}.recovered{path.suffix}")
    raise StoreError(f"run store {path} {wrong}; cnnlab changed nothing: recover what it still holds "
                     f"with: sqlite3 {path} \".recover\" | sqlite3 {recovered} (then use --store "
                     f"sqlite:///{recovered}), or move the file away to start a new store")
