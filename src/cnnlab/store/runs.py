"""RunStore: every run's config, per-epoch metrics and artifacts in one SQL database.

SQLite (``root/runs.sqlite``) by default, PostgreSQL for clusters; only portable SQL is used,
except SQLite PRAGMAs and each dialect's own INSERT ... ON CONFLICT for upserts. Several
processes may write to one store at once: on SQLite every write transaction starts with
``BEGIN IMMEDIATE`` (it takes the write lock up front, so it waits out the busy timeout
instead of failing with "database is locked" when a read would have to become a write), and
the journal is in WAL mode, so readers never block writers.

Accuracies are fractions in [0, 1]. NaN and ±inf metrics are stored as NULL plus a
``nonfinite`` note on the row (SQLite turns NaN into NULL; JSON has no NaN) and come back as
``float("nan")`` / ``float("inf")``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import numbers
import os
import re
import secrets
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    Column,
    Engine,
    Float,
    Integer,
    String,
    Table,
    create_engine,
    delete,
    event,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from cnnlab.errors import StoreError, one_of
from cnnlab.store.schema import (
    EPOCH_METRICS,
    STATUSES,
    ArtifactRow,
    Base,
    EpochRow,
    RunRow,
    UTCDateTime,
)

DB_FILE = "runs.sqlite"
URL_EXAMPLE = "sqlite:///cnnlab-runs/runs.sqlite or postgresql+psycopg://user:password@host/cnnlab"
SQLITE_BUSY_TIMEOUT_S = 30.0
EXPORT_FORMATS = ("csv", "json")
_DIALECTS = ("sqlite", "postgresql")
_RUN_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_PG_SCHEMA_LOCK = 0x636E6E6C6162  # pg_advisory_xact_lock key serialising CREATE TABLE ("cnnlab")
_json_dumps = partial(json.dumps, allow_nan=False)


def default_root() -> Path:
    """The store folder: ``$CNNLAB_HOME`` if set, else ``./cnnlab-runs``."""
    return Path(os.environ.get("CNNLAB_HOME") or "cnnlab-runs").expanduser().absolute()


@dataclass(frozen=True)
class RunRecord:
    """One stored run as plain data (timestamps are timezone-aware UTC)."""

    id: str
    name: str | None
    status: str
    config: dict[str, Any]
    config_hash: str
    cell_hash: str
    seed: int
    host: str
    versions: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    epochs_done: int
    error: str | None
    best_epoch: int | None
    best_val_acc: float | None
    best_val_loss: float | None
    final_train_loss: float | None
    final_train_acc: float | None
    final_val_loss: float | None
    final_val_acc: float | None
    final_test_loss: float | None
    final_test_acc: float | None
    n_params: int | None
    precision: str | None
    device: str | None
    sweep: str | None
    trial: int | None

    @property
    def model(self) -> str:
        """The model's registry name, ``layers[N]`` for a layer list, or ``?``."""
        model = self.config.get("model") or {}
        if model.get("layers"):
            return f"layers[{len(model['layers'])}]"
        return str(model.get("name", "?"))

    @property
    def dataset(self) -> str:
        """The dataset's name from the config (``mnist-colour`` when altered, ``svhn + mnist-colour``
        for a mixture), or ``?``."""
        from cnnlab.config import data_label

        return data_label(self.config.get("data") or {})

    @property
    def planned_epochs(self) -> int | None:
        """``train.epochs`` from the config, if there."""
        return (self.config.get("train") or {}).get("epochs")


_RUN_COLUMNS: dict[str, Column[Any]] = {c.name: c for c in RunRow.__table__.columns}
RUN_FIELDS = tuple(f.name for f in fields(RunRecord) if f.name != "id")


