"""Ctrl-C and SIGTERM noticed within a fraction of a second while a dataset is being decoded."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from cnnlab.errors import LoadInterrupted

CHECK_S = 0.1  # how often long waits look at the flag: well inside the one second promised


class StopRequest:
    """Set by Ctrl-C or SIGTERM while `stop_on_signals` is active; `check` raises then.

    Handlers installed before (a sweep worker's "stop after this batch") still run, so the caller
    also learns of the request. Inside `raising`, the handler raises at once: for calls that
    may block (opening a file on a stalled disk), which a flag would not end."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._raise_now = False

    @property
    def requested(self) -> bool:
        """True once Ctrl-C or SIGTERM was received."""
        return self.signal is not None

    def check(self, doing: str) -> None:
        """Raise LoadInterrupted (saying what was being ``doing``) when a stop was requested."""
        if self.signal is not None:
            name = "Ctrl-C" if self.signal == signal.SIGINT else signal.Signals(self.signal).name
            raise LoadInterrupted(f"{name}: stopped while {doing}")

    @contextlib.contextmanager
    def raising(self, doing: str) -> Iterator[None]:
        """Within this block a signal raises LoadInterrupted at once."""
        self.check(doing)
        self._raise_now, self._doing = True, doing
        try:
            yield
        finally:
            self._raise_now = False

    def _handle(self, signum: int) -> None:
        self.signal = signum
        if self._raise_now:
            self._raise_now = False
            self.check(self._doing)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """A StopRequest set by Ctrl-C or SIGTERM in this block (main thread only; elsewhere it is
    never set). Python handlers that were installed before are called too."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous: dict[int, object] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        before = previous.get(signum)
        if callable(before) and before is not signal.default_int_handler:
            before(signum, frame)
        stop._handle(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handler)
    try:
        yield stop
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)  # type: ignore[arg-type]
