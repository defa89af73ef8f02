"""Files written whole or not at all: the one atomic writer, and the one figure saver on top of it.

Everything cnnlab writes (checkpoints, exports, reports, figures, images) goes to a temporary name
in the target's folder, is flushed to disk, then renamed over the target, so readers and crashes
see the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import io
import os
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
