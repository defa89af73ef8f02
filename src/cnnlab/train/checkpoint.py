"""Atomic checkpoints that load with `weights_only=True`, so a file from elsewhere runs no code."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import CheckpointError
from cnnlab.files import write_atomic

FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any], keep_previous: str | Path | None = None) -> None:
    """Write ``state`` atomically (`cnnlab.files.write_atomic`); with ``keep_previous`` the
    checkpoint it replaces is first renamed there.

    A crash at any point leaves either the previous checkpoint or the new one, never half of one.
    """
    write_atomic(path, lambda handle: torch.save({"format": FORMAT_VERSION, **state}, handle),
                 keep_previous=keep_previous)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with `torch.load(weights_only=True)`; anything else is a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"checkpoint {path} was refused: it holds objects other than tensors and plain "
            f"data, so loading it could run code ({str(exc).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} is not a cnnlab checkpoint (format {FORMAT_VERSION})")
    return state


def load_resumable_checkpoint(paths: list[Path], last_stored_epoch: int) -> dict[str, Any] | None:
    """The first of ``paths`` (newest first) that loads and whose epoch has its row stored
    (epoch ≤ ``last_stored_epoch``); None when no checkpoint file exists or none is that old
    (the run starts again from its seed). A damaged newest checkpoint, or one written just
    before a crash kept its epoch row from the store, falls back to the one before it.
    CheckpointError (the newest one's) when files exist but none loads."""
    errors: list[CheckpointError] = []
    loaded = False
    for path in paths:
        if not path.exists():
            continue
        try:
            state = load_checkpoint(path)
        except CheckpointError as exc:
            errors.append(exc)
            continue
        loaded = True
        if state["epoch"] <= last_stored_epoch:
            return state
    if errors and not loaded:
        raise errors[0]
    return None