class RunStore:
    """Runs, their epochs and artifacts in a SQL database, plus a folder per run under ``root``."""

    def __init__(self, url: str | URL | None = None, root: str | Path | None = None) -> None:
        parsed = _parse_url(url) if url is not None else None
        if root is not None:
            self.root = Path(root).expanduser().absolute()
        elif parsed is not None and parsed.get_backend_name() == "sqlite" and parsed.database not in (
            None, "", ":memory:"
        ):
            # A SQLite file keeps its run folders (checkpoints, figures) beside it.
            self.root = Path(parsed.database).expanduser().absolute().parent
        else:
            self.root = default_root()
        self._url = parsed or _parse_url(URL.create("sqlite", database=str(self.root / DB_FILE)))
        self.url = self._url.render_as_string(hide_password=True)
        self._engine = _make_engine(self._url, self.url)
        # SQLite: transactions through this engine begin with BEGIN IMMEDIATE (see module doc).
        self._write_engine = self._engine.execution_options(cnnlab_begin="IMMEDIATE")
        self._reader = sessionmaker(self._engine, expire_on_commit=False)
        self._writer = sessionmaker(self._write_engine, expire_on_commit=False)
        self._pid = os.getpid()
        self._create_tables()

    def __repr__(self) -> str:
        return f"RunStore(url={self.url!r}, root={str(self.root)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as its URL and root, so a spawned worker process opens its own connections.
        return (RunStore, (self._url, self.root))

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled database connections."""
        self._engine.dispose()

    # -- runs --------------------------------------------------------------------------------

    def create_run(
        self,
        *,
        name: str | None,
        config: dict[str, Any],
        config_hash: str,
        cell_hash: str,
        seed: int,
        host: str,
        versions: dict[str, Any],
        status: str = "running",
        sweep: str | None = None,
        trial: int | None = None,
    ) -> str:
        """Store a new run and return its id (``r`` + 8 hex digits)."""
        now = datetime.now(UTC)
        values, nonfinite = _check_run_fields(
            {
                "name": name,
                "status": status,
                "config": config,
                "config_hash": config_hash,
                "cell_hash": cell_hash,
                "seed": seed,
                "host": host,
                "versions": versions,
                "created_at": now,
                "started_at": None if status == "created" else now,
                "epochs_done": 0,
                "sweep": sweep,
                "trial": trial,
            }
        )
        for _ in range(8):
            run_id = "r" + secrets.token_hex(4)
            try:
                with self._session(write=True) as session:
                    session.add(RunRow(id=run_id, nonfinite=nonfinite, **values))
            except IntegrityError:  # the random id is taken: draw another
                continue
            return run_id
        raise StoreError(f"store {self.url}: could not find a free run id")

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set run fields (status, finished_at, duration_s, summary metrics, ...)."""
        values, nonfinite = _check_run_fields(fields)
        with self._session(write=True) as session:
            row = _get_row(session, run_id, lock=True)
            for key, value in values.items():
                setattr(row, key, value)
            kept = {k: v for k, v in (row.nonfinite or {}).items() if k not in values}
            row.nonfinite = kept | nonfinite

    def get_run(self, ref: str) -> RunRecord:
        """The run with this id, else the latest run with this name, else the one id prefix."""
        ref = ref.strip()
        with self._session() as session:
            row = session.get(RunRow, ref) if ref else None
            if row is None and ref:
                row = session.scalars(
                    select(RunRow)
                    .where(RunRow.name == ref)
                    .order_by(RunRow.created_at.desc(), RunRow.id.desc())
                    .limit(1)
                ).first()
            if row is None and ref:
                ids = session.scalars(
                    select(RunRow.id)
                    .where(RunRow.id.startswith(ref.lower(), autoescape=True))
                    .order_by(RunRow.id)
                ).all()
                if len(ids) > 1:
                    shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
                    raise StoreError(f"{ref!r} matches {len(ids)} runs ({shown}); type more of the run id")
                if ids:
                    row = session.get(RunRow, ids[0])
            if row is None:
                raise StoreError(f"no run matches {ref!r}; `cnnlab runs` lists them")
            return _record(row)

    def list_runs(
        self,
        status: str | None = None,
        name: str | None = None,
        limit: int | None = None,
        sweep: str | None = None,
        config_hash: str | None = None,
    ) -> list[RunRecord]:
        """Runs, newest first; ``name`` is a substring, or a glob when it has ``*`` or ``?``;
        ``sweep`` keeps only the runs of that sweep, ``config_hash`` those of that config and seed."""
        query = select(RunRow).order_by(RunRow.created_at.desc(), RunRow.id.desc())
        if sweep is not None:
            query = query.where(RunRow.sweep == sweep)
        if config_hash is not None:
            query = query.where(RunRow.config_hash == config_hash)
        if status is not None:
            if status not in STATUSES:
                raise StoreError(f"status: {status!r} {one_of(STATUSES)}")
            query = query.where(RunRow.status == status)
        if name:
            if "*" in name or "?" in name:
                query = query.where(RunRow.name.ilike(_glob_to_like(name), escape="\\"))
            else:
                query = query.where(RunRow.name.icontains(name, autoescape=True))
        if limit is not None:
            if limit < 0:
                raise StoreError(f"limit: {limit!r} must be ≥ 0")
            query = query.limit(limit)
        with self._session() as session:
            return [_record(row) for row in session.scalars(query)]

    def delete_run(self, run_id: str) -> None:
        """Delete a run's rows (epochs, artifacts, run) and its folder."""
        with self._session(write=True) as session:
            _get_row(session, run_id)
            for table in (ArtifactRow, EpochRow):
                session.execute(delete(table).where(table.run_id == run_id))
            session.execute(delete(RunRow).where(RunRow.id == run_id))
        folder = self.root / "runs" / run_id
        try:
            if folder.exists():
                shutil.rmtree(folder)
        except OSError as exc:
            raise StoreError(f"run {run_id} deleted, but its folder {folder} stays: {exc}") from exc

    def run_dir(self, run_id: str) -> Path:
        """The run's folder for checkpoints and artifacts, ``root/runs/<run_id>/`` (created)."""
        if not _RUN_ID.match(run_id):
            raise StoreError(f"run id {run_id!r} is not a run id (like r3fa9c2d1)")
        folder = self.root / "runs" / run_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -- epochs ------------------------------------------------------------------------------

    def log_epoch(self, run_id: str, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Store one epoch's metrics; logging the same epoch again replaces its row."""
        if not isinstance(epoch, numbers.Integral) or isinstance(epoch, bool) or epoch < 0:
            raise StoreError(f"epoch: {epoch!r} must be an integer ≥ 0")
        values = _epoch_values(metrics, int(epoch))
        with self._session(write=True) as session:
            _get_row(session, run_id)
            self._upsert(session, EpochRow.__table__, {"run_id": run_id, **values}, ("run_id", "epoch"))

    def truncate_epochs(self, run_id: str, after_epoch: int) -> int:
        """Delete the run's epochs after ``after_epoch`` (for resume); returns how many."""
        with self._session(write=True) as session:
            _get_row(session, run_id)
            result = session.execute(
                delete(EpochRow).where(EpochRow.run_id == run_id, EpochRow.epoch > after_epoch)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    def epochs(self, run_id: str) -> list[dict[str, Any]]:
        """The run's epochs in order, each ``{"epoch": n, <standard metrics>, <extra metrics>}``."""
        with self._session() as session:
            _get_row(session, run_id)
            rows = session.scalars(
                select(EpochRow).where(EpochRow.run_id == run_id).order_by(EpochRow.epoch)
            ).all()
        return [_epoch_metrics(row) for row in rows]

    def epochs_of(self, run_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Epochs of many runs in one query (as ``epochs``), by run id; unknown ids get an empty list."""
        out: dict[str, list[dict[str, Any]]] = {run_id: [] for run_id in run_ids}
        with self._session() as session:
            for start in range(0, len(out), 500):  # bounded IN lists
                chunk = list(out)[start : start + 500]
                # Plain rows, not ORM objects: building 40,000 of those took most of the time.
                query = select(*EpochRow.__table__.columns).where(EpochRow.run_id.in_(chunk))
                for row in session.execute(query.order_by(EpochRow.run_id, EpochRow.epoch)):
                    out[row.run_id].append(_epoch_metrics(row))
        return out

    def export_epochs(self, run_id: str, fmt: Literal["csv", "json"], path: str | Path | None = None) -> str:
        """The run's epochs as CSV or JSON text, also written atomically to ``path`` if given.

        Columns: epoch, every standard metric, then extra metrics in order of appearance.
        CSV writes NaN/inf as ``nan``/``inf``; JSON (which has no NaN) as the strings
        ``"NaN"``, ``"Infinity"``, ``"-Infinity"``; missing values are empty / null.
        """
        if fmt not in EXPORT_FORMATS:
            raise StoreError(f"export format: {fmt!r} {one_of(EXPORT_FORMATS)}")
        rows = self.epochs(run_id)
        columns = ["epoch", *EPOCH_METRICS]
        for row in rows:
            columns += [key for key in row if key not in columns]
        if fmt == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(columns)
            for row in rows:
                writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
            content = buffer.getvalue()
        else:
            records = [{c: _json_number(row.get(c)) for c in columns} for row in rows]
            content = json.dumps(records, indent=2, allow_nan=False) + "\n"
        if path is not None:
            _write_atomic(Path(path), content)
        return content

    # -- artifacts ---------------------------------------------------------------------------

    def add_artifact(self, run_id: str, kind: str, path: str | Path) -> None:
        """Record a file the run produced; a local path is stored absolute, a URL as given."""
        location = str(path) if "://" in str(path) else str(Path(path).expanduser().absolute())
        _check_str("kind", kind, 64, empty=False)
        _check_str("path", location, 1024, empty=False)
        values = {"run_id": run_id, "kind": kind, "path": location, "created_at": datetime.now(UTC)}
        with self._session(write=True) as session:
            _get_row(session, run_id)
            self._upsert(session, ArtifactRow.__table__, values, ("run_id", "kind", "path"))

    def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        """The run's artifacts, oldest first: ``{"kind", "path", "created_at"}``."""
        with self._session() as session:
            _get_row(session, run_id)
            rows = session.scalars(
                select(ArtifactRow)
                .where(ArtifactRow.run_id == run_id)
                .order_by(ArtifactRow.created_at, ArtifactRow.kind, ArtifactRow.path)
            ).all()
            return [{"kind": r.kind, "path": r.path, "created_at": r.created_at} for r in rows]

    # -- plumbing ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _session(self, write: bool = False) -> Iterator[Session]:
        """One transaction; a lost connection or a lock held too long becomes a StoreError."""
        if os.getpid() != self._pid:
            # A forked child must not share the parent's connections: start its own pool.
            self._engine.dispose(close=False)
            self._pid = os.getpid()
        factory = self._writer if write else self._reader
        try:
            with factory() as session, session.begin():
                yield session
        except OperationalError as exc:
            raise StoreError(f"store {self.url}: {exc.orig}") from exc

    def _upsert(self, session: Session, table: Table, values: dict[str, Any], key: tuple[str, ...]) -> None:
        """INSERT, or UPDATE the row with the same ``key`` columns, as one statement."""
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(table).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(key),
            set_={c: stmt.excluded[c] for c in values if c not in key},
        )
        session.execute(stmt)

    def _create_tables(self) -> None:
        """Create missing tables; safe when several processes open a new store at once."""
        try:
            with self._write_engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_SCHEMA_LOCK})
                Base.metadata.create_all(conn)
        except OperationalError as exc:
            raise StoreError(
                f"cannot open the run store {self.url}: {exc.orig} (a store URL looks like {URL_EXAMPLE})"
            ) from exc


