"""MNIST, Fashion-MNIST, CIFAR-10 and SVHN read from torchvision's folder layout.

The files are read directly (IDX, CIFAR pickles, SVHN .mat) into uint8 tensors; torchvision is
only used to download missing files. A root that already holds the files is never written to.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.config import DataConfig
from cnnlab.data.bundle import Source, Split
from cnnlab.data.idx import read_idx
from cnnlab.errors import DataError

DEFAULT_ROOT = Path("~/.cache/cnnlab/datasets")
DIGITS = [str(digit) for digit in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def data_root(cfg: DataConfig) -> Path:
    """Where datasets live: ``data.root``, else $CNNLAB_DATA_DIR, else ~/.cache/cnnlab/datasets."""
    return Path(cfg.root or os.environ.get("CNNLAB_DATA_DIR") or DEFAULT_ROOT).expanduser()


def root_setting(data_dir: str | Path | None) -> str | None:
    """The ``data.root`` to set for a ``--data-dir`` (CLI) or ``data_dir`` (Python API): that folder,
    else $CNNLAB_DATA_DIR, else None (each dataset's default place)."""
    root = data_dir or os.environ.get("CNNLAB_DATA_DIR")
    return str(root) if root else None


def _present(path: Path, allow_gz: bool) -> Path | None:
    """``path``, or ``path.gz`` when ``allow_gz``, whichever exists (the plain file first)."""
    gz = path.with_name(path.name + ".gz")
    if path.is_file():
        return path
    return gz if allow_gz and gz.is_file() else None


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders (deepest first) that a failed download created and left empty."""
    for folder in folders:
        with contextlib.suppress(OSError):  # not empty: something else is in it
            folder.rmdir()


def _ensure(title: str, root: Path, wanted: list[Path], download: bool,
            fetch: Callable[[str], Any], allow_gz: bool = False) -> list[Path]:
    """The files ``wanted`` (or their .gz), downloaded with ``fetch(root)`` if one is absent.

    Without ``download``, or when the download fails, raise a DataError that says where it
    looked and how to point cnnlab at a local copy.
    """
    missing = [path for path in wanted if _present(path, allow_gz) is None]
    if missing:
        gz = "[.gz]" if allow_gz else ""
        hint = (f"pass --data-dir or set CNNLAB_DATA_DIR to a local copy in torchvision's layout "
                f"(a folder holding {wanted[0].relative_to(root)}{gz})")
        if not download:
            raise DataError(f"{title} not found: {missing[0]}{gz} does not exist and "
                            f"data.download is false; {hint}, or set data.download = true")
        new_folders = [folder for folder in (missing[0].parent, *missing[0].parent.parents)
                       if not folder.exists()]
        try:
            fetch(str(root))
        except Exception as exc:  # torchvision raises URLError, RuntimeError, OSError, tar errors
            _remove_empty(new_folders)
            reason = " ".join(str(exc).split())[:300]
            raise DataError(f"could not download {title} into {root} ({reason}); looked for "
                            f"{missing[0]}{gz}; {hint}") from exc
    found = [_present(path, allow_gz) for path in wanted]
    for path, present in zip(wanted, found, strict=True):
        if present is None:
            raise DataError(f"{title} was downloaded into {root} but {path} is still missing")
    return [path for path in found if path is not None]


def _idx_split(image_file: Path, label_file: Path, classes: int) -> Split:
    images = read_idx(image_file, ndim=3)
    labels = read_idx(label_file, ndim=1)
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise DataError(f"{image_file}: expected uint8 images and labels, "
                        f"found {images.dtype} and {labels.dtype}")
    if len(images) != len(labels):
        raise DataError(f"{label_file}: {len(labels):,} labels for {len(images):,} images "
                        f"in {image_file}")
    if len(labels) and labels.max() >= classes:
        raise DataError(f"{label_file}: labels must be 0..{classes - 1}, found {labels.max()}")
    return Split(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long())


def _load_idx_set(cfg: DataConfig, title: str, folder: str, classes: list[str],
                  fetch: Callable[[str], Any]) -> Source:
    root = data_root(cfg)
    files = _ensure(title, root, [root / folder / "raw" / name for name in _IDX_FILES],
                    cfg.download, fetch, allow_gz=True)
    train = _idx_split(files[0], files[1], len(classes))
    test = _idx_split(files[2], files[3], len(classes))
    kind = "gzip IDX" if files[0].suffix == ".gz" else "IDX"
    return Source(train, test, classes, f"{title} from {root} ({kind})")


def load_mnist(cfg: DataConfig) -> Source:
    """MNIST from ``root/MNIST/raw`` (IDX files, plain or .gz)."""
    def fetch(root: str) -> None:
        from torchvision.datasets import MNIST
        MNIST(root, download=True)

    return _load_idx_set(cfg, "MNIST", "MNIST", DIGITS, fetch)


def load_fashion_mnist(cfg: DataConfig) -> Source:
    """Fashion-MNIST from ``root/FashionMNIST/raw`` (IDX files, plain or .gz)."""
    def fetch(root: str) -> None:
        from torchvision.datasets import FashionMNIST
        FashionMNIST(root, download=True)

    return _load_idx_set(cfg, "Fashion-MNIST", "FashionMNIST", FASHION_CLASSES, fetch)


_NUMPY_CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"
_PICKLE_ALLOWED = frozenset({
    ("_codecs", "encode"), ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.numeric", "_frombuffer"),
})


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and NumPy arrays, so a crafted file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        module = module.replace("numpy._core", "numpy.core")
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module.replace("numpy.core", _NUMPY_CORE), name)


def _read_pickle(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            content = _ArrayUnpickler(file, encoding="bytes").load()
    except Exception as exc:  # a corrupt pickle can fail in many ways
        raise DataError(f"{path}: not a readable CIFAR-10 pickle ({exc})") from exc
    if not isinstance(content, dict):
        raise DataError(f"{path}: expected a dict with keys {', '.join(keys)}")
    content = {k.decode() if isinstance(k, bytes) else k: v for k, v in content.items()}
    absent = [key for key in keys if key not in content]
    if absent:
        raise DataError(f"{path}: missing key(s) {', '.join(absent)}; "
                        f"found {', '.join(map(str, content)) or 'none'}")
    return content


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _read_pickle(path, ("data", "labels"))
    data, labels = batch["data"], np.asarray(batch["labels"])
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3 * 32 * 32):
        shape = getattr(data, "shape", type(data).__name__)
        raise DataError(f"{path}: expected 'data' as uint8 N×3072, found {shape}")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: expected {len(data):,} integer labels, found {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{path}: labels must be 0..9, found {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _cifar_split(paths: list[Path]) -> Split:
    parts = [_cifar_batch(path) for path in paths]
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    return Split(torch.from_numpy(images), torch.from_numpy(labels))


def load_cifar10(cfg: DataConfig) -> Source:
    """CIFAR-10 from ``root/cifar-10-batches-py`` (the official Python pickles)."""
    def fetch(root: str) -> None:
        from torchvision.datasets import CIFAR10
        CIFAR10(root, download=True)

    root = data_root(cfg)
    folder = root / "cifar-10-batches-py"
    names = [*_CIFAR_TRAIN, "test_batch", "batches.meta"]
    _ensure("CIFAR-10", root, [folder / name for name in names], cfg.download, fetch)
    meta = folder / "batches.meta"
    label_names = _read_pickle(meta, ("label_names",))["label_names"]
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in label_names]
    if len(classes) != 10:
        raise DataError(f"{meta}: expected 10 label_names, found {len(classes)}")
    train = _cifar_split([folder / name for name in _CIFAR_TRAIN])
    test = _cifar_split([folder / "test_batch"])
    return Source(train, test, classes, f"CIFAR-10 from {root} (Python pickles)")


def _svhn_split(path: Path) -> Split:
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except Exception as exc:  # scipy raises ValueError, MatReadError, OSError, ...
        raise DataError(f"{path}: not a readable SVHN .mat file ({exc})") from exc
    images, labels = mat.get("X"), mat.get("y")
    if images is None or labels is None:
        raise DataError(f"{path}: expected variables X and y, found "
                        f"{', '.join(k for k in mat if not k.startswith('__')) or 'none'}")
    if images.ndim != 4 or images.shape[:3] != (32, 32, 3) or images.dtype != np.uint8:
        raise DataError(f"{path}: expected X as uint8 32×32×3×N, found {images.dtype} "
                        f"{'×'.join(map(str, images.shape))}")
    labels = labels.reshape(-1).astype(np.int64)
    if len(labels) != images.shape[3]:
        raise DataError(f"{path}: {len(labels):,} labels in y for {images.shape[3]:,} images in X")
    if len(labels) and (labels.min() < 1 or labels.max() > 10):
        raise DataError(f"{path}: labels must be 1..10, found {labels.min()}..{labels.max()}")
    labels[labels == 10] = 0  # SVHN stores the digit 0 as label 10
    images = np.ascontiguousarray(images.transpose(3, 2, 0, 1))
    return Split(torch.from_numpy(images), torch.from_numpy(labels))


def load_svhn(cfg: DataConfig) -> Source:
    """SVHN cropped digits from ``root/train_32x32.mat`` and ``root/test_32x32.mat``; with
    ``data.extra`` the 531,131 easier ``extra_32x32.mat`` digits are added to the training set."""
    splits = ["train", "test"] + (["extra"] if cfg.extra else [])

    def fetch(root: str) -> None:
        from torchvision.datasets import SVHN
        for split in splits:
            SVHN(root, split=split, download=True)

    root = data_root(cfg)
    files = [root / f"{split}_32x32.mat" for split in splits]
    _ensure("SVHN", root, files, cfg.download, fetch)
    train = _svhn_split(files[0])
    if cfg.extra:
        extra = _svhn_split(files[2])
        train = Split(torch.cat([train.images, extra.images]), torch.cat([train.labels, extra.labels]))
    test = _svhn_split(files[1])
    return Source(train, test, DIGITS, f"SVHN{' + extra' if cfg.extra else ''} from {root} (.mat)")
