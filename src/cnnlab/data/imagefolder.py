"""`imagefolder`: a user's images, one folder per class, as torchvision's ImageFolder finds them.

``path/train`` and ``path/test`` hold the two splits when both exist; otherwise the class
folders sit directly under ``path`` and the test set is split off later.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cnnlab.config import DataConfig
from cnnlab.data.bundle import Source, Split
from cnnlab.data.cache import (
    CLEAR_HINT,
    CacheUnusable,
    Entry,
    building,
    discard,
    read_entry,
    wait_for_writes,
    write_in_background,
)
from cnnlab.data.decode import FileChanged, decode_files, worker_count
from cnnlab.data.interrupt import StopRequest, stop_on_signals
from cnnlab.errors import DataError, user_message

ATTEMPTS = 3  # a folder still changing after this many decodes is an error


# torchvision's ImageFolder extensions (`torchvision.datasets.folder.IMG_EXTENSIONS`), listed
# here so that finding the files does not import torchvision (about a second of every start).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _find_images(
    folder: Path, classes: list[str] | None
) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names and (file, label) pairs under ``folder``, found with torchvision ImageFolder's
    rules (class folders sorted by name, files sorted within each, walked into sub-folders,
    symbolic links followed, extensions matched without case); the same list, in the same order.

    With ``classes`` given (a test folder), labels follow them and a class may have no images.
    """
    try:
        found = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    except FileNotFoundError as exc:
        raise DataError(f"{folder}: {exc.strerror or exc}. Expected one folder per class holding "
                        f"images ({', '.join(IMG_EXTENSIONS)})") from exc
    if not found:
        raise DataError(f"{folder}: no class folder in it. Expected one folder per class holding "
                        f"images ({', '.join(IMG_EXTENSIONS)})")
    if classes is not None and (unknown := sorted(set(found) - set(classes))):
        raise DataError(f"{folder}: class folder(s) {', '.join(unknown)} are not among the "
                        f"training classes ({', '.join(classes)})")
    allow_empty = classes is not None
    classes = found if classes is None else classes
    samples: list[tuple[str, int]] = []
    empty = []
    for label, name in sorted(enumerate(classes), key=lambda item: item[1]):
        directory = os.path.join(folder, name)
        before = len(samples)
        if os.path.isdir(directory):
            for where, _, names in sorted(os.walk(directory, followlinks=True)):
                samples += [(os.path.join(where, file), label) for file in sorted(names)
                            if file.lower().endswith(IMG_EXTENSIONS)]
        if len(samples) == before:
            empty.append(name)
    if empty and not allow_empty:
        raise DataError(f"{folder}: no valid file (image) in the class folder(s) "
                        f"{', '.join(sorted(empty))}. Expected one folder per class holding images "
                        f"({', '.join(IMG_EXTENSIONS)})")
    return classes, samples


def load_imagefolder(cfg: DataConfig) -> Source:
    """Every image decoded into memory: gray if all are gray (or ``data.channels``), else RGB."""
    root = Path(cfg.path or "").expanduser()
    if not root.is_dir():
        raise DataError(f"data.path: {str(root)!r} is not a folder (expected one sub-folder "
                        f"per class, or train/ and test/ holding them)")
    has_train, has_test = (root / "train").is_dir(), (root / "test").is_dir()
    if has_train != has_test:
        raise DataError(f"{root}: has {'train/' if has_train else 'test/'} but not "
                        f"{'test/' if has_train else 'train/'}; give both, or put the class "
                        f"folders directly in {root}")
    train_dir = root / "train" if has_train else root
    mode = {1: "L", 3: "RGB"}.get(cfg.channels or 0)  # None: gray stays gray, unless any is not
    say = Console(stderr=True, highlight=False, soft_wrap=True)
    with stop_on_signals() as stop:
        for _ in range(ATTEMPTS):
            classes, train_files, test_files = _listing(root, train_dir, has_test)
            files = train_files + test_files
            try:
                images = _decoded(root, [file for file, _ in files],
                                  lambda: _listing(root, train_dir, has_test), mode, cfg.size, stop, say)
                break
            except FileChanged as exc:
                changed = exc.path
                say.print(f"data: {changed} changed while {root} was being decoded; listing and "
                          "decoding the folder again", markup=False)
        else:
            raise DataError(f"{root}: files keep changing while they are decoded (the last: {changed}); "
                            "run again once the folder has stopped changing")
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    count = len(train_files)
    train = Split(images[:count], labels[:count])
    test = Split(images[count:], labels[count:]) if has_test else None
    layout = "train/ and test/" if has_test else "class folders"
    return Source(train, test, classes, f"image folder {root} ({layout})")


Listing = tuple[list[str], list[tuple[str, int]], list[tuple[str, int]]]


def _listing(root: Path, train_dir: Path, has_test: bool) -> Listing:
    """Class names, and the (file, label) pairs of the training and test images."""
    classes, train_files = _find_images(train_dir, None)
    test_files = _find_images(root / "test", classes)[1] if has_test else []
    return classes, train_files, test_files


