"""Decoded datasets kept in the user's cache folder, each entry keyed by the files it came from.

An entry is one uncompressed ``.npz`` (the arrays and a ``meta`` record) under
``$CNNLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/cnnlab``, else ``~/.cache/cnnlab``, in ``decoded/``.
Its name has two hashes: of what was decoded how (loader, folder, settings: the *identity*) and
of the files' state (every file's path, size and modification time): a file added, removed or
changed gives another name, so a stale entry is never read; the one it replaces is deleted once
the new one is written. The meta record repeats the full key and the format, and is checked on
every read, so a damaged entry or one written by another version is decoded again, never mixed.

Entries are written to a temporary name and renamed into place; while one is being built its
identity's lock file is held (``flock``), so a second process waits and then reads it instead
of decoding the same files again. `cnnlab cache clear` (`clear`) deletes them all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.data.interrupt import CHECK_S, StopRequest

try:
    import fcntl
except ImportError:  # not on Windows: entries are still renamed into place whole
    fcntl = None  # type: ignore[assignment]

FORMAT = 1  # the layout of an entry; another number is "written by another version"
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

    @property
    def stem(self) -> str:
        """``<kind>-<identity hash>``: shared by every state of the same folder and settings."""
        return f"{self.identity['kind']}-{_digest(self.identity)[:16]}"

    @property
    def path(self) -> Path:
        """The entry's file."""
        return decoded_dir() / f"{self.stem}-{_digest(self.state)[:16]}.npz"

    @property
    def key(self) -> str:
        """The full key recorded in the entry and checked on reading."""
        return _digest([self.identity, self.state])


def read_entry(entry: Entry) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The entry's arrays and meta record; None when there is none. Raises CacheUnusable for an
    entry that is damaged, written by another format, or (against all odds) of another key."""
    path = entry.path
    try:
        npz = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise CacheUnusable(f"damaged ({exc})") from exc
    try:
        with npz:
            meta = json.loads(bytes(npz["meta"]).decode())
            if meta.get("format") != FORMAT:
                raise CacheUnusable(f"written by another version of cnnlab ({meta.get('cnnlab', '?')}, "
                                    f"format {meta.get('format')!r}; this one reads format {FORMAT})")
            if meta.get("key") != entry.key:
                raise CacheUnusable("made from other files (its key differs)")
            arrays = {name: npz[name] for name in meta["arrays"]}
    except CacheUnusable:
        raise
    except (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise CacheUnusable(f"damaged ({type(exc).__name__}: {exc})") from exc
    return arrays, meta


def write_entry(entry: Entry, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Write the entry under a temporary name, then rename it into place; delete the entries of
    earlier states of the same identity. OSError (disk full, read-only) leaves nothing behind."""
    from cnnlab import __version__

    folder = decoded_dir()
    folder.mkdir(parents=True, exist_ok=True)
    record = {**meta, "format": FORMAT, "key": entry.key, "cnnlab": __version__,
              "identity": entry.identity, "arrays": sorted(arrays), "created": time.time()}
    temporary = folder / f".{entry.path.name}.{os.getpid()}.tmp"
    try:
        with temporary.open("wb") as handle:
            np.savez(handle, meta=np.frombuffer(json.dumps(record).encode(), dtype=np.uint8), **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, entry.path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    for old in folder.glob(f"{entry.stem}-*.npz"):
        if old != entry.path:
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
def building(entry: Entry, stop: StopRequest, on_wait: Any = None) -> Iterator[None]:
    """Hold the lock of the entry's identity while it is built. When another process holds it,
    wait (``on_wait(pid)`` is called once), looking at ``stop`` every CHECK_S seconds."""
    folder = decoded_dir()
    folder.mkdir(parents=True, exist_ok=True)
    _remove_orphans(folder)
    if fcntl is None:
        yield
        return
    lock = (folder / f"{entry.stem}.lock").open("a+")
    try:
        waited = False
        while True:
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
        yield
    finally:
        lock.close()  # releases the flock


@dataclass(frozen=True)
class CachedDataset:
    """One entry as `entries` lists it."""

    path: Path
    bytes: int
    description: str


def entries() -> list[CachedDataset]:
    """Every entry in the cache folder, with what it holds (read from its meta record only)."""
    found = []
    for path in sorted(decoded_dir().glob("*.npz")):
        try:
            size = path.stat().st_size
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(bytes(npz["meta"]).decode())
            description = str(meta.get("description", "?"))
            if meta.get("format") != FORMAT:
                description += f" (format {meta.get('format')!r}: another version's, not used)"
        except FileNotFoundError:
            continue
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            description = f"damaged ({exc})"
            size = path.stat().st_size if path.exists() else 0
        found.append(CachedDataset(path, size, description))
    return found


def clear() -> tuple[int, int]:
    """Delete every entry (and the temporary files of dead processes); (entries, bytes) freed.
    An entry being written now is left to its writer."""
    folder = decoded_dir()
    count = freed = 0
    for path in folder.glob("*.npz"):
        with contextlib.suppress(FileNotFoundError):
            size = path.stat().st_size
            path.unlink()
            count, freed = count + 1, freed + size
    if folder.is_dir():
        _remove_orphans(folder)
    return count, freed

