"""Synthetic runs with realistic curves, stored without training: for tests, benchmarks and demos."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from cnnlab.config import Experiment, apply_overrides
from cnnlab.store import RunStore


def curves(
    epochs: int = 20,
    *,
    final_acc: float = 0.98,
    start_acc: float = 0.6,
    speed: float = 2.0,
    gap: float = 0.01,
    noise: float = 0.002,
    overfit_from: int | None = None,
    diverge_at: int | None = None,
    seed: int = 0,
) -> list[dict[str, float]]:
    """Per-epoch metrics of a plausible run: accuracy approaching ``final_acc`` with time constant
    ``speed`` epochs, training ``gap`` above validation, validation loss rising after
    ``overfit_from``, losses NaN from ``diverge_at``."""
    rng = np.random.default_rng(seed)
    rows = []
    for epoch in range(1, epochs + 1):
        progress = 1 - math.exp(-(epoch - 1) / speed)
        acc = start_acc + (final_acc - start_acc) * progress
        train_acc = min(0.9999, acc + gap * progress)
        val_acc = acc + float(rng.normal(0, noise))
        train_loss = 2.0 * (1 - train_acc) ** 1.1 + 0.002
        val_loss = 2.0 * (1 - acc) ** 1.1 + 0.002 + abs(float(rng.normal(0, noise)))
        if overfit_from is not None and epoch > overfit_from:
            late = epoch - overfit_from
            train_acc = min(0.9999, train_acc + 0.004 * late)
            train_loss *= 0.8**late
            val_loss *= 1 + 0.08 * late
            val_acc -= 0.0008 * late
        if diverge_at is not None and epoch >= diverge_at:
            train_loss = val_loss = math.nan
            train_acc = val_acc = 0.1 + float(rng.uniform(-0.01, 0.01))
        rows.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "val_loss": val_loss,
                "val_acc": min(val_acc, 1.0),
                "test_acc": min(1.0, val_acc - 0.002),
                "lr": 0.0,
                "seconds": 1.5,
            }
        )
        if diverge_at is not None and epoch >= diverge_at:
            break
    return rows


def outcome(settings: Mapping[str, Any], seed: int, epochs: int) -> list[dict[str, float]]:
    """Curves of a made-up but coherent response surface: the learning rate has an optimum (1e-3 for
    Adam, 1e-2 otherwise) and diverges 100× above it, SGD learns slower, no dropout overfits."""
    lr = float(settings.get("train.lr", 1e-3))
    optimizer = settings.get("train.optimizer", "adam")
    best_lr = 1e-3 if optimizer in ("adam", "adamw") else 1e-2
    distance = math.log10(lr / best_lr)
    dropout = float(settings.get("model.dropout", 0.5) or 0.0)
    rng = np.random.default_rng(seed)
    final = 0.985 - 0.02 * distance**2 - (0.01 if optimizer == "sgd" else 0.0) + float(rng.normal(0, 0.002))
    rows = curves(
        epochs,
        final_acc=max(0.15, min(0.995, final)),
        speed=(3.0 if optimizer == "sgd" else 1.5) * (1 + max(0.0, -distance)),
        gap=0.002 + 0.02 * (0.5 - min(dropout, 0.5)),
        noise=0.002 + 0.004 * max(0.0, distance),
        overfit_from=6 if dropout == 0 else None,
        diverge_at=4 + seed % 3 if distance >= 2 else None,
        seed=seed,
    )
    for row in rows:
        row["lr"] = lr
    return rows


def store_run(
    store: RunStore,
    config: dict[str, Any],
    rows: Sequence[Mapping[str, float]],
    *,
    sweep: str | None = None,
    trial: int | None = None,
    status: str | None = None,
) -> str:
    """Store one run with these epochs and the summary the trainer would write; returns its id."""
    from cnnlab.checks import filled_hashes

    hashes = filled_hashes(config)  # as a trained run of this config is hashed
    run_id = store.create_run(
        name=config.get("name"),
        config=config,
        config_hash=hashes[0],
        cell_hash=hashes[1],
        seed=int(config.get("seed", 0)),
        host="synthetic",
        versions={"cnnlab": "synthetic"},
        sweep=sweep,
        trial=trial,
    )
    for row in rows:
        store.log_epoch(run_id, int(row["epoch"]), {k: v for k, v in row.items() if k != "epoch"})
    finite = [row for row in rows if math.isfinite(row.get("val_acc", math.nan))]
    best = max(finite, key=lambda row: row["val_acc"]) if finite else None
    diverged = any(not math.isfinite(row.get("train_loss", 0.0)) for row in rows)
    last = rows[-1] if rows else {}
    finals = {
        f"final_{split}_{m}": last.get(f"{split}_{m}")
        for split in ("train", "val", "test")
        for m in ("loss", "acc")
    }
    store.update_run(
        run_id,
        status=status or ("diverged" if diverged else "completed"),
        epochs_done=len(rows),
        finished_at=datetime.now(UTC),
        duration_s=1.5 * len(rows),
        best_val_acc=best["val_acc"] if best else None,
        best_epoch=int(best["epoch"]) if best else None,
        **finals,
    )
    return run_id


def make_sweep(
    store: RunStore,
    name: str,
    grid: Mapping[str, Sequence[Any]],
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int = 20,
) -> list[str]:
    """Store a synthetic sweep: every combination of ``grid`` (dotted keys) for every seed."""
    base = Experiment().resolved()
    base["name"] = name
    base["train"]["epochs"] = epochs
    ids = []
    keys = list(grid)
    for trial, combo in enumerate(itertools.product(*(grid[k] for k in keys), seeds)):
        overrides = dict(zip(keys, combo[:-1], strict=True))
        config = apply_overrides(base, {**overrides, "seed": combo[-1]})
        rows = outcome(overrides, combo[-1], epochs)
        ids.append(store_run(store, config, rows, sweep=name, trial=trial))
    return ids


def make_factorial(
    store: RunStore,
    name: str,
    grid: Mapping[str, Sequence[Any]],
    final_acc: Callable[[dict[str, Any]], float],
    *,
    zipped: Mapping[str, Sequence[Any]] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    sd: float = 0.004,
    epochs: int = 6,
    status: Callable[[dict[str, Any], int], str | None] = lambda settings, seed: None,
) -> list[str]:
    """Store a study with known truth: every combination of ``grid`` crossed with the ``zipped`` rows
    (keys moved together), each seed settling at ``final_acc(settings)`` plus normal noise of
    standard deviation ``sd``; ``status`` may mark a run failed (``"failed"``) or leave it out
    (``"skip"``)."""
    base = Experiment().resolved()
    base["name"] = name
    base["train"]["epochs"] = epochs
    zipped = zipped or {}
    rows = [dict(zip(zipped, values, strict=True)) for values in zip(*zipped.values(), strict=True)] or [{}]
    ids = []
    keys = list(grid)
    combos = itertools.product(itertools.product(*(grid[k] for k in keys)), rows, seeds)
    for trial, (values, row, seed) in enumerate(combos):
        settings = {**dict(zip(keys, values, strict=True)), **row}
        state = status(settings, seed)
        if state == "skip":
            continue
        rng = np.random.default_rng([trial, seed])
        final = final_acc(settings) + float(rng.normal(0, sd))
        config = apply_overrides(base, {**settings, "seed": seed})
        curve = curves(epochs, final_acc=final, start_acc=min(final, 0.6), noise=0.0, seed=seed)
        ids.append(store_run(store, config, curve, sweep=name, trial=trial, status=state))
    return ids
