"""Time `cnnlab report` on a 100-run synthetic sweep (20 cells × 5 seeds, 20 epochs each).

    python benchmarks/report.py               # build the sweep in a temporary store, time 3 reports
    python benchmarks/report.py --repeats 5 --keep /tmp/bench-report

The sweep's curves come from cnnlab.analyze.synthetic (no training): learning rates 1e-4…1e-2,
Adam and SGD, dropout 0 and 0.5, with diverging, overfitting and slow runs among them. Each
repeat runs the real command line in a fresh process, imports included. Target: ≤ 15 s on the
2-core CI machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cnnlab.analyze.synthetic import make_sweep
from cnnlab.store import RunStore

GRID = {
    "train.lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
    "train.optimizer": ["adam", "sgd"],
    "model.dropout": [0.0, 0.5],
}
SEEDS = (0, 1, 2, 3, 4)
TARGET_S = 15.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--keep", type=Path, help="Build the store and report here instead of a temporary folder."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        home = root / "store"
        with RunStore(root=home) as store:
            ids = make_sweep(store, "bench", GRID, SEEDS, epochs=args.epochs)
        print(f"stored a synthetic sweep of {len(ids)} runs × {args.epochs} epochs in {home}")
        command = [sys.executable, "-m", "cnnlab", "report", "bench", "-o", str(root / "report")]
        env = {**os.environ, "CNNLAB_HOME": str(home)}
        times, cpu = [], []
        for _ in range(args.repeats):
            start, cpu_start = time.perf_counter(), _children_cpu()
            result = subprocess.run(command, env=env, capture_output=True, text=True)
            times.append(time.perf_counter() - start)
            cpu.append(_children_cpu() - cpu_start)
            if result.returncode:
                sys.exit(f"cnnlab report failed:\n{result.stdout}{result.stderr}")
        html = root / "report" / "index.html"
        pngs = sorted((root / "report").glob("fig-*.png"))
        print(result.stdout.strip())
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
            f"Python {platform.python_version()}"
        )
        print(
            f"cnnlab report, {len(ids)} runs: median {statistics.median(times):.2f} s, "
            f"best {min(times):.2f} s over {len(times)} runs (target ≤ {TARGET_S:g} s), "
            f"CPU {statistics.median(cpu):.2f} s; "
            f"index.html {html.stat().st_size / 1e6:.2f} MB, "
            f"{len(pngs)} figures"
        )


def _children_cpu() -> float:
    """User + system CPU seconds of finished child processes: the cost, whatever else runs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
