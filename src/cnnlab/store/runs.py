"""RunStore: every run's config, per-epoch metrics and artifacts in one SQL database.

SQLite (``root/runs.sqlite``) by default, PostgreSQL for clusters; only portable SQL is used,
except SQLite PRAGMAs and each dialect's own INSERT ... ON CONFLICT for upserts. Several
processes may write to one store at once (the engine's setup: `cnnlab.store.database`).
`open_read_only` opens a store that refuses every write (the dashboard, sweep status).

Accuracies are fractions in [0, 1]. NaN and ±inf metrics are stored as NULL plus a
``nonfinite`` note on the row (SQLite turns NaN into NULL; JSON has no NaN) and come back as
``float("nan")`` / ``float("inf")``.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Float,
    Integer,
    Select,
    String,
    Table,
    delete,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from cnnlab.config import HASH_VERSION
from cnnlab.errors import LeaseLost, StoreError, UnknownRunError, one_of
from cnnlab.store.damage import refuse_damaged, sqlite_path
from cnnlab.store.database import (
    OPENED_READ_ONLY,
    READ_ONLY,
    SQLITE_DISK,
    existing_sqlite,
    explain,
    json_dumps,
    make_engine,
    unwritable_sqlite,
)
from cnnlab.store.liveness import shown_status
from cnnlab.store.record import RUN_FIELDS, Artifact, RunRecord
from cnnlab.store.schema import (
    EPOCH_METRICS,
    STATUSES,
    ArtifactRow,
    Base,
    EpochRow,
    RunRow,
    TagRow,
    UTCDateTime,
)
from cnnlab.store.urls import (
    URL_EXAMPLE,
    default_root,
    default_store_url,
    read_only_url,
    sqlite_file,
    store_url,
)

CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.previous.pt"
LIST_RUNS = "`cnnlab runs` lists them (cnnlab.runs() in Python)"
_RUN_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_PG_SCHEMA_LOCK = 0x636E6E6C6162  # pg_advisory_xact_lock key serialising CREATE TABLE ("cnnlab")
_RUN_COLUMNS: dict[str, Column[Any]] = {c.name: c for c in RunRow.__table__.columns}


class RunStore:
    """Runs, their epochs and artifacts in a SQL database, plus a folder per run under ``root``."""

    def __init__(self, url: str | URL | None = None, root: str | Path | None = None,
                 read_only: bool = False) -> None:
        """``read_only`` (`open_read_only`): refuse every write and leave the schema as it is, so a
        store made by an earlier cnnlab is read without the columns it lacks (they read as None)."""
        parsed = store_url(url) if url is not None else None
        if root is not None:
            self.root = Path(root).expanduser().absolute()
        elif parsed is not None and parsed.get_backend_name() == "sqlite" and parsed.database not in (
            None, "", ":memory:"
        ):
            # A SQLite file keeps its run folders (checkpoints, figures) beside it.
            self.root = Path(parsed.database).expanduser().absolute().parent
        else:
            self.root = default_root()
        self._url = parsed or default_store_url(self.root)
        self.url = self._url.render_as_string(hide_password=True)
        # A SQLite store whose file or folder cannot be written (read-only disk or mount), or whose
        # disk is full, is still read (its file opened immutable); writing to it says why it cannot
        # be written.
        self._asked_read_only = read_only
        self._immutable = unwritable_sqlite(self._url)
        self.read_only = read_only or self._immutable
        self._why_read_only = OPENED_READ_ONLY if read_only else READ_ONLY
        self._missing: frozenset[str] = frozenset()  # runs columns this store lacks (read-only only)
        if (database := sqlite_path(self._url)) is not None:  # a damaged file: one line, untouched
            refuse_damaged(database, immutable=self._immutable or "immutable" in str(self._url))
        self._open()
        if self.read_only:
            try:
                self._missing = self._missing_columns()
            except StoreError:
                self.close()
                raise
        else:
            try:
                self._create_tables()
            except StoreError as exc:
                cause = exc.__cause__
                if not (existing_sqlite(self._url) and isinstance(cause, OperationalError)
                        and SQLITE_DISK.search(str(cause.orig))):
                    raise
                self.close()
                self.read_only, self._immutable, self._why_read_only = True, True, explain(cause)
                self._open()
                self._missing = self._missing_columns()

    def _open(self) -> None:
        self._engine = make_engine(self._url, self.url, self._immutable)
        # SQLite: transactions through this engine begin with BEGIN IMMEDIATE (see module doc).
        self._write_engine = self._engine.execution_options(cnnlab_begin="IMMEDIATE")
        self._reader = sessionmaker(self._engine, expire_on_commit=False)
        self._writer = sessionmaker(self._write_engine, expire_on_commit=False)
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"RunStore(url={self.url!r}, root={str(self.root)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as its URL and root, so a spawned worker process opens its own connections.
        return (RunStore, (self._url, self.root, self._asked_read_only))

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
        hash_version: int = HASH_VERSION,
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
                "hash_version": hash_version,
            }
        )
        self.check_writable()
        for _ in range(8):
            run_id = "r" + secrets.token_hex(4)
            try:
                with self._session(write=True) as session:
                    session.add(RunRow(id=run_id, nonfinite=nonfinite, **values))
            except IntegrityError:  # the random id is taken: draw another
                continue
            return run_id
        raise StoreError(f"store {self.url}: could not find a free run id")

    def rehash(self, hashes: Callable[[dict[str, Any]], tuple[str, str]], version: int) -> int:
        """Compute ``config_hash`` and ``cell_hash`` again, as ``hashes(config)`` says, for every run
        whose hashes are of an older ``hash_version``; each keeps its first hash as ``legacy_hash``.
        A run whose stored config cannot be hashed (odd data in it) stays at its old version, so it
        does not stop every command. One transaction; returns how many runs changed (0 at once
        when none is older)."""
        older = (RunRow.hash_version.is_(None)) | (RunRow.hash_version < version)
        with self._session() as session:
            if not session.scalar(select(func.count()).select_from(RunRow).where(older)):
                return 0
        with self._session(write=True) as session:
            changed = 0
            for row in session.scalars(select(RunRow).where(older)).all():
                try:
                    config_hash, cell_hash = hashes(row.config)
                except (TypeError, ValueError, AttributeError, KeyError, RecursionError):
                    continue
                row.legacy_hash = row.legacy_hash or row.config_hash
                row.config_hash, row.cell_hash = config_hash, cell_hash
                row.hash_version = version
                changed += 1
            return changed

    def check_writable(self) -> None:
        """Fail before anything is written when runs cannot be stored here: a read-only store
        (StoreError), or a run folder ``root/runs`` that cannot be created or written (OSError
        naming it: read-only, no permission)."""
        if self.read_only:
            raise StoreError(f"store {self.url}: {self._why_read_only}")
        folder = self.root / "runs"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(folder)) from exc

    def acquire(self, run_id: str) -> int:
        """Take the run over: its fencing token grows by one and is returned. Writes that carry an
        older token (``lease=``) fail with LeaseLost from then on."""
        with self._session(write=True) as session:
            row = _get_row(session, run_id, lock=True)
            row.lease = (row.lease or 0) + 1
            return row.lease

    @contextlib.contextmanager
    def fenced(self, run_id: str, lease: int) -> Iterator[None]:
        """Hold the run's row locked while the caller changes its files (a checkpoint rename),
        after checking that ``lease`` is still the run's token; LeaseLost otherwise."""
        with self._session(write=True) as session:
            _check_lease(_get_row(session, run_id, lock=True), lease)
            yield

    def put_fenced(self, run_id: str, lease: int, staged: Path, target: Path,
                   keep_previous: Path | None = None) -> None:
        """Rename the complete file ``staged`` to ``target`` (the file there first renamed to
        ``keep_previous``) while this process holds the run (``lease``, its row locked). If the
        lock turns out lost when its transaction ends (a process paused inside here past the
        server's idle-in-transaction timeout, which ended its session so another could take the
        run over), every rename is undone and LeaseLost raised: the late file never stays, and the
        previous file is back where it was."""
        moved: list[tuple[Path, Path]] = []
        # The set-aside name is this holder's own (process and lease): a paused earlier holder
        # waking up never renames over, or deletes, the file a new owner set aside.
        aside = (keep_previous.with_name(f"{keep_previous.name}.{os.getpid()}.{lease}.undo")
                 if keep_previous is not None else None)
        try:
            with self.fenced(run_id, lease):
                if keep_previous is not None and aside is not None and target.exists():
                    # The previous file is put aside, not replaced, until the renames hold: undoing
                    # them then puts every file back, that one included.
                    with contextlib.suppress(FileNotFoundError):  # tried, not checked first
                        os.replace(keep_previous, aside)
                        moved.append((keep_previous, aside))
                    os.replace(target, keep_previous)
                    moved.append((target, keep_previous))
                os.replace(staged, target)
                moved.append((staged, target))
        except BaseException as exc:
            # Whatever ends the renames early (a lost lock, a disk error, Ctrl-C) puts every file
            # back; the set-aside file stays if putting it back failed, so nothing is lost.
            for source, destination in reversed(moved):
                with contextlib.suppress(OSError):
                    os.replace(destination, source)
            with contextlib.suppress(OSError):
                staged.unlink(missing_ok=True)  # this holder's own file (its name is unique)
            if not isinstance(exc, StoreError) or isinstance(exc, LeaseLost) or not moved:
                raise
            raise LeaseLost(f"run {run_id}: this process lost its hold on the run while it wrote "
                            f"{target.name} (its database session ended: {exc}); the file was put back") \
                from exc
        if aside is not None:
            with contextlib.suppress(OSError):
                aside.unlink(missing_ok=True)

    @staticmethod
    def staged_path(target: Path, lease: int | None, kind: str = "") -> Path:
        """Where a holder of a run (this process, ``lease``) writes a complete file before
        `put_fenced` renames it to ``target``: a name of its own, so an earlier holder that wakes
        up late never writes over, or deletes, the new owner's staged file."""
        return target.with_name(f".{target.name}{'.' + kind if kind else ''}.{os.getpid()}.{lease}.staged")

    def update_run(self, run_id: str, lease: int | None = None, **fields: Any) -> None:
        """Set run fields (status, finished_at, duration_s, summary metrics, ...); with ``lease``,
        only while it is the run's fencing token (LeaseLost otherwise, nothing written)."""
        values, nonfinite = _check_run_fields(fields)
        with self._session(write=True) as session:
            row = _get_row(session, run_id, lock=True)
            if lease is not None:
                _check_lease(row, lease)
            for key, value in values.items():
                setattr(row, key, value)
            kept = {k: v for k, v in (row.nonfinite or {}).items() if k not in values}
            row.nonfinite = kept | nonfinite

    def get_run(self, ref: str) -> RunRecord:
        """The run with this id, else the latest run with this name, else the one id prefix."""
        ref = ref.strip()
        with self._session() as session:
            row = session.execute(self._select_runs().where(RunRow.id == ref)).first() if ref else None
            if row is None and ref:
                row = session.execute(
                    self._select_runs()
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
                    row = session.execute(self._select_runs().where(RunRow.id == ids[0])).first()
            if row is None:
                raise UnknownRunError(f"no run matches {ref!r}; {LIST_RUNS}")
            return _record(row)

    def list_runs(
        self,
        status: str | None = None,
        name: str | None = None,
        limit: int | None = None,
        sweep: str | None = None,
        config_hash: str | None = None,
        tag: str | None = None,
    ) -> list[RunRecord]:
        """Runs, newest first; ``name`` is a substring, or a glob when it has ``*`` or ``?``;
        ``sweep`` keeps only the runs of that sweep, ``config_hash`` those of that config and seed,
        ``tag`` those carrying that tag."""
        query = self._select_runs().order_by(RunRow.created_at.desc(), RunRow.id.desc())
        if tag is not None:
            query = query.where(RunRow.id.in_(select(TagRow.run_id).where(TagRow.tag == tag)))
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
            return [_record(row) for row in session.execute(query)]

    def delete_run(self, run_id: str) -> None:
        """Delete a run's rows (epochs, artifacts, run) and its folder."""
        with self._session(write=True) as session:
            _get_row(session, run_id)
            for table in (ArtifactRow, EpochRow, TagRow):
                session.execute(delete(table).where(table.run_id == run_id))
            session.execute(delete(RunRow).where(RunRow.id == run_id))
        folder = self.root / "runs" / run_id
        try:
            if folder.exists():
                shutil.rmtree(folder)
        except OSError as exc:
            raise StoreError(f"run {run_id} deleted, but its folder {folder} stays: {exc}") from exc

    def delete_runs(self, run_ids: Sequence[str], dry_run: bool = False) -> None:
        """Delete several runs and their folders; refuses them all, deleting nothing, when one is
        still trained by a live process (a ``running`` run whose process is gone may be deleted).
        ``dry_run`` only checks."""
        running = [record.id for record in map(self.get_run, run_ids) if shown_status(record) == "running"]
        if running:
            raise StoreError(f"run {', '.join(running)} is running: stop it first (nothing was deleted)")
        if dry_run:
            return
        for run_id in run_ids:
            self.delete_run(run_id)

    def run_dir(self, run_id: str) -> Path:
        """The run's folder for checkpoints and artifacts, ``root/runs/<run_id>/`` (created)."""
        folder = self._run_folder(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def checkpoint_path(self, run_id: str) -> Path:
        """The run's newest checkpoint file, ``root/runs/<run_id>/checkpoint.pt`` (nothing created)."""
        return self._run_folder(run_id) / CHECKPOINT

    def previous_checkpoint_path(self, run_id: str) -> Path:
        """Where the run's checkpoint of the epoch before lives, kept until a newer one is complete."""
        return self._run_folder(run_id) / PREVIOUS_CHECKPOINT

    def finish(self, run_id: str, status: str, error: str | None, seconds: float,
               lease: int | None = None) -> None:
        """Store a run's end: its status and error, duration, and the summary fields read from its
        epochs (final and best accuracies and losses, best epoch)."""
        epochs = self.epochs(run_id)
        summary: dict[str, Any] = {"epochs_done": len(epochs)}
        if epochs:
            last = epochs[-1]
            for split in ("train", "val", "test"):
                for metric in ("loss", "acc"):
                    summary[f"final_{split}_{metric}"] = last.get(f"{split}_{metric}")
            with_val = [e for e in epochs if e.get("val_acc") is not None and math.isfinite(e["val_acc"])]
            if with_val:
                best = max(with_val, key=lambda e: e["val_acc"])
                summary["best_val_acc"] = best["val_acc"]
                summary["best_epoch"] = best["epoch"]
            val_losses = [e["val_loss"] for e in epochs
                          if e.get("val_loss") is not None and math.isfinite(e["val_loss"])]
            if val_losses:
                summary["best_val_loss"] = min(val_losses)
        self.update_run(run_id, lease=lease, status=status, error=error, finished_at=datetime.now(UTC),
                        duration_s=seconds, **summary)

    def _run_folder(self, run_id: str) -> Path:
        if not _RUN_ID.match(run_id):
            raise StoreError(f"run id {run_id!r} is not a run id (like r3fa9c2d1)")
        return self.root / "runs" / run_id

    # -- epochs ------------------------------------------------------------------------------

    def log_epoch(self, run_id: str, epoch: int, metrics: Mapping[str, Any],
                  lease: int | None = None) -> None:
        """Store one epoch's metrics; logging the same epoch again replaces its row. With
        ``lease``, only while it is the run's fencing token (LeaseLost otherwise)."""
        if not isinstance(epoch, numbers.Integral) or isinstance(epoch, bool) or epoch < 0:
            raise StoreError(f"epoch: {epoch!r} must be an integer ≥ 0")
        values = _epoch_values(metrics, int(epoch))
        with self._session(write=True) as session:
            row = _get_row(session, run_id, lock=True)
            if lease is not None:
                _check_lease(row, lease)
            self._upsert(session, EpochRow.__table__, {"run_id": run_id, **values}, ("run_id", "epoch"))
            row.epochs_done = _count_epochs(session, run_id)

    def truncate_epochs(self, run_id: str, after_epoch: int) -> int:
        """Delete the run's epochs after ``after_epoch`` (for resume); returns how many."""
        with self._session(write=True) as session:
            row = _get_row(session, run_id, lock=True)
            result = session.execute(
                delete(EpochRow).where(EpochRow.run_id == run_id, EpochRow.epoch > after_epoch)
            )
            row.epochs_done = _count_epochs(session, run_id)
            return int(result.rowcount)  # type: ignore[attr-defined]

    def epochs(self, run_id: str) -> list[dict[str, Any]]:
        """The run's epochs in order, each ``{"epoch": n, <standard metrics>, <extra metrics>}``."""
        with self._session() as session:
            _check_run(session, run_id)
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
            _check_run(session, run_id)
            rows = session.scalars(
                select(ArtifactRow)
                .where(ArtifactRow.run_id == run_id)
                .order_by(ArtifactRow.created_at, ArtifactRow.kind, ArtifactRow.path)
            ).all()
            return [{"kind": r.kind, "path": r.path, "created_at": r.created_at} for r in rows]

    def files(self, run_id: str) -> list[Artifact]:
        """The run's recorded artifacts, then the other files in its folder, each with its size
        (None when the file is gone)."""
        found: list[Artifact] = []
        for row in self.artifacts(run_id):
            path = Path(row["path"])
            found.append(Artifact(row["kind"], path, path.stat().st_size if path.is_file() else None))
        known = {artifact.path for artifact in found}
        folder = self.root / "runs" / run_id
        if folder.is_dir():
            for path in sorted(p for p in folder.rglob("*") if p.is_file() and p not in known):
                kind = "checkpoint" if path.suffix == ".pt" else path.suffix.lstrip(".") or "file"
                found.append(Artifact(kind, path, path.stat().st_size))
        return found

    # -- tags ------------------------------------------------------------------------------

    def add_tag(self, run_id: str, tag: str) -> bool:
        """Put ``tag`` on the run; False when it already had it."""
        _check_str("tag", tag, 64, empty=False)
        with self._session(write=True) as session:
            _get_row(session, run_id)
            if session.get(TagRow, (run_id, tag)) is not None:
                return False
            session.add(TagRow(run_id=run_id, tag=tag))
            return True

    def remove_tag(self, run_id: str, tag: str) -> bool:
        """Take ``tag`` off the run; False when it did not have it."""
        with self._session(write=True) as session:
            _get_row(session, run_id)
            result = session.execute(delete(TagRow).where(TagRow.run_id == run_id, TagRow.tag == tag))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def tags(self, run_ids: Sequence[str]) -> dict[str, list[str]]:
        """Each run's tags in alphabetical order (runs without tags are left out)."""
        out: dict[str, list[str]] = {}
        with self._session() as session:
            rows = session.execute(
                select(TagRow.run_id, TagRow.tag).where(TagRow.run_id.in_(list(run_ids))).order_by(TagRow.tag)
            ).all()
        for run_id, tag in rows:
            out.setdefault(run_id, []).append(tag)
        return out

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
            why = self._why_read_only if self.read_only else explain(exc)
            raise StoreError(f"store {self.url}: {why}") from exc
        except IntegrityError:
            raise
        except DatabaseError as exc:  # damaged while this process had it open
            database = sqlite_path(self._url)
            if database is not None:
                refuse_damaged(database, immutable=self._immutable)
            raise StoreError(f"store {self.url}: {exc.orig}") from exc

    def _select_runs(self) -> Select[Any]:
        """SELECT of every runs column this store has (one opened read-only may lack newer ones)."""
        return select(*(c for c in RunRow.__table__.columns if c.name not in self._missing))

    def _missing_columns(self) -> frozenset[str]:
        """The nullable runs columns a store opened read-only lacks (read as None); StoreError in one
        line when it lacks more than that (a table, or a column the code cannot do without)."""
        with self._session() as session:
            inspector = inspect(session.connection())
            tables = set(inspector.get_table_names())
            if "runs" not in tables:
                raise StoreError(f"store {self.url} holds no cnnlab runs (it has no runs table): train a "
                                 "run into it first, or give another store (CNNLAB_HOME or --store)")
            missing: set[str] = set()
            for table in Base.metadata.sorted_tables:
                present = {c["name"] for c in inspector.get_columns(table.name)} \
                    if table.name in tables else set()
                lacking = [c for c in table.columns if c.name not in present]
                if any(table.name != "runs" or not c.nullable for c in lacking):
                    raise StoreError(f"store {self.url} was made by an earlier cnnlab: run any cnnlab "
                                     "command that writes (e.g. `cnnlab runs`) once to upgrade it")
                missing.update(c.name for c in lacking)
        return frozenset(missing)

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
                _add_missing_columns(conn)
        except OperationalError as exc:
            if SQLITE_DISK.search(str(exc.orig)):
                raise StoreError(f"cannot open the run store {self.url}: {explain(exc)}") from exc
            raise StoreError(
                f"cannot open the run store {self.url}: {exc.orig} (a store URL looks like {URL_EXAMPLE})"
            ) from exc


def _add_missing_columns(conn: Connection) -> None:
    """Add the nullable columns, of every table, that a store made by an earlier cnnlab lacks (such
    as hash_version, legacy_hash, data_facts); a column that may not be NULL is never added."""
    for table in Base.metadata.sorted_tables:
        present = {c["name"] for c in inspect(conn).get_columns(table.name)}
        for column in table.columns:
            if column.name not in present and column.nullable:
                kind = column.type.compile(dialect=conn.dialect)
                conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))


