"""A run's checkpoint file: written atomically, loaded with `weights_only=True` so a file from
elsewhere runs no code, and told apart when refused: damaged, unsafe, or holding non-finite weights."""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import CheckpointError
from cnnlab.files import write_atomic

FORMAT_VERSION = 1
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def save_checkpoint(path: str | Path, state: dict[str, Any], keep_previous: str | Path | None = None) -> None:
    """Write ``state`` atomically (`cnnlab.files.write_atomic`); with ``keep_previous`` the
    checkpoint it replaces is first renamed there.

    A crash at any point leaves either the previous checkpoint or the new one, never half of one.
    """
    path = Path(path)
    # Serialised in memory first: a full disk is then an OSError naming the file, not a torch
    # zip-writer error.
    buffer = io.BytesIO()
    torch.save({"format": FORMAT_VERSION, **state}, buffer)
    try:
        write_atomic(path, buffer.getvalue(), keep_previous=keep_previous)
    except OSError as exc:
        if exc.errno is not None and exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with `torch.load(weights_only=True)`. A missing, damaged or unsafe file,
    or one whose model weights are not all finite, is a CheckpointError saying which."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        unsafe = _GLOBAL.search(str(exc))
        if unsafe is None:
            raise CheckpointError(_damaged(path, "it is not a complete torch checkpoint")) from None
        raise CheckpointError(
            f"checkpoint {path} was refused: it asks to load {unsafe.group(1)}, which is not a "
            "tensor or plain data, so loading it could run code; cnnlab never writes such a "
            "file: train the run again, or get its checkpoint from whoever trained it"
        ) from None
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc.strerror or exc}") from None
    except Exception as exc:  # torch reports a damaged file as many error types
        raise CheckpointError(_damaged(path, f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                                      if str(exc) else type(exc).__name__)) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} is not a cnnlab checkpoint (format {FORMAT_VERSION})")
    bad = nonfinite_weights(state.get("model"))
    if bad:
        raise CheckpointError(f"checkpoint {path} was refused: its weights {', '.join(bad[:3])}"
                              f"{' …' if len(bad) > 3 else ''} hold NaN or infinite values")
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


def nonfinite_weights(weights: Any) -> list[str]:
    """Names of the floating-point tensors in a state dict that hold NaN or ±inf."""
    if not isinstance(weights, dict):
        return []
    return [str(name) for name, tensor in weights.items()
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point()
            and not bool(torch.isfinite(tensor).all())]


def _damaged(path: Path, detail: str) -> str:
    return (f"checkpoint {path} is corrupt or truncated ({detail}); resume or retrain the run "
            "to write it again")