# -- URL and engine --------------------------------------------------------------------------


def _parse_url(url: str | URL) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"store URL {url!r} is not a database URL; use for example {URL_EXAMPLE}") from None
    backend = parsed.get_backend_name()
    if backend not in _DIALECTS:
        shown = parsed.render_as_string(hide_password=True)
        raise StoreError(
            f"store URL {shown!r}: database {backend!r} {one_of(_DIALECTS)}; use for example {URL_EXAMPLE}"
        )
    return parsed


def _make_engine(url: URL, shown: str) -> Engine:
    """An engine for ``url``; on SQLite with WAL, a busy timeout, foreign keys and BEGIN control."""
    try:
        if url.get_backend_name() != "sqlite":
            return create_engine(url, pool_pre_ping=True, json_serializer=_json_dumps)
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, json_serializer=_json_dumps
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
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


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


# -- checks and conversions ------------------------------------------------------------------


def _get_row(session: Session, run_id: str, lock: bool = False) -> RunRow:
    row = session.get(RunRow, run_id, with_for_update=lock)
    if row is None:
        raise StoreError(f"no run matches {run_id!r}; `cnnlab runs` lists them")
    return row


def _record(row: RunRow) -> RunRecord:
    values = {f.name: getattr(row, f.name) for f in fields(RunRecord)}
    values.update({key: float(token) for key, token in (row.nonfinite or {}).items()})
    return RunRecord(**values)


