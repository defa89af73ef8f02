"""Decoded datasets kept in the user's cache folder, each entry keyed by the files it came from.

An entry is one file (``.arrays``) under ``$CNNLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/cnnlab``,
else ``~/.cache/cnnlab``, in ``decoded/``: a magic line, a JSON ``meta`` record (with a CRC-32 of
each array) and the arrays in NumPy's ``.npy`` format, read straight into memory (an ``.npz`` of
the same 184 MB took 0.6 s to read in a fresh process, this 0.15 s with the checksum).
Its name has two hashes: of what was decoded how (loader, folder, settings: the *identity*) and
of the files' state (every file's path, size and modification time): a file added, removed or
changed gives another name, so a stale entry is never read; the one it replaces is deleted once
the new one is written. The meta record repeats the full key and the format, and is checked on
every read with the checksums, so a damaged entry or one written by another version is decoded
again, never mixed.

Entries are written to a temporary name and renamed into place; while one is being built its
identity's lock file is held (``flock``), so a second process waits and then reads it instead
of decoding the same files again. `cnnlab cache clear` (`clear`) deletes them all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.data.interrupt import CHECK_S, StopRequest

try:
    import fcntl
except ImportError:  # not on Windows: entries are still renamed into place whole
    fcntl = None  # type: ignore[assignment]

FORMAT = 2  # the layout of an entry; another number is "written by another version"
MAGIC = b"cnnlab decoded dataset\n"
SUFFIX = ".arrays"
OLD_SUFFIXES = (".npz",)  # format 1's entries: listed as another version's, cleared, replaced
_META_LIMIT = 1 << 30  # a meta record longer than this is damage, not a record
CLEAR_HINT = "`cnnlab cache clear` empties it"


def cache_dir() -> Path:
    """cnnlab's cache folder: $CNNLAB_CACHE_DIR, else $XDG_CACHE_HOME/cnnlab, else ~/.cache/cnnlab."""
    if os.environ.get("CNNLAB_CACHE_DIR"):
        return Path(os.environ["CNNLAB_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "cnnlab"


def decoded_dir() -> Path:
    """Where decoded datasets are kept."""
    return cache_dir() / "decoded"


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


class CacheUnusable(Exception):
    """An entry that exists but cannot be used; the message says why."""


@dataclass(frozen=True)
class Entry:
    """Where the entry of one identity and file state lives, and its full key."""

    identity: dict[str, Any]
    state: list[Any]

    @cached_property  # hashing 60,000 files' states takes 30 ms: once per entry
    def stem(self) -> str:
        """``<kind>-<identity hash>``: shared by every state of the same folder and settings."""
        return f"{self.identity['kind']}-{_digest(self.identity)[:16]}"

    @cached_property
    def _state_digest(self) -> str:
        return _digest(self.state)

    @cached_property
    def path(self) -> Path:
        """The entry's file."""
        return decoded_dir() / f"{self.stem}-{self._state_digest[:16]}{SUFFIX}"

    @cached_property
    def key(self) -> str:
        """The full key recorded in the entry and checked on reading."""
        return _digest([self.identity, self._state_digest])


_DAMAGE = (OSError, ValueError, EOFError, KeyError, TypeError, struct.error)


def _read_meta(handle: Any) -> dict[str, Any]:
    """The meta record at the start of an open entry; ValueError when there is none."""
    if handle.read(len(MAGIC)) != MAGIC:
        raise ValueError("not a cnnlab cache entry")
    (size,) = struct.unpack("<Q", handle.read(8))
    if size > _META_LIMIT:
        raise ValueError(f"a meta record of {size:,} bytes")
    meta = json.loads(handle.read(size))
    if not isinstance(meta, dict):
        raise ValueError("its meta record is not a record")
    return meta


def _checksum(array: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(array).view(np.uint8).reshape(-1))


def _map_array(handle: Any, path: Path) -> np.ndarray:
    """The ``.npy`` array at the handle's position, mapped copy-on-write from the file (no copy
    into fresh memory: the file's pages are used where they are); the handle moves past it."""
    version = np.lib.format.read_magic(handle)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read_header is None:
        raise ValueError(f".npy format {version}")
    shape, fortran, dtype = read_header(handle)
    if dtype.hasobject or fortran:
        raise ValueError(f"an array of {dtype} ({'Fortran' if fortran else 'C'} order)")
    offset = handle.tell()
    array = np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=shape)  # ValueError if short
    handle.seek(offset + array.nbytes)
    return np.asarray(array)


def read_entry(entry: Entry) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The entry's arrays and meta record; None when there is none. Raises CacheUnusable for an
    entry that is damaged, written by another format, or (against all odds) of another key."""
    try:
        handle = entry.path.open("rb")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CacheUnusable(f"damaged ({exc})") from exc
    try:
        with handle:
            meta = _read_meta(handle)
            if meta.get("format") != FORMAT:
                raise CacheUnusable(f"written by another version of cnnlab ({meta.get('cnnlab', '?')}, "
                                    f"format {meta.get('format')!r}; this one reads format {FORMAT})")
            if meta.get("key") != entry.key:
                raise CacheUnusable("made from other files (its key differs)")
            arrays = {}
            for name in meta["arrays"]:
                arrays[name] = _map_array(handle, entry.path)
                if _checksum(arrays[name]) != meta["crc32"][name]:
                    raise CacheUnusable(f"damaged (the checksum of its {name!r} differs)")
            if handle.read(1):
                raise CacheUnusable("damaged (it goes on after its last array)")
    except CacheUnusable:
        raise
    except _DAMAGE as exc:
        raise CacheUnusable(f"damaged ({type(exc).__name__}: {exc})") from exc
    return arrays, meta


def write_entry(entry: Entry, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Write the entry under a temporary name, then rename it into place; delete the entries of
    earlier states of the same identity. OSError (disk full, read-only) leaves nothing behind."""
    from cnnlab import __version__

    folder = decoded_dir()
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(arrays)
    record = {**meta, "format": FORMAT, "key": entry.key, "cnnlab": __version__,
              "identity": entry.identity, "arrays": names, "created": time.time(),
              "crc32": {name: _checksum(arrays[name]) for name in names}}
    encoded = json.dumps(record).encode()
    temporary = folder / f".{entry.path.name}.{os.getpid()}.tmp"
    try:
        with temporary.open("wb") as handle:
            handle.write(MAGIC + struct.pack("<Q", len(encoded)) + encoded)
            for name in names:
                np.lib.format.write_array(handle, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, entry.path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    for old in folder.glob(f"{entry.stem}-*"):
        if old != entry.path and old.suffix in (SUFFIX, *OLD_SUFFIXES):
            with contextlib.suppress(OSError):
                old.unlink()
    return entry.path


def discard(entry: Entry) -> None:
    """Delete the entry's file (a damaged one), if it is still there."""
    with contextlib.suppress(OSError):
        entry.path.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_orphans(folder: Path) -> None:
    """Temporary files of processes that died while writing an entry."""
    for temporary in folder.glob(".*.tmp"):
        pid = temporary.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not _pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                temporary.unlink()


@contextlib.contextmanager
def building(entry: Entry, stop: StopRequest, on_wait: Any = None) -> Iterator[Callable[[], Any]]:
    """Hold the lock of the entry's identity while it is built. When another process holds it,
    wait (``on_wait(pid)`` is called once), looking at ``stop`` every CHECK_S seconds.

    Yields ``hand_over``: called, it returns the lock's file, which the caller then closes
    (`write_in_background` does, once the entry is written); else the lock is released here."""
    folder = decoded_dir()
    folder.mkdir(parents=True, exist_ok=True)
    _remove_orphans(folder)
    lock = (folder / f"{entry.stem}.lock").open("a+")
    handed = False

    def hand_over() -> Any:
        nonlocal handed
        handed = True
        return lock

    try:
        waited = False
        while fcntl is not None:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited and on_wait is not None:
                    lock.seek(0)
                    on_wait(lock.read().strip() or "?")
                waited = True
                stop.check("waiting for another process to cache the same images")
                time.sleep(CHECK_S)
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        yield hand_over
    finally:
        if not handed:
            lock.close()  # releases the flock


_writers: list[threading.Thread] = []


def write_in_background(entry: Entry, arrays: dict[str, np.ndarray], meta: dict[str, Any], lock: Any,
                        on_error: Callable[[OSError], None]) -> threading.Thread:
    """`write_entry` in a thread (its writes and checksums let go of the GIL: training starts
    meanwhile), closing ``lock`` (from `building`'s ``hand_over``) when it is done, so another
    process waits for the whole entry. ``on_error`` hears an OSError (the entry is then not
    written). The arrays must not change until it ends; the interpreter waits for it on exit."""

    def write() -> None:
        try:
            write_entry(entry, arrays, meta)
        except OSError as exc:
            on_error(exc)
        finally:
            lock.close()

    thread = threading.Thread(target=write, name=f"cnnlab-cache {entry.path.name}", daemon=False)
    _writers.append(thread)
    thread.start()
    return thread


def wait_for_writes(stop: StopRequest | None = None) -> None:
    """Wait until every entry this process writes in the background is written (a load of the
    same folder reads it then), looking at ``stop`` every CHECK_S seconds."""
    while _writers:
        _writers[0].join(CHECK_S)
        if _writers[0].is_alive():
            if stop is not None:
                stop.check("waiting for the cache to be written")
        else:
            _writers.pop(0)


@dataclass(frozen=True)
class CachedDataset:
    """One entry as `entries` lists it."""

    path: Path
    bytes: int
    description: str


def _entry_files(folder: Path) -> list[Path]:
    return sorted(path for suffix in (SUFFIX, *OLD_SUFFIXES) for path in folder.glob(f"*{suffix}"))


def entries() -> list[CachedDataset]:
    """Every entry in the cache folder, with what it holds (read from its meta record only)."""
    found = []
    for path in _entry_files(decoded_dir()):
        try:
            size = path.stat().st_size
            if path.suffix in OLD_SUFFIXES:
                with np.load(path, allow_pickle=False) as npz:
                    meta = json.loads(bytes(npz["meta"]).decode())
            else:
                with path.open("rb") as handle:
                    meta = _read_meta(handle)
            description = str(meta.get("description", "?"))
            if meta.get("format") != FORMAT:
                description += f" (format {meta.get('format')!r}: another version's, not used)"
        except FileNotFoundError:
            continue
        except (*_DAMAGE, zipfile.BadZipFile) as exc:
            description = f"damaged ({exc})"
            size = path.stat().st_size if path.exists() else 0
        found.append(CachedDataset(path, size, description))
    return found


def clear() -> tuple[int, int]:
    """Delete every entry (and the temporary files of dead processes); (entries, bytes) freed.
    An entry being written now is left to its writer."""
    folder = decoded_dir()
    count = freed = 0
    for path in _entry_files(folder):
        with contextlib.suppress(FileNotFoundError):
            size = path.stat().st_size
            path.unlink()
            count, freed = count + 1, freed + size
    if folder.is_dir():
        _remove_orphans(folder)
    return count, freed