def _states(paths: list[str]) -> list[tuple[int, int]]:
    """(size, modification time in ns) of each file; FileChanged for one that is gone."""
    states = []
    for path in paths:
        try:
            stat = os.stat(path)
        except FileNotFoundError as exc:
            raise FileChanged(path) from exc
        except OSError as exc:
            raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
        states.append((stat.st_size, stat.st_mtime_ns))
    return states


def _relative(paths: list[str], root: Path) -> list[str]:
    """Each path relative to ``root``: a slice where it starts with ``root`` as written (every
    file the listing found does; 60,000 ``os.path.relpath`` calls took 0.2 s of every start)."""
    prefix = os.path.join(str(root), "")
    return [path[len(prefix):] if path.startswith(prefix) else os.path.relpath(path, root) for path in paths]


def _decoded(root: Path, paths: list[str], listing: Callable[[], Listing], mode: str | None,
             size: int | None, stop: StopRequest, say: Console) -> torch.Tensor:
    """The images of ``paths`` as uint8 N×C×H×W: from the cache when it holds this folder as it is
    now, else decoded in parallel and cached. FileChanged when the folder changes meanwhile."""
    states = _states(paths)
    stop.check(f"listing {root}")
    entry = Entry({"kind": "imagefolder", "root": str(root.resolve()), "mode": mode, "size": size},
                  [[path, *state] for path, state in zip(_relative(paths, root), states, strict=True)])
    where = f"({entry.path}; {CLEAR_HINT})"
    started = time.perf_counter()
    wait_for_writes(stop)  # this process may be writing this very entry
    cached = _read(entry, say, len(paths))
    if cached is None:
        def waiting(pid: str) -> None:
            say.print(f"data: waiting for process {pid}, which is decoding {root} into the cache",
                      markup=False)

        with building(entry, stop, on_wait=waiting) as hand_over:
            cached = _read(entry, say, len(paths))  # the process we waited for wrote it
            if cached is None:
                images = _decode(root, paths, states, mode, size, stop, say)
                _unchanged(paths, states, listing)
                stop.check(f"caching {root}")
                seconds = time.perf_counter() - started
                meta = {"description": f"image folder {root}: {len(images):,} images "
                                       f"{'×'.join(map(str, images.shape[1:]))}"}
                say.print(f"data: decoded {len(images):,} images of {root} in {seconds:.1f} s; caching "
                          f"them meanwhile {where}", markup=False)
                write_in_background(entry, {"images": images}, meta, hand_over(), lambda exc: say.print(
                    f"data: could not cache the images of {root} ({user_message(exc)}); they are "
                    "decoded again next time", markup=False))
                return torch.from_numpy(images)
    say.print(f"data: read {len(paths):,} decoded images of {root} from the cache in "
              f"{time.perf_counter() - started:.1f} s {where}", markup=False)
    return torch.from_numpy(cached)


def _unchanged(paths: list[str], states: list[tuple[int, int]], listing: Callable[[], Listing]) -> None:
    """FileChanged naming a file added, removed or modified since ``paths`` were listed."""
    _, train_files, test_files = listing()
    now = [file for file, _ in train_files + test_files]
    if now != paths:
        raise FileChanged(next((a for a, b in zip(now, paths, strict=False) if a != b),
                               (now + paths)[min(len(now), len(paths))]))
    for path, state, current in zip(paths, states, _states(paths), strict=True):
        if state != current:
            raise FileChanged(path)


def _read(entry: Entry, say: Console, count: int) -> np.ndarray | None:
    """The entry's images, or None; an unusable entry is named in one line and deleted."""
    try:
        found = read_entry(entry)
        if found is None:
            return None
        images = found[0].get("images")
        if images is None or images.dtype != np.uint8 or images.ndim != 4 or len(images) != count:
            raise CacheUnusable(f"damaged (it does not hold {count:,} uint8 images)")
        return images
    except CacheUnusable as exc:
        say.print(f"data: the cache entry {entry.path} is {exc}; decoding again", markup=False)
        discard(entry)
        return None


def _decode(root: Path, paths: list[str], states: list[tuple[int, int]], mode: str | None,
            size: int | None, stop: StopRequest, say: Console) -> np.ndarray:
    """Decode every file (a progress bar on a terminal) into one N×C×H×W uint8 array."""
    processes = worker_count(len(paths))
    say.print(f"data: decoding {len(paths):,} images of {root} with {processes} "
              f"process{'es' * (processes != 1)} (once: they are cached)", markup=False)
    with Progress(TextColumn("decoding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=say, transient=True, disable=not say.is_terminal) as progress:
        task = progress.add_task("decoding", total=len(paths))
        return decode_files(paths, states, mode=mode, size=size, stop=stop, same_size=size is None,
                            on_progress=lambda done: progress.update(task, completed=done))
