"""Tables of the run store: runs, their per-epoch metrics and their artifacts (portable SQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

STATUSES = (
    "created",
    "running",
    "completed",
    "interrupted",
    "diverged",
    "failed",
    "stopped_early",
    "pruned",
)
# Runs that ended on their own: the final result of their config and seed. A sweep reuses them
# instead of training again, the ranking ranks them (diverging is what that configuration does),
# and a failed attempt to continue one leaves it as it was.
FINISHED = ("completed", "stopped_early", "diverged")
# Runs that trained as planned (to the last epoch, or until early stopping): their results are the
# configuration's, with nothing cut short.
TRAINED = ("completed", "stopped_early")
# Runs whose end leaves the model a restore-best run keeps: the best epoch's (a pruned run too).
RESTORED = ("completed", "stopped_early", "diverged", "pruned")
# Runs a new attempt continues from their checkpoint.
RESUMABLE = ("interrupted", "failed", "pruned")

# Per-epoch metrics with their own column; any other metric key goes into `EpochRow.extra`.
EPOCH_METRICS = (
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "lr",
    "seconds",
    "images_per_s",
)

# Summary metrics of a run, set by `RunStore.update_run`.
SUMMARY_METRICS = (
    "best_val_acc",
    "best_val_loss",
    "final_train_loss",
    "final_train_acc",
    "final_val_loss",
    "final_val_acc",
    "final_test_loss",
    "final_test_acc",
)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base; constraint names are fixed so later migrations can refer to them."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class RunRow(Base):
    """One training run: what it computes (config, seed), where it ran, how it ended."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    config_hash: Mapped[str] = mapped_column(String(64), index=True)
    cell_hash: Mapped[str] = mapped_column(String(64), index=True)
    seed: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(255))
    versions: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_s: Mapped[float | None] = mapped_column(Float)
    epochs_done: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    best_val_acc: Mapped[float | None] = mapped_column(Float)
    best_val_loss: Mapped[float | None] = mapped_column(Float)
    final_train_loss: Mapped[float | None] = mapped_column(Float)
    final_train_acc: Mapped[float | None] = mapped_column(Float)
    final_val_loss: Mapped[float | None] = mapped_column(Float)
    final_val_acc: Mapped[float | None] = mapped_column(Float)
    final_test_loss: Mapped[float | None] = mapped_column(Float)
    final_test_acc: Mapped[float | None] = mapped_column(Float)
    n_params: Mapped[int | None] = mapped_column(Integer)
    precision: Mapped[str | None] = mapped_column(String(16))
    device: Mapped[str | None] = mapped_column(String(64))
    sweep: Mapped[str | None] = mapped_column(String(200), index=True)
    trial: Mapped[int | None] = mapped_column(Integer)
    # Liveness: the training process (on `host`) and when it last said it was alive.
    pid: Mapped[int | None] = mapped_column(Integer)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Fencing token: grows with every take-over; only the holder of the current one may write.
    lease: Mapped[int | None] = mapped_column(Integer)
    # What the run's data was: {"classes": 10, "train": 54000, "val": 6000, "test": 10000}.
    data_facts: Mapped[dict[str, int] | None] = mapped_column(JSON)
    # Summary metrics that were NaN or ±inf ({"final_val_loss": "nan"}); their column holds NULL,
    # because SQLite turns NaN into NULL and JSON has no NaN at all.
    nonfinite: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # How config_hash was computed (cnnlab.config.HASH_VERSION; NULL: 1, before defaults were filled
    # in), and the hash the run had before it was computed again (NULL when it never was).
    hash_version: Mapped[int | None] = mapped_column(Integer)
    legacy_hash: Mapped[str | None] = mapped_column(String(64))


class EpochRow(Base):
    """Metrics of one epoch of one run; the primary key makes (run, epoch) unique."""

    __tablename__ = "epochs"

    run_id: Mapped[str] = mapped_column(
        String(16), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    train_loss: Mapped[float | None] = mapped_column(Float)
    train_acc: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    val_acc: Mapped[float | None] = mapped_column(Float)
    test_loss: Mapped[float | None] = mapped_column(Float)
    test_acc: Mapped[float | None] = mapped_column(Float)
    lr: Mapped[float | None] = mapped_column(Float)
    seconds: Mapped[float | None] = mapped_column(Float)
    images_per_s: Mapped[float | None] = mapped_column(Float)
    extra: Mapped[dict[str, float | None]] = mapped_column(JSON, default=dict)
    nonfinite: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)


class ArtifactRow(Base):
    """A file a run produced (checkpoint, figure, report); (run, kind, path) is unique."""

    __tablename__ = "artifacts"

    run_id: Mapped[str] = mapped_column(
        String(16), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TagRow(Base):
    """A label a person put on a run (``cnnlab tag``); (run, tag) is unique."""

    __tablename__ = "tags"

    run_id: Mapped[str] = mapped_column(
        String(16), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
