"""A CIFAR-10-format stand-in (NOT CIFAR-10): Fashion-MNIST, coloured, written as CIFAR-10's pickles.

Real CIFAR-10 is not on the development machines. This writes ``ROOT/cifar-10-batches-py`` in the
official format (``data_batch_1`` … ``data_batch_5``, ``test_batch``, ``batches.meta``: uint8 rows of
3×32×32 bytes, plane by plane, and ``labels``) so that cnnlab (``data.dataset = "cifar10"``) and
seed 002's Keras code read the same files unchanged. The images are real photographs of clothes
from Fashion-MNIST (``../shared/datasets``), padded to 32×32 and painted with a random foreground
and background colour each, so there are 10 learnable classes of 32×32 colour images; accuracies
on it say nothing about CIFAR-10's.

    python benchmarks/cifar_standin.py ROOT [--train 10240] [--test 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import gzip
import pickle
from pathlib import Path

import numpy as np

from _common import DATA_DIR

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def coloured(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """N×28×28 grey images -> N×3×32×32 uint8: padded by 2, foreground and background colours
    drawn per image (the grey level blends the two)."""
    alpha = np.pad(images, ((0, 0), (2, 2), (2, 2))).astype(np.float32)[:, None] / 255.0
    fg = rng.integers(0, 256, size=(len(images), 3, 1, 1)).astype(np.float32)
    bg = rng.integers(0, 256, size=(len(images), 3, 1, 1)).astype(np.float32)
    return np.rint(bg + alpha * (fg - bg)).astype(np.uint8)


def write_standin(root: Path, train: int = 10_240, test: int = 2_000, seed: int = 0,
                  source: Path = DATA_DIR / "FashionMNIST" / "raw") -> Path:
    """Write the stand-in under ``root/cifar-10-batches-py``; returns that folder."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    splits = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", train),
              "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", test)}
    for split, (image_file, label_file, count) in splits.items():
        images, labels = _idx(source / image_file), _idx(source / label_file)
        pick = rng.permutation(len(labels))[:count]
        data = coloured(images[pick], rng).reshape(count, -1)
        chunks = np.array_split(np.arange(count), 5) if split == "train" else [np.arange(count)]
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        for name, rows in zip(names, chunks, strict=True):
            batch = {b"batch_label": name.encode(), b"data": data[rows],
                     b"labels": labels[pick][rows].astype(int).tolist(),
                     b"filenames": [f"{split}_{i}.png".encode() for i in pick[rows]]}
            with open(folder / name, "wb") as f:
                pickle.dump(batch, f)
    meta = {b"label_names": [c.encode() for c in CLASSES], b"num_cases_per_batch": -(-train // 5),
            b"num_vis": 3072}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--train", type=int, default=10_240)
    parser.add_argument("--test", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write_standin(args.root, args.train, args.test, args.seed))


if __name__ == "__main__":
    main()
