"""What mixing buys per domain: train on plain MNIST, and on MNIST + coloured MNIST, score both.

Issue 7's check: the mixture must not lose more than 0.5 points on plain MNIST while gaining on
coloured MNIST. Both runs use seed 003's model (mnist_bn_cnn: batch norm, keep 0.8, Adam 1e-3),
3 input channels (plain digits are gray repeated), the same seed and epochs, and are evaluated on
the full test sets of both domains (real data from ../shared/datasets).

    python benchmarks/domains.py [--epochs 10] [--seeds 3] [--device auto|cpu|cuda] [--alter colour]

Prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from rich.console import Console

from cnnlab.checks import validate_experiment
from cnnlab.store import RunStore
from cnnlab.train import train_experiment

from _common import DATA_DIR, machine


def experiment(train: list, evals: list, seed: int, args: argparse.Namespace) -> dict:
    return {
        "name": "domains", "seed": seed,
        "data": {"train": train, "eval": evals, "channels": 3, "root": str(DATA_DIR), "download": False,
                 "val": "test"},
        "model": {"name": "mnist_bn_cnn", "batch_norm": True, "keep_prob": 0.8},
        "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 128, "epochs": args.epochs,
                  "device": args.device},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", default="3", help="comma-separated seeds; each setting runs once per seed")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--alter", default="colour", help="the altered domain's options, e.g. colour+noise")
    args = parser.parse_args()
    altered = {"dataset": "mnist", "alter": args.alter}
    evals = ["mnist", altered]
    settings = {"MNIST only": ["mnist"], f"MNIST + MNIST-{args.alter}": ["mnist", altered]}
    names = ["mnist", f"mnist-{args.alter}"]
    console = Console()
    results: dict[str, dict[str, list[float]]] = {}
    walls: dict[str, list[float]] = {}
    devices: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(root=tmp)
        for label, train in settings.items():
            for seed in map(int, args.seeds.split(",")):
                exp = validate_experiment(experiment(train, evals, seed, args))
                start = time.perf_counter()
                record = train_experiment(exp, store, console=console, progress=False).record
                if record.status != "completed":
                    raise SystemExit(f"{label} seed {seed}: {record.status} {record.error or ''}")
                walls.setdefault(label, []).append(time.perf_counter() - start)
                devices.add(record.device or "?")
                last = store.epochs(record.id)[-1]
                for name in names:
                    results.setdefault(label, {}).setdefault(name, []).append(last[f"test/{name}_acc"])
    print(f"\nmachine: {machine()}, trained on {', '.join(sorted(devices))}")
    print(f"mnist_bn_cnn, Adam 1e-3, batch 128, {args.epochs} epochs, seeds {args.seeds}; "
          "test accuracy on each domain's full 10,000-image test set (mean over seeds)")
    print(f"| trained on | {' | '.join(names)} | wall per run |")
    print("| --- | " + " | ".join("---:" for _ in names) + " | ---: |")
    means = {label: {n: statistics.fmean(v) for n, v in by_name.items()}
             for label, by_name in results.items()}
    for label in settings:
        cells = " | ".join(f"{100 * means[label][n]:.2f}%" for n in names)
        print(f"| {label} | {cells} | {statistics.fmean(walls[label]):.0f} s |")
    plain, mixed = (means[label] for label in settings)
    loss = 100 * (plain["mnist"] - mixed["mnist"])
    gain = 100 * (mixed[names[1]] - plain[names[1]])
    print(f"\nplain MNIST: the mixture changes accuracy by {-loss:+.2f} points "
          f"({'within' if loss <= 0.5 else 'NOT within'} the allowed −0.5); "
          f"{names[1]}: {gain:+.2f} points ({'a gain' if gain > 0 else 'NO gain'})")


if __name__ == "__main__":
    main()
