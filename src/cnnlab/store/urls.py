"""Every store and sweep-storage URL parsed in one place: run store URLs, the sweep's storage
(a database URL or a journal file path), the default store, and the read-only form of a URL."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from urllib.parse import quote, unquote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from cnnlab.errors import StoreError, one_of

DB_FILE = "runs.sqlite"
URL_EXAMPLE = "sqlite:///cnnlab-runs/runs.sqlite or postgresql+psycopg://user:password@host/cnnlab"
DIALECTS = ("sqlite", "postgresql")


def default_root() -> Path:
    """The store folder: ``$CNNLAB_HOME`` if set, else ``./cnnlab-runs``."""
    return Path(os.environ.get("CNNLAB_HOME") or "cnnlab-runs").expanduser().absolute()


def default_store_url(root: Path | None = None) -> URL:
    """The SQLite store in ``root`` (default: `default_root`)."""
    return URL.create("sqlite", database=str((root or default_root()) / DB_FILE))


def store_url(url: str | URL) -> URL:
    """A run store URL, checked: SQLite or PostgreSQL (``postgresql://`` gets a driver that is
    installed, psycopg 3 unless psycopg2 is there); StoreError naming the URL otherwise."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"store URL {url!r} is not a database URL; use for example {URL_EXAMPLE}") from None
    backend = parsed.get_backend_name()
    if backend not in DIALECTS:
        shown = parsed.render_as_string(hide_password=True)
        raise StoreError(
            f"store URL {shown!r}: database {backend!r} {one_of(DIALECTS)}; use for example {URL_EXAMPLE}"
        )
    return _installed_driver(parsed)


def database_url(text: str) -> str | None:
    """A sweep storage ``text`` as an SQLAlchemy URL whose driver is installed; None when ``text``
    is not a URL (a journal file path)."""
    if "://" not in text:
        return None
    try:
        url = make_url(text)
    except ArgumentError:
        raise StoreError(f"storage {text!r} is not a database URL or a file path") from None
    return _installed_driver(url).render_as_string(hide_password=False)


def read_only_url(url: URL) -> URL:
    """``url`` opened so the database refuses writes: SQLite's ``mode=ro`` URI, PostgreSQL with every
    transaction read-only (a libpq option the server enforces)."""
    if url.get_backend_name() == "sqlite":
        database = sqlite_file(url) or Path(url.database or "").expanduser().absolute()
        return URL.create("sqlite", database=sqlite_uri(database), query={"mode": "ro", "uri": "true"})
    options = url.query.get("options", ())
    kept = [options] if isinstance(options, str) else list(options)
    return url.update_query_dict({"options": " ".join([*kept, "-c default_transaction_read_only=on"])})


def sqlite_uri(path: str | Path) -> str:
    """``path`` as the path of a SQLite ``file:`` URI: percent-encoded, since SQLite reads ``?``,
    ``#`` and ``%`` in it as URI syntax (a folder ``a?b`` would open the file ``a``)."""
    return f"file:{quote(str(path))}"


def sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite store URL (``file:`` URIs included, their path percent-decoded); None
    for PostgreSQL or in memory."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    database = url.database
    if database.startswith("file:"):
        database = unquote(database.removeprefix("file:").split("?")[0].split("#")[0])
    return Path(database).expanduser().absolute()


def _installed_driver(url: URL) -> URL:
    if url.drivername == "postgresql" and importlib.util.find_spec("psycopg2") is None:
        return url.set(drivername="postgresql+psycopg")
    return url
