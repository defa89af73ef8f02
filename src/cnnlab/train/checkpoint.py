"""Atomic checkpoints that load with `weights_only=True`, so a file from elsewhere runs no code."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import CheckpointError

FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any], keep_previous: str | Path | None = None) -> None:
    """Write ``state`` to a temporary file beside ``path``, fsync it, then rename over ``path``;
    with ``keep_previous`` the checkpoint it replaces is first renamed there.

    A crash at any point leaves either the previous checkpoint or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT_VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def load_newest_checkpoint(paths: list[Path]) -> dict[str, Any]:
    """The first of ``paths`` (newest first) that loads; when none does, the newest one's error.

    A checkpoint damaged after it was written, or one a crash left half-renamed, falls back to
    the one before it."""
    errors: list[CheckpointError] = []
    for path in paths:
        try:
            return load_checkpoint(path)
        except CheckpointError as exc:
            errors.append(exc)
    raise errors[0] if errors else CheckpointError("no checkpoint paths given")
