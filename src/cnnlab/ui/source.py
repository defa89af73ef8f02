"""The dashboard's data source: the run store and the sweeps' storage, opened so nothing can be written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from cnnlab.errors import StoreError
from cnnlab.store import RunStore, default_root
from cnnlab.store.runs import DB_FILE, URL_EXAMPLE

if TYPE_CHECKING:  # cnnlab.sweep imports torch: loaded when a sweep page first asks for it
    from cnnlab.sweep import Location


@dataclass(frozen=True)
class Source:
    """A read-only run store, the sweeps' storage (read-only too) and the folder artifacts live in."""

    store: RunStore
    root: Path
    shown: str  # the store URL for people, password hidden
    store_url: str
    storage: str | None

    @property
    def location(self) -> Location:
        """Where the sweeps' Optuna studies live, with this read-only store beside them."""
        from cnnlab.sweep import Location

        return Location(storage=self.storage, store=self.store_url, root=str(self.root))


def open_source(store: str | None = None, storage: str | None = None, artifacts: str | None = None) -> Source:
    """Open the run store read-only: SQLite as ``mode=ro`` (the file must exist; SQLite then refuses
    every write), PostgreSQL with ``default_transaction_read_only`` (the server refuses writes).
    ``store`` defaults to the ``storage`` database, else the SQLite store in ``$CNNLAB_HOME`` or
    ./cnnlab-runs, as for `cnnlab sweep`."""
    text = store or (storage if storage and "://" in storage else None)
    url = _parse(text) if text else URL.create("sqlite", database=str(default_root() / DB_FILE))
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite":
        database = Path(url.database or "").expanduser().absolute()
        if not url.database or url.database == ":memory:" or not database.is_file():
            raise StoreError(f"no run store at {shown}: {database} is not a file (train a run first, or "
                             f"give --store; a store URL looks like {URL_EXAMPLE})")
        root = database.parent
    else:
        root = default_root()
    if artifacts:
        root = Path(artifacts).expanduser().absolute()
    read_only = _read_only(url)
    opened = RunStore(read_only, root=root)
    if storage and "://" in storage:
        storage = _read_only(_parse(storage)).render_as_string(hide_password=False)
    return Source(opened, root, shown, read_only.render_as_string(hide_password=False), storage)


def _parse(text: str) -> URL:
    """``text`` as a URL; ``postgresql://`` gets a driver that is installed, as for `cnnlab sweep`."""
    try:
        url = make_url(text)
    except ArgumentError:
        raise StoreError(f"store URL {text!r} is not a database URL; use for example {URL_EXAMPLE}") from None
    if url.drivername == "postgresql":
        from cnnlab.sweep.storage import database_url

        url = make_url(database_url(text) or text)
    return url


def _read_only(url: URL) -> URL:
    """``url`` opened so the database refuses writes: SQLite's ``mode=ro`` URI, PostgreSQL with every
    transaction read-only (a libpq option the server enforces)."""
    if url.get_backend_name() == "sqlite":
        database = Path(url.database or "").expanduser().absolute()
        return URL.create("sqlite", database=f"file:{database}", query={"mode": "ro", "uri": "true"})
    return url.update_query_dict({"options": "-c default_transaction_read_only=on"})