def _epoch_metrics(row: Any) -> dict[str, Any]:
    """An epoch row (ORM object or plain row) as ``{"epoch": n, <metrics>}``."""
    metrics: dict[str, Any] = {"epoch": row.epoch}
    metrics.update({key: getattr(row, key) for key in EPOCH_METRICS})
    metrics.update(row.extra or {})
    metrics.update({key: float(token) for key, token in (row.nonfinite or {}).items()})
    return metrics


def _check_run_fields(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Check run fields against their columns: the values to store, and the non-finite floats."""
    out: dict[str, Any] = {}
    nonfinite: dict[str, str] = {}
    for key, value in values.items():
        if key not in RUN_FIELDS:
            raise StoreError(f"run field {key!r} {one_of(RUN_FIELDS)}")
        column = _RUN_COLUMNS[key]
        kind = column.type
        if value is None:
            if not column.nullable:
                raise StoreError(f"run field {key!r}: None is not allowed")
        elif key == "status" and value not in STATUSES:
            raise StoreError(f"status: {value!r} {one_of(STATUSES)}")
        elif isinstance(kind, UTCDateTime):
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise StoreError(f"{key}: {value!r} is not a timezone-aware datetime")
        elif isinstance(kind, Float):
            value = _as_float(key, value)
            if not math.isfinite(value):
                nonfinite[key] = _token(value)
                value = None
        elif isinstance(kind, Integer):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise StoreError(f"{key}: {value!r} is not an integer")
            value = int(value)
        elif isinstance(kind, JSON):
            try:
                _json_dumps(value)
            except (TypeError, ValueError) as exc:
                raise StoreError(f"{key}: is not JSON data (no NaN allowed): {exc}") from exc
        elif isinstance(kind, String):
            _check_str(key, value, kind.length)
        out[key] = value
    return out, nonfinite


def _check_str(key: str, value: Any, length: int | None, empty: bool = True) -> None:
    if not isinstance(value, str):
        raise StoreError(f"{key}: {value!r} is not a string")
    if length is not None and len(value) > length:
        raise StoreError(f"{key}: {value[:40]!r}… is longer than {length} characters")
    if not empty and not value:
        raise StoreError(f"{key}: must not be empty")


def _epoch_values(metrics: Mapping[str, Any], epoch: int) -> dict[str, Any]:
    """Columns of an epoch row: standard metrics, ``extra`` and the ``nonfinite`` note."""
    values: dict[str, Any] = {"epoch": epoch, **dict.fromkeys(EPOCH_METRICS)}
    extra: dict[str, float | None] = {}
    nonfinite: dict[str, str] = {}
    for key, raw in metrics.items():
        if key == "epoch" and raw == epoch:
            continue
        if not isinstance(key, str) or not key or key == "epoch":
            raise StoreError(f"metric name {key!r} must be a non-empty string other than 'epoch'")
        number = None if raw is None else _as_float(key, raw)
        if number is not None and not math.isfinite(number):
            nonfinite[key] = _token(number)
            number = None
        (values if key in EPOCH_METRICS else extra)[key] = number
    return values | {"extra": extra, "nonfinite": nonfinite}


def _as_float(key: str, value: Any) -> float:
    if isinstance(value, str | bytes) or not hasattr(value, "__float__"):
        raise StoreError(f"metric {key!r}: {value!r} is not a number")
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise StoreError(f"metric {key!r}: {value!r} is not a number") from exc


def _token(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _glob_to_like(pattern: str) -> str:
    escaped = (f"\\{ch}" if ch in "\\%_" else ch for ch in pattern)
    return "".join(escaped).replace("*", "%").replace("?", "_")


def _write_atomic(path: Path, content: str) -> None:
    """Write ``content`` to a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


__all__ = ["RUN_FIELDS", "RunRecord", "RunStore", "default_root"]
