"""Python's cyclic garbage collector, paused while a training process starts.

Starting a run creates about half a million objects that live as long as the process: torch's
(``import torch``), torch._dynamo's (the first torch optimizer imports it) and, for an image
folder, the listing (a few small containers per file). Each time 700 new containers have been
made the collector walks the young ones, and every hundredth time all of them; with torch
loaded that is half a second of the three a `cnnlab train` took to start from an image folder's
cache on the AMX Xeon (BENCHMARKS.md, "Image folders"), and none of those objects is garbage.

`paused` turns the collector off for a command that trains (`cnnlab train`, a sweep worker)
until `resume` is called as its first epoch starts (`Engine.run`), or the command ends. `resume`
then freezes what exists (``gc.freeze``: later collections skip it, so training's collections do
not walk torch's objects again) and turns the collector back on. What the start left as cyclic
garbage (about 9,000 objects after ``import torch._dynamo``, a collection of 0.2 s) stays, once.
A process whose collector was already off (the user's choice) is left as it is. Only processes
cnnlab starts pause: the command line's `train` and spawned sweep workers, never a notebook's
kernel through the Python API, whose objects a freeze would keep from being collected.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

_paused = False


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No cyclic collection inside the block until `resume`; resumed when the block ends."""
    global _paused
    if _paused or not gc.isenabled():
        yield
        return
    gc.disable()
    _paused = True
    try:
        yield
    finally:
        resume()


def resume() -> None:
    """End a pause of `paused` (nothing when there is none): freeze the objects made so far, then
    collect as usual."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