# -- checks and conversions ------------------------------------------------------------------


def _get_row(session: Session, run_id: str, lock: bool = False) -> RunRow:
    row = session.get(RunRow, run_id, with_for_update=lock)
    if row is None:
        raise UnknownRunError(f"no run matches {run_id!r}; {LIST_RUNS}")
    return row


def _check_run(session: Session, run_id: str) -> None:
    """UnknownRunError unless the run exists (reads only its id: works on a store of any age)."""
    if session.scalar(select(RunRow.id).where(RunRow.id == run_id)) is None:
        raise UnknownRunError(f"no run matches {run_id!r}; {LIST_RUNS}")


def _check_lease(row: RunRow, lease: int) -> None:
    if row.lease != lease:
        raise LeaseLost(f"run {row.id} was taken over by another process (its lease is now "
                        f"{row.lease}, this process held {lease})")


def _count_epochs(session: Session, run_id: str) -> int:
    query = select(func.count()).select_from(EpochRow).where(EpochRow.run_id == run_id)
    return int(session.scalar(query) or 0)


def _record(row: Any) -> RunRecord:
    """A runs row (ORM object or plain row) as a RunRecord; columns the row lacks are None."""
    values = {f.name: getattr(row, f.name, None) for f in fields(RunRecord)}
    values.update({key: float(token) for key, token in (getattr(row, "nonfinite", None) or {}).items()})
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
                json_dumps(value)
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


