"""Per-domain accuracies of a run on a mixture: read from its epoch rows (``val/<domain>_acc``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def domain_names(epochs: Sequence[dict[str, Any]]) -> list[str]:
    """Evaluation domains with per-domain metrics (``val/<domain>_acc``), in stored order."""
    names: list[str] = []
    for row in epochs:
        for key in row:
            if key.startswith(("val/", "test/")) and key.endswith("_acc"):
                name = key.split("/", 1)[1][: -len("_acc")]
                if name not in names:
                    names.append(name)
    return names


def domain_summary(epochs: Sequence[dict[str, Any]], best_epoch: int | None) -> list[dict[str, Any]]:
    """Per domain: the last measured val and test accuracy, and both at the best epoch (by overall
    val acc)."""
    def last(key: str) -> float | None:
        return next((row[key] for row in reversed(epochs) if row.get(key) is not None), None)

    best = next((row for row in epochs if row["epoch"] == best_epoch), {})
    return [{"domain": name,
             "final_val_acc": last(f"val/{name}_acc"), "best_val_acc": best.get(f"val/{name}_acc"),
             "final_test_acc": last(f"test/{name}_acc"), "best_test_acc": best.get(f"test/{name}_acc")}
            for name in domain_names(epochs)]
