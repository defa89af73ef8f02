"""`npz`: a user's arrays ``x``, ``y`` (optionally ``x_test``, ``y_test``, ``classes``)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from cnnlab.config import DataConfig
from cnnlab.data.bundle import Source, Split
from cnnlab.data.transforms import to_uint8
from cnnlab.errors import DataError


def _images(array: np.ndarray, where: str) -> np.ndarray:
    """N×H×W, N×H×W×C or N×C×H×W (C in 1, 3) pixels as uint8 N×C×H×W."""
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[1] not in (1, 3) and array.shape[3] in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    elif array.ndim != 4 or array.shape[1] not in (1, 3):
        raise DataError(f"{where}: expected images as N×H×W, N×H×W×C or N×C×H×W with C 1 or 3, "
                        f"found shape {array.shape}")
    return np.ascontiguousarray(to_uint8(array, where))


def _labels(array: np.ndarray, count: int, where: str) -> np.ndarray:
    """Integer labels ≥ 0, one per image, as int64."""
    array = array.reshape(-1) if array.ndim == 2 and array.shape[1] == 1 else array
    if array.ndim != 1 or len(array) != count:
        raise DataError(f"{where}: expected {count:,} labels (one per image), "
                        f"found shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{where}: labels must be integers 0..K-1, found dtype {array.dtype}")
    if count and array.min() < 0:
        raise DataError(f"{where}: labels must be integers 0..K-1, found {array.min()}")
    return array.astype(np.int64)


def load_npz(cfg: DataConfig) -> Source:
    """Arrays from the .npz at ``data.path``; without x_test the test set is split off later."""
    path = Path(cfg.path or "").expanduser()
    if not path.is_file():
        raise DataError(f"data.path: {str(path)!r} is not a file (expected an .npz with x and y)")
    with path.open("rb") as handle:
        start = handle.read(16)
    if not start.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # no zip at all (a damaged one is read below)
        raise DataError(f"{path}: is not an .npz file (a zip of NumPy arrays, as np.savez writes); "
                        f"it starts with {start!r}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from exc
    keys = ", ".join(arrays) or "none"
    absent = [key for key in ("x", "y") if key not in arrays]
    if absent:
        raise DataError(f"{path}: missing array(s) {', '.join(absent)}; the file has {keys}")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: x_test and y_test go together; the file has {keys}")

    def split(x_key: str, y_key: str) -> Split:
        images = _images(arrays[x_key], f"{path}[{x_key}]")
        labels = _labels(arrays[y_key], len(images), f"{path}[{y_key}]")
        return Split(torch.from_numpy(images), torch.from_numpy(labels))

    train = split("x", "y")
    test = split("x_test", "y_test") if "x_test" in arrays else None
    top = max(int(s.labels.max()) if len(s) else -1 for s in (train, test) if s is not None)
    if "classes" in arrays:
        classes = [name.decode() if isinstance(name, bytes) else str(name)
                   for name in arrays["classes"].reshape(-1)]
        if top >= len(classes):
            raise DataError(f"{path}: label {top} has no name in classes "
                            f"({len(classes)} names)")
    else:
        classes = [str(label) for label in range(top + 1)]
    return Source(train, test, classes, f"arrays from {path}")
