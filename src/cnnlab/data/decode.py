"""Image files decoded to uint8 arrays in parallel processes, each file opened and read once.

A worker opens a file, checks that its size and modification time are still those the cache key
was made from (`FileChanged` otherwise), reads it whole and decodes it from memory. Gray images
(of any gray mode) become one channel and every other image RGB, unless a mode is asked for;
PIL's gray-to-RGB conversion is a plain copy of the channel, so the caller may widen gray arrays
later and get what converting to RGB at once gives. Workers ignore Ctrl-C (the terminal sends
it to them too): the parent notices it through its `StopRequest` and ends them.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from cnnlab.data.interrupt import CHECK_S, StopRequest
from cnnlab.errors import DataError

GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
CHUNK = 64  # files per task handed to a worker
SHOWN_ERRORS = 20  # unreadable files named in the error, a line each (the rest are counted)
_PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)

# One decoded file: (array, why it is unreadable, whether it changed since it was listed).
Result = tuple[np.ndarray | None, str | None, bool]


class FileChanged(Exception):
    """A file's size or modification time is not what it was when the folder was listed."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def decode_file(path: str, state: tuple[int, int], mode: str | None, size: int | None) -> Result:
    """Open ``path`` once: its pixels as H×W×C uint8 (``mode`` "L" or "RGB", or None: "L" for a
    gray image, else "RGB"), resized to size×size when ``size`` is given."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below, after decoding from it)
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})", False
    with handle:
        try:
            stat = os.fstat(handle.fileno())
        except OSError as exc:
            return None, f"cannot be read ({exc.strerror or exc})", False
        if (stat.st_size, stat.st_mtime_ns) != tuple(state):
            return None, None, True
        try:  # decoded from the open file: PIL reads it once, without a copy of its bytes
            with Image.open(handle) as image:
                target = mode or ("L" if image.mode in GRAY_MODES else "RGB")
                array = np.asarray(image if image.mode == target else image.convert(target), dtype=np.uint8)
        except UnidentifiedImageError:
            return None, "not a readable image (no image format Pillow knows)", False
        except _READ_ERRORS as exc:
            return None, f"not a readable image ({exc})", False
    array = array.reshape(*array.shape[:2], -1)
    if size is not None and array.shape[:2] != (size, size):
        import torch

        from cnnlab.data.transforms import resize

        tensor = torch.tensor(array).permute(2, 0, 1).unsqueeze(0)  # a copy: PIL's array is read-only
        array = resize(tensor, size)[0].permute(1, 2, 0).numpy()
    return array, None, False


@dataclass
class Chunk:
    """The files ``start``, ``start + 1``, … of one task, decoded in a worker: ``images`` stacks
    those at ``offsets`` (the readable ones) as N×C×H×W, C = 3 when any of them is RGB (a gray
    image repeated, as PIL's conversion does), None when their ``sizes`` (H, W) differ;
    ``errors`` says why each unreadable one is; ``changed`` is the first file that changed."""

    start: int
    images: np.ndarray | None
    offsets: list[int]
    sizes: list[tuple[int, int]]
    errors: dict[int, str] = field(default_factory=dict)
    changed: int | None = None


def _decode_chunk(task: tuple[int, list[str], list[tuple[int, int]], str | None, int | None]) -> Chunk:
    """A task's files decoded and stacked (one array crosses the pipe, not one per image)."""
    start, paths, states, mode, size = task
    arrays, chunk = [], Chunk(start, None, [], [])
    for offset, (path, state) in enumerate(zip(paths, states, strict=True)):
        array, error, changed = decode_file(path, state, mode, size)
        if changed:
            chunk.changed = offset
            return chunk
        if error is not None:
            chunk.errors[offset] = error
            continue
        assert array is not None
        arrays.append(array)
        chunk.offsets.append(offset)
        chunk.sizes.append(array.shape[:2])
    if arrays and len(set(chunk.sizes)) == 1:
        channels = max(array.shape[2] for array in arrays)
        chunk.images = np.empty((len(arrays), channels, *arrays[0].shape[:2]), np.uint8)
        for i, array in enumerate(arrays):
            chunk.images[i] = array.transpose(2, 0, 1)  # gray broadcasts to RGB
    return chunk


def _work(tasks: list[Any], results: Connection, parent: int) -> None:
    """A worker process: decode its share of the chunks, sending each chunk's results back."""
    _worker_init(parent)
    try:
        for task in tasks:
            results.send(_decode_chunk(task))
    finally:
        results.close()


def _in_processes(tasks: list[Any], processes: int, take: Callable[..., None], stop: StopRequest,
                  doing: str) -> None:
    """Chunks k, k + processes, … to worker k; results taken as they come, ``stop`` looked at
    every CHECK_S; every worker killed on the way out, whatever happened."""
    context = _context()
    workers: dict[Connection, Any] = {}
    try:
        for k in range(processes):
            reader, writer = context.Pipe(duplex=False)
            process = context.Process(target=_work, args=(tasks[k::processes], writer, os.getpid()),
                                      daemon=True, name=f"cnnlab-decode-{k + 1}")
            process.start()
            writer.close()
            workers[reader] = process
        remaining = len(tasks)
        while remaining:
            stop.check(doing)
            for reader in wait(list(workers), timeout=CHECK_S):
                try:
                    chunk = reader.recv()
                except EOFError:  # the worker is done, or died
                    process = workers.pop(reader)  # type: ignore[arg-type]
                    process.join()
                    if process.exitcode != 0:
                        raise DataError(f"a process decoding the images ended unexpectedly (exit code "
                                        f"{process.exitcode}); nothing was cached") from None
                    continue
                take(chunk)
                remaining -= 1
    finally:
        for reader, process in workers.items():
            if process.is_alive():
                process.kill()
            process.join()
            reader.close()


def _worker_init(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides, and ends us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):  # die with the parent, even when it is killed with SIGKILL
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # it died before the line above
            os._exit(1)
    if "torch" in sys.modules:  # forked from a process with an OpenMP pool: resize on one thread
        import torch

        torch.set_num_threads(1)


def worker_count(files: int) -> int:
    """Processes to decode ``files`` files with: one per CPU this process may use, at most one
    per chunk; 1 (decoding in this process) for a single chunk."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cpus, -(-files // CHUNK)))


def _context() -> Any:
    # fork: workers start in milliseconds and do not import the caller's main module again (a
    # user's script without `if __name__ == "__main__"`); they only run PIL and NumPy, and torch
    # on one thread for resizing.
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return multiprocessing.get_context(method)


def decode_files(paths: Sequence[str], states: Sequence[tuple[int, int]], *, mode: str | None,
                 size: int | None, stop: StopRequest, same_size: bool,
                 on_progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Every file decoded (see `decode_file`), in order, with `worker_count` processes, as one
    N×C×H×W uint8 array: C = 1 when every image is gray, else 3 (gray ones repeated).

    Raises `FileChanged` for a file that changed since ``states`` was taken, DataError naming
    every unreadable file (a line each) once all were tried, DataError at the first size that differs from the
    first image's when ``same_size``, and LoadInterrupted within CHECK_S of Ctrl-C or SIGTERM."""
    chunks: dict[int, np.ndarray] = {}  # by the index of their first file
    errors: dict[int, str] = {}
    first: tuple[int, tuple[int, ...]] | None = None
    done = 0
    doing = f"decoding {len(paths):,} images"

    def take(chunk: Chunk) -> None:
        nonlocal first, done
        if chunk.changed is not None:
            raise FileChanged(paths[chunk.start + chunk.changed])
        errors.update((chunk.start + offset, why) for offset, why in chunk.errors.items())
        for offset, shape in zip(chunk.offsets, chunk.sizes, strict=True):
            if not same_size:
                break
            if first is None:
                first = (chunk.start + offset, shape)
            elif shape != first[1]:
                raise DataError(_sizes_differ(paths, first, (chunk.start + offset, shape)))
        if chunk.images is not None:
            chunks[chunk.start] = chunk.images
        done += len(chunk.offsets) + len(chunk.errors)
        if on_progress is not None:
            on_progress(done)

    tasks = [(start, list(paths[start:start + CHUNK]), list(states[start:start + CHUNK]), mode, size)
             for start in range(0, len(paths), CHUNK)]
    processes = worker_count(len(paths))
    if processes == 1:
        with stop.raising(doing):  # a file on a stalled disk may block: the signal raises
            for task in tasks:
                take(_decode_chunk(task))
    else:
        _in_processes(tasks, processes, take, stop, doing)
    if errors:
        raise DataError(_unreadable(paths, errors))
    stacked = [chunks[start] for start in sorted(chunks)]  # workers finish them out of order
    channels = max(images.shape[1] for images in stacked)
    out = np.empty((sum(map(len, stacked)), channels, *stacked[0].shape[2:]), np.uint8)
    start = 0
    for images in stacked:
        out[start:start + len(images)] = images  # a gray chunk broadcasts when others are RGB
        start += len(images)
    return out


def _sizes_differ(paths: Sequence[str], first: tuple[int, tuple[int, ...]],
                  other: tuple[int, tuple[int, ...]]) -> str:
    def shown(item: tuple[int, tuple[int, ...]]) -> str:
        index, (height, width) = item
        return f"{width}×{height} ({paths[index]})"

    return (f"images have different sizes: {shown(first)} and {shown(other)}; set data.size to "
            f"resize them all to one square size")


def _unreadable(paths: Sequence[str], errors: dict[int, str]) -> str:
    """A line per unreadable file (``path: why``), SHOWN_ERRORS of them, then a count of the rest."""
    lines = [f"{paths[index]}: {error}" for index, error in sorted(errors.items())[:SHOWN_ERRORS]]
    if len(errors) > SHOWN_ERRORS:
        lines.append(f"… and {len(errors) - SHOWN_ERRORS} more unreadable images")
    return "\n".join(lines)
