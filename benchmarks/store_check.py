"""Time the damage check every SQLite store open runs (header + SQLite's quick_check, read-only)
on a store of 1,000 runs × 40 epochs (synthetic curves), against opening the store without it.

    python benchmarks/store_check.py                 # build the store in a temporary folder
    python benchmarks/store_check.py --keep /tmp/bench-store --repeats 20
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from ui import build

from cnnlab.store import RunStore
from cnnlab.store.damage import damage

from _common import machine


def _median_ms(func, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="Build (or reuse) the store here.")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = args.keep or Path(tmp)
        if not (home / "runs.sqlite").exists():
            print(f"built {build(home, args.epochs, one_sweep=False)} runs in {home}")
        database = home / "runs.sqlite"
        size_mb = database.stat().st_size / 1e6
        check = _median_ms(lambda: damage(database), args.repeats)
        opened = _median_ms(lambda: RunStore(root=home).close(), args.repeats)
        print(machine())
        print(f"store {size_mb:.1f} MB: damage check {check:.1f} ms, RunStore open (with it) "
              f"{opened:.1f} ms, median of {args.repeats}")


if __name__ == "__main__":
    main()