def _glob_to_like(pattern: str) -> str:
    escaped = (f"\\{ch}" if ch in "\\%_" else ch for ch in pattern)
    return "".join(escaped).replace("*", "%").replace("?", "_")


def open_read_only(url: str | URL | None = None, root: str | Path | None = None) -> RunStore:
    """The run store at ``url`` opened so nothing can be written: SQLite as ``mode=ro`` (the file
    must exist; SQLite then refuses every write), PostgreSQL with ``default_transaction_read_only``
    (the server refuses writes). Without ``url``, the SQLite store that `RunStore` would open with
    ``root``. ``root``: the folder its run files are in (default: beside a SQLite file). The
    dashboard and sweep status read stores through it."""
    folder = Path(root).expanduser().absolute() if root else None
    parsed = store_url(url) if url else default_store_url(folder)
    database = sqlite_file(parsed)
    if parsed.get_backend_name() == "sqlite" and (database is None or not database.is_file()):
        shown = parsed.render_as_string(hide_password=True)
        raise StoreError(f"no run store at {shown}: {database or parsed.database} is not a file (train a "
                         f"run first, or give --store; a store URL looks like {URL_EXAMPLE})")
    if folder is None:
        folder = database.parent if database is not None else default_root()
    return RunStore(read_only_url(parsed), root=folder, read_only=True)
