"""The dashboard's data source: the run store and the sweeps' storage, opened so nothing can be written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from cnnlab.store import RunStore, open_read_only
from cnnlab.store.urls import database_url, default_store_url, read_only_url, store_url

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
    """Open the run store read-only (`cnnlab.store.open_read_only`). ``store`` defaults to the
    ``storage`` database, else the SQLite store in ``$CNNLAB_HOME`` or ./cnnlab-runs, as for
    `cnnlab sweep`; ``artifacts`` is the folder the run files are in."""
    text = store or (storage if storage and "://" in storage else None)
    url = store_url(text) if text else default_store_url()
    opened = open_read_only(url, Path(artifacts).expanduser().absolute() if artifacts else None)
    if storage and "://" in storage:
        read_only = read_only_url(make_url(database_url(storage) or storage))
        storage = read_only.render_as_string(hide_password=False)
    return Source(opened, opened.root, url.render_as_string(hide_password=True),
                  read_only_url(url).render_as_string(hide_password=False), storage)
