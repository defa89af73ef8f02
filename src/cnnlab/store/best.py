"""Which epoch's weights a run with ``train.restore_best`` stored, found again from its rows.

The rule is early stopping's (`cnnlab.train.lifecycle.EarlyStopping`, which picks the epoch while
the run trains): the first epoch whose ``train.monitor`` beats every earlier one by more than
``train.min_delta``; epochs with a non-finite training loss (diverged) do not count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from cnnlab.store.schema import RESTORED


def best_epoch(epochs: Sequence[Mapping[str, Any]], monitor: str, min_delta: float = 0.0,
               ) -> tuple[int, float] | None:
    """The best epoch by ``monitor`` (lower val_loss, higher accuracy) and its value, or None."""
    sign = -1.0 if monitor.endswith("_loss") else 1.0
    best: tuple[int, float] | None = None
    for row in epochs:
        value, train_loss = row.get(monitor), row.get("train_loss")
        diverged = train_loss is not None and not math.isfinite(train_loss)
        if value is None or not math.isfinite(value) or diverged:
            continue
        if best is None or sign * (value - best[1]) > min_delta:
            best = (int(row["epoch"]), float(value))
    return best


def restored_note(config: Mapping[str, Any], status: str, epochs: Sequence[Mapping[str, Any]]) -> str | None:
    """The words that say the stored model is the best epoch's, for a run with
    ``train.restore_best`` that ended on its own (None otherwise)."""
    train = config.get("train", {})
    if not train.get("restore_best") or status not in RESTORED:
        return None
    monitor = train.get("monitor", "val_loss")
    found = best_epoch(epochs, monitor, float(train.get("min_delta", 0.0)))
    if found is None:
        return None
    epoch, value = found
    shown = f"{100 * value:.2f}%" if monitor.endswith("_acc") else f"{value:.4g}"
    return f"stored model: epoch {epoch}'s weights, the best {monitor} ({shown}) (train.restore_best)"
