"""Several cells of one architecture trained together (`--vmap`) against one after another.

K book_cnn cells (Adam, lr spread over the cells, seeds 0..K-1) trained for some epochs on real
MNIST, each stored as its own run, as a sweep would: `cnnlab.train.run.train_sweep_cells` with
``batched=True`` (one torch.vmap over stacked weights) and with ``batched=False``
(`train_experiment` per cell). Prints wall times and the largest difference of final validation
accuracy between the two.

    python benchmarks/vmap.py [--cells 8] [--epochs 1] [--device auto|cpu|cuda] [--train-limit N]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from rich.console import Console

from cnnlab.checks import validate_experiment
from cnnlab.store import RunStore
from cnnlab.train.run import train_sweep_cells

from _common import DATA_DIR, machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--train-limit", type=int, default=None)
    args = parser.parse_args()
    exps = [validate_experiment({
        "seed": i,
        "data": {"dataset": "mnist", "root": str(DATA_DIR), "download": False, "val": 0.1,
                 "train_limit": args.train_limit},
        "model": {"name": "book_cnn"},
        "train": {"optimizer": "adam", "lr": 1e-3 * (1 + i), "batch_size": 64, "epochs": args.epochs,
                  "device": args.device, "precision": args.precision, "eval_test": False},
    }) for i in range(args.cells)]
    quiet = Console(quiet=True)
    walls, finals, devices = {}, {}, set()
    for batched in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            store = RunStore(root=tmp)
            start = time.perf_counter()
            records = [o.record for o in train_sweep_cells(exps, store, console=quiet, batched=batched) if o]
            walls[batched] = time.perf_counter() - start
            finals[batched] = [r.final_val_acc for r in records]
            devices |= {r.device or "?" for r in records}
            assert all(r.status == "completed" for r in records), [r.status for r in records]
    gap = max(abs(a - b) for a, b in zip(finals[True], finals[False], strict=True))
    print(f"machine: {machine()}, trained on {', '.join(sorted(devices))}")
    print(f"{args.cells} book_cnn cells, Adam lr 1e-3…{args.cells}e-3, batch 64, {args.epochs} epoch(s), "
          f"{args.precision}, MNIST train split (val 0.1), each stored as a run")
    print("| cells trained | wall (data loading, training, evaluation, storing) |")
    print("| --- | ---: |")
    print(f"| together (torch.vmap) | {walls[True]:.1f} s |")
    print(f"| one after another | {walls[False]:.1f} s |")
    print(f"speed-up {walls[False] / walls[True]:.2f}×; largest difference of final val accuracy between "
          f"the two: {100 * gap:.2f} points (dropout masks differ per cell under vmap)")


if __name__ == "__main__":
    main()
