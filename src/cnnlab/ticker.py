"""The one background ticker: call a function every few seconds from a thread while a block runs.

Modelled on Optuna's ``HeartbeatThread`` / ``NullHeartbeatThread``: `Ticker` is a context manager
that starts a daemon thread on entry and stops and joins it on exit; `NullTicker` is the same
shape doing nothing, for when no ticking is wanted (a storage without heartbeats, a disabled
progress line). The run heartbeat, the sweep worker's Optuna heartbeat and the notebook's sweep
progress line all tick through it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable


class NullTicker:
    """A ticker that never ticks."""

    def __enter__(self) -> NullTicker:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class Ticker(NullTicker):
    """Calls ``tick()`` every ``interval_s`` seconds from a daemon thread while the ``with`` block
    runs; with ``first`` also once at once, with ``last`` once more after the thread has stopped.

    An exception from a tick is swallowed: a missed tick (a busy database, a dropped connection)
    is tried again at the next interval, and never stops the work the ticker runs beside."""

    def __init__(self, tick: Callable[[], object], interval_s: float, *, name: str,
                 first: bool = False, last: bool = False) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s: {interval_s!r} is not a positive number of seconds")
        self.tick, self.interval_s, self.first, self.last = tick, interval_s, first, last
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        if self.last:
            self._tick()

    def _run(self) -> None:
        if self.first:
            self._tick()
        while not self._done.wait(self.interval_s):
            self._tick()

    def _tick(self) -> None:
        with contextlib.suppress(Exception):
            self.tick()
