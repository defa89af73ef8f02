"""``train.restore_best``: the run's stored final model is its best epoch's, by the monitored metric.

As Keras' ``EarlyStopping(restore_best_weights=True)``: while the run trains, the weights of the
epoch with the best ``train.monitor`` so far (improving by more than ``train.min_delta``, the
rule early stopping uses: the `EarlyStopping` callback decides which epoch is best) are kept in
memory and in every checkpoint (so a resumed run keeps them); when the run ends on its own
(completed, stopped early, diverged or pruned) its checkpoint's model is replaced by them and
says so (``restored_best``), keeping the last weights beside them (``last_model``) for a resumed
run to continue from. An interrupted run keeps its last weights, to be resumed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import LeaseLost
from cnnlab.store import RunRecord, RunStore
from cnnlab.store.best import restored_note
from cnnlab.store.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.store.schema import RESTORED
from cnnlab.train.lifecycle import EarlyStopping, EpochCallback, EpochEnd, RunLife


@dataclass
class BestWeights(EpochCallback):
    """Keeps a copy of the weights of the best epoch as ``early`` judges it (placed after it)."""

    early: EarlyStopping
    weights: Callable[[], Mapping[str, torch.Tensor]]  # the model's current state dict
    epoch: int = 0
    value: float | None = None
    model: dict[str, torch.Tensor] = field(default_factory=dict)

    def on_epoch_end(self, run: RunLife, end: EpochEnd) -> None:
        if not end.diverged and self.early.best_epoch == end.epoch:
            self.epoch, self.value = end.epoch, self.early.best
            self.model = {name: t.detach().to("cpu", copy=True) for name, t in self.weights().items()}

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps, so a resumed run still knows its best epoch's weights."""
        return {"epoch": self.epoch, "value": self.value, "model": self.model}

    def load_state(self, state: Mapping[str, Any] | None) -> None:
        """Continue from a checkpoint's `state` (None: the checkpoint has none)."""
        if state:
            self.epoch, self.value, self.model = int(state["epoch"]), state["value"], dict(state["model"])

    def on_run_end(self, run: RunLife, status: str) -> None:
        """Make the run's stored final model the best epoch's, when the run ended on its own."""
        if status in RESTORED and self.model and run.store is not None:
            path = run.stored.checkpoint_path(run.id)
            staged = run.stored.staged_path(path, run.lease, "best")
            try:
                if restore_checkpoint(path, self.state(), self.early.monitor, into=staged):
                    run.put_file(staged, path)  # renamed into place only while this process owns the run
            except LeaseLost:
                raise
            except Exception as exc:
                with contextlib.suppress(OSError):
                    staged.unlink(missing_ok=True)
                raise RuntimeError(f"the best epoch's weights (epoch {self.epoch}) could not be restored "
                                   f"into {path.name}, which keeps the last epoch's: "
                                   f"{type(exc).__name__}: {exc}") from exc


def restore_checkpoint(path: Path, best: Mapping[str, Any], monitor: str, into: Path | None = None) -> bool:
    """Write the checkpoint at ``path`` again with the ``best`` epoch's weights (atomically, into
    ``into`` when given, else over ``path``), noting which epoch they are from (``restored_best``);
    the last epoch's weights stay in it as ``last_model``, which a resumed run continues from (its
    epoch, optimizer, random and schedule state are the last epoch's). False (nothing written)
    without a checkpoint."""
    if not path.exists():
        return False
    state = load_checkpoint(path)
    state.pop("format", None)
    state.setdefault("last_model", state["model"])  # already restored: "model" is the best one
    state["model"] = best["model"]
    state["restored_best"] = {"epoch": best["epoch"], "monitor": monitor, "value": best["value"]}
    save_checkpoint(into or path, state)
    return True


def stored_model_note(store: RunStore, record: RunRecord) -> str | None:
    """`cnnlab.store.best.restored_note` of a stored run (None without train.restore_best)."""
    if not record.config.get("train", {}).get("restore_best"):
        return None
    return restored_note(record.config, record.status, store.epochs(record.id))
