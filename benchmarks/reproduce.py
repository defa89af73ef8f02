"""Reproduce the seed experiments on the real data in ../shared/datasets with cnnlab's trainer.

- book_cnn on MNIST with seed 001's settings (SGD lr 0.01 momentum 0.5, batch 64, 40 epochs):
  target ≥ 99.0% test accuracy;
- the same on Fashion-MNIST (the seed says it stays well below 99%);
- book_cnn on Fashion-MNIST when only the optimizer and learning rate change: target ≥ 90%.

    python benchmarks/reproduce.py [--epochs 40] [--only mnist,fashion,fashion-tuned] [--threads N]

The seed validates on the test set (val = "test"), so val accuracy here is test accuracy.
Each run is stored in a temporary run store; the script prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console

from cnnlab.config import load_experiment
from cnnlab.store import RunStore
from cnnlab.train import train_experiment

from _common import DATA_DIR, machine

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
STUDIES = {
    "mnist": ("book-cnn-mnist.toml", [{}]),
    "fashion": ("book-cnn-fashion.toml", [{}]),
    # Only optimizer and learning rate change; the best of these is reported.
    "fashion-tuned": ("book-cnn-fashion.toml", [
        {"train.optimizer": "adam", "train.lr": 1e-3, "train.momentum": 0.0},
        {"train.optimizer": "adam", "train.lr": 3e-3, "train.momentum": 0.0},
    ]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--only", default=",".join(STUDIES))
    parser.add_argument("--variant", type=int, default=None,
                        help="run only this variant (0-based) of each study")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per run (0: physical cores); 1 lets two copies share 2 cores")
    args = parser.parse_args()
    console = Console()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(root=tmp)
        for study in args.only.split(","):
            file, variants = STUDIES[study]
            for overrides in variants if args.variant is None else variants[args.variant:][:1]:
                exp = load_experiment(EXAMPLES / file, {
                    **overrides, "data.root": str(DATA_DIR), "train.epochs": args.epochs,
                    "train.threads": args.threads})
                start = time.perf_counter()
                record = train_experiment(exp, store, console=console, progress=False).record
                if record.status == "interrupted":
                    raise SystemExit(130)
                wall = time.perf_counter() - start
                settings = (f"{exp.train.optimizer} lr {exp.train.lr:g}"
                            + (f" momentum {exp.train.momentum:g}" if exp.train.momentum else ""))
                rows.append((study, exp.data.dataset, settings, record.epochs_done,
                             record.final_val_acc, record.best_val_acc, record.best_epoch, wall))
    print(f"\nmachine: {machine()}")
    print("| study | dataset | optimizer | epochs | final test acc | best test acc (epoch) | wall |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for study, dataset, settings, epochs, final, best, best_epoch, wall in rows:
        print(f"| {study} | {dataset} | {settings} | {epochs} | {100 * final:.2f}% | "
              f"{100 * best:.2f}% ({best_epoch}) | {wall:.0f} s |")


if __name__ == "__main__":
    main()
