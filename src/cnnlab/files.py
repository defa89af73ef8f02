"""Files written whole or not at all: the one atomic writer, and the one figure saver on top of it.

Everything cnnlab writes (checkpoints, exports, reports, figures, images) goes to a temporary name
in the target's folder, is flushed to disk, then renamed over the target, so readers and crashes
see the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from cnnlab.errors import ConfigError, Problem

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Content = bytes | str | Callable[[IO[bytes]], object]


def write_atomic(path: str | Path, content: Content, keep_previous: str | Path | None = None) -> Path:
    """Write ``content`` (bytes, text as UTF-8, or a function that writes to the open binary file)
    to ``path`` atomically, creating its folder; with ``keep_previous`` the file it replaces is
    first renamed there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def save_figure(fig: Figure, path: str | Path, dpi: int, key: str = "--output") -> Path:
    """Render ``fig`` in the format its suffix names (.png, .svg, .pdf, …; none: PNG) and write it
    atomically; a bad suffix, a missing folder or an unwritable file is a ConfigError on ``key``."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise ConfigError(Problem(key, str(path), "must end in one of ." + ", .".join(sorted(supported))))
    if not path.parent.is_dir():
        raise ConfigError(Problem(key, str(path), "is in a folder that does not exist"))
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi)
    try:
        return write_atomic(path, buffer.getvalue())
    except OSError as exc:
        raise ConfigError(Problem(key, str(path), f"cannot be written: {exc.strerror}")) from None


# The file that marks a folder as written by cnnlab, naming what wrote it (report, inspect).
OUTPUT_MARKER = ".cnnlab-output"


class OutputFolder:
    """A folder a command writes its files into (``-o DIR``), checked before anything is computed
    and written through a temporary folder beside it.

    A symbolic link is refused (naming where it leads: give that folder itself), as is a file, and
    a folder with files in it that cnnlab did not write as a ``kind`` output (its marker file says
    so), unless ``force``. The files are written into a fresh temporary folder, so a failure while
    they are computed leaves the folder as it was. On success a new folder is that temporary folder
    renamed into place (all files at once); into an earlier output (or, forced, a foreign folder)
    each file is renamed into place on its own, replacing the one of the same name: every file is
    whole, but a failure part way through (a full disk) can leave some files new and some old.

        out = OutputFolder(path, "report")      # refuses now, before any work
        with out as staging:                    # write into staging
            ...
        out.final(staging / "index.html")       # where that file is now
    """

    def __init__(self, path: str | Path, kind: str, *, force: bool = False, key: str = "--output"):
        self.path = Path(os.path.abspath(Path(path).expanduser()))
        self.kind, self.key = kind, key
        self._staging: Path | None = None
        if self.path.is_symlink():
            raise ConfigError(Problem(key, str(path), f"is a symbolic link (to {os.readlink(self.path)}); "
                                      "cnnlab does not write through a link: give the folder itself to "
                                      "write there"))
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(Problem(key, str(path), f"is a file; give a folder for the {kind}"))
        marked = self.path / OUTPUT_MARKER
        foreign = [p.name for p in self.path.iterdir()] if self.path.is_dir() and not marked.is_file() else []
        if foreign and not force:
            shown = ", ".join(sorted(foreign)[:3]) + (" …" if len(foreign) > 3 else "")
            raise ConfigError(Problem(key, str(path), f"is a folder with files cnnlab did not write "
                                      f"({shown}); nothing was written: give a new or empty folder, or "
                                      f"--force to write the {kind} into it anyway"))

    def __enter__(self) -> Path:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._staging = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                                  dir=self.path.parent))
        except OSError as exc:
            raise ConfigError(Problem(self.key, str(self.path),
                                      f"cannot be created: {exc.strerror}")) from None
        return self._staging

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        staging = self._staging
        assert staging is not None
        try:
            if kind is None:
                self._publish(staging)
        except OSError as exc:
            raise ConfigError(Problem(self.key, str(self.path),
                                      f"cannot be written: {exc.strerror}")) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def final(self, staged: Path) -> Path:
        """Where a file written into the staging folder is once the output is published."""
        assert self._staging is not None
        return self.path / Path(staged).relative_to(self._staging)

    def _publish(self, staging: Path) -> None:
        if self.path.is_symlink():  # made while the output was computed
            raise ConfigError(Problem(self.key, str(self.path), "became a symbolic link while cnnlab "
                                      "worked; nothing was written"))
        (staging / OUTPUT_MARKER).write_text(f"{self.kind}\n")
        os.chmod(staging, 0o755)
        if self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()
        if not self.path.exists():
            os.rename(staging, self.path)
            return
        for source in sorted(staging.rglob("*")):
            target = self.path / source.relative_to(staging)
            if source.is_dir():
                target.mkdir(exist_ok=True)
            else:
                os.replace(source, target)
