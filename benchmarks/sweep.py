"""Sweep throughput: a 16-cell grid on the MNIST sample with 1 worker and with 2 workers.

Each worker count runs the same sweep in a fresh store; threads per worker are the physical
cores divided by the workers (1 worker × 2 threads against 2 workers × 1 thread on the 2-core
machine). Prints the wall times and their ratio; the target is 2 workers ≤ 0.85× 1 worker.

    python benchmarks/sweep.py [--images 3600] [--epochs 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from rich.console import Console

from cnnlab.sweep import Location, parse_sweep, plan_workers, run_sweep

from _common import machine


def grid(images: int, epochs: int) -> dict:
    """16 cells: 4 learning rates × 2 batch sizes × 2 optimizers, one seed."""
    return {
        "name": "bench",
        "seeds": [0],
        "base": {
            "data": {"dataset": "mnist-sample", "train_limit": images, "val": 0.05},
            "model": {"name": "book_cnn"},
            "train": {"epochs": epochs, "eval_test": False, "momentum": 0.5},
        },
        "grid": {"train.lr": [0.001, 0.002, 0.005, 0.01], "train.batch_size": [32, 64],
                 "train.optimizer": ["adam", "sgd"]},
    }


def timed(workers: int, images: int, epochs: int) -> float:
    """Wall seconds of the whole sweep command (queue, start workers, train 16 runs)."""
    with tempfile.TemporaryDirectory() as home:
        start = time.perf_counter()
        outcome = run_sweep(parse_sweep(grid(images, epochs)), Location(root=home), workers=workers,
                            console=Console(quiet=True), live=False)
        seconds = time.perf_counter() - start
    assert outcome.ok and outcome.status.counts()["done"] == 16, outcome.status.counts()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3600, help="training images per run")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    print(machine())
    results = {}
    for workers in (1, 2):
        count, threads = plan_workers(workers)
        results[workers] = timed(workers, args.images, args.epochs)
        print(f"{count} worker(s) × {threads} thread(s): {results[workers]:.1f} s for 16 runs")
    print(f"2 workers / 1 worker wall time: {results[2] / results[1]:.2f} (target ≤ 0.85)")


if __name__ == "__main__":
    main()
