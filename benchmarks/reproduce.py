"""Reproduce the seed experiments on the real data in ../shared/datasets with cnnlab's trainer.

- book_cnn on MNIST with seed 001's settings (SGD lr 0.01 momentum 0.5, batch 64, 40 epochs):
  target ≥ 99.0% test accuracy;
- the same on Fashion-MNIST (the seed says it stays well below 99%);
- book_cnn on Fashion-MNIST when only the optimizer and learning rate change: target ≥ 90%.

    python benchmarks/reproduce.py [--epochs 40] [--only mnist,fashion,fashion-tuned] [--threads N]
                                   [--precision fp32,bf16] [--device auto|cpu|cuda]

With ``--precision fp32,bf16`` every run is made once per precision and the table ends with the
bf16 − fp32 difference per run (issue 8: within 0.2 points). bf16 is only practical where the
hardware runs it natively (a GPU, or a CPU with AVX-512 BF16/AMX).

The seed validates on the test set (val = "test"), so val accuracy here is test accuracy.
Each run is stored in a temporary run store; the script prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console

from cnnlab.checks import load_experiment
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
    parser.add_argument("--precision", default="fp32", help="comma-separated: fp32, bf16, auto")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    console = Console()
    rows = []
    devices: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(root=tmp)
        for study in args.only.split(","):
            file, variants = STUDIES[study]
            chosen = variants if args.variant is None else variants[args.variant:][:1]
            for overrides, precision in [(o, p) for o in chosen for p in args.precision.split(",")]:
                exp = load_experiment(EXAMPLES / file, {
                    **overrides, "data.root": str(DATA_DIR), "train.epochs": args.epochs,
                    "train.threads": args.threads, "train.precision": precision,
                    "train.device": args.device})
                start = time.perf_counter()
                record = train_experiment(exp, store, console=console, progress=False).record
                if record.status == "interrupted":
                    raise SystemExit(130)
                wall = time.perf_counter() - start
                settings = (f"{exp.train.optimizer} lr {exp.train.lr:g}"
                            + (f" momentum {exp.train.momentum:g}" if exp.train.momentum else ""))
                devices.add(record.device or "?")
                rows.append((study, exp.data.dataset, settings, record.precision, record.epochs_done,
                             record.final_val_acc, record.best_val_acc, record.best_epoch, wall))
    print(f"\nmachine: {machine()}, trained on {', '.join(sorted(devices))}")
    print("| study | dataset | optimizer | precision | epochs | final test acc | best test acc (epoch) "
          "| wall |")
    print("| --- | --- | --- | --- | ---: | ---: | ---: | ---: |")
    for study, dataset, settings, precision, epochs, final, best, best_epoch, wall in rows:
        print(f"| {study} | {dataset} | {settings} | {precision} | {epochs} | {100 * final:.2f}% | "
              f"{100 * best:.2f}% ({best_epoch}) | {wall:.0f} s |")
    by_run: dict[tuple[str, str], dict[str, float]] = {}
    for study, _, settings, precision, _, final, *_ in rows:
        by_run.setdefault((study, settings), {})[precision] = final
    for (study, settings), finals in by_run.items():
        if {"fp32", "bf16"} <= set(finals):
            gap = 100 * (finals["bf16"] - finals["fp32"])
            print(f"{study} ({settings}): bf16 − fp32 final test accuracy = {gap:+.2f} points "
                  f"({'within' if abs(gap) <= 0.2 else 'NOT within'} 0.2)")


if __name__ == "__main__":
    main()
