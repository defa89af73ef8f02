"""A stored run as plain data: `RunRecord` (what the store holds of one run) and `Artifact`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any


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
    pid: int | None = None
    heartbeat_at: datetime | None = None
    lease: int | None = None
    hash_version: int | None = None
    legacy_hash: str | None = None
    data_facts: dict[str, int] | None = None  # classes and split sizes as trained (None: stored before)

    @property
    def model(self) -> str:
        """The model's registry name, ``layers[N]`` for a layer list, or ``?``."""
        model = self.config.get("model") or {}
        if model.get("layers"):
            return f"layers[{len(model['layers'])}]"
        return str(model.get("name", "?"))

    @property
    def planned_epochs(self) -> int | None:
        """``train.epochs`` from the config, if there."""
        return (self.config.get("train") or {}).get("epochs")


@dataclass(frozen=True)
class Artifact:
    """A file of a run: its kind (checkpoint, figure kind, ...), path and size in bytes (None: gone)."""

    kind: str
    path: Path
    size: int | None


RUN_FIELDS = tuple(f.name for f in fields(RunRecord) if f.name != "id")
