"""bf16 autocast against fp32: final test accuracy over several seeds, per study.

Two studies, each trained with ``train.precision`` = fp32 and = bf16 for every seed, all else equal:

- the book CNN (seed 001's settings, ``examples/book-cnn-mnist.toml``) on real MNIST from
  ``../shared/datasets``, its first ``--mnist-images`` training images, tested on all 10,000;
- seed 002's CIFAR CNN (``examples/keras-cifar-cnn.toml``) on the CIFAR-10-format stand-in of
  ``cifar_standin.py`` (coloured Fashion-MNIST, NOT CIFAR-10).

bf16 is within the seed-to-seed spread when the difference of the means is no larger than the
range of the fp32 accuracies. On a CPU without avx512_bf16/amx_bf16 the bf16 runs are about 10×
slower (emulated), so this is meant for a CPU that has them or a GPU (``--device cuda``).

    python benchmarks/precision.py [--seeds 1,2,3] [--mnist-images 12000] [--mnist-epochs 2]
        [--cifar-images 10240] [--cifar-epochs 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from cifar_standin import write_standin
from rich.console import Console

from cnnlab.analyze.stats import summarize
from cnnlab.checks import load_experiment
from cnnlab.store import RunStore
from cnnlab.train import train_experiment

from _common import DATA_DIR, machine

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def accuracies(example: str, overrides: list[str], seeds: list[int], store: RunStore
               ) -> dict[str, list[float]]:
    """Final test accuracy per precision, one run per seed, precisions interleaved per seed."""
    acc: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for seed in seeds:
        for precision in acc:
            exp = load_experiment(EXAMPLES / example, [*overrides, f"seed={seed}",
                                                       f"train.precision={precision}"])
            start = time.perf_counter()
            record = train_experiment(exp, store, console=Console(quiet=True), progress=False).record
            acc[precision].append(record.final_test_acc)
            print(f"{example} seed {seed} {precision}: test acc {100 * record.final_test_acc:.2f}% in "
                  f"{time.perf_counter() - start:.0f} s (load average {os.getloadavg()[0]:.1f})",
                  flush=True)
    return acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--mnist-images", type=int, default=12_000)
    parser.add_argument("--mnist-epochs", type=int, default=2)
    parser.add_argument("--cifar-images", type=int, default=10_240)
    parser.add_argument("--cifar-epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: physical cores)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    common = [f"train.threads={args.threads}", f"train.device={args.device}", "train.eval_test=true"]
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(root=Path(tmp) / "runs")
        write_standin(Path(tmp) / "standin", train=args.cifar_images, test=2_000)
        studies = {
            f"book CNN, MNIST ({args.mnist_images:,} training images, {args.mnist_epochs} epochs)":
                accuracies("book-cnn-mnist.toml", [
                    *common, f"data.root={DATA_DIR}", f"data.train_limit={args.mnist_images}",
                    f"train.epochs={args.mnist_epochs}"], seeds, store),
            f"seed 002 CNN, CIFAR-10-format stand-in ({args.cifar_images:,} images, "
            f"{args.cifar_epochs} epochs)":
                accuracies("keras-cifar-cnn.toml", [
                    *common, f"data.root={Path(tmp) / 'standin'}",
                    f"train.epochs={args.cifar_epochs}"], seeds, store),
        }
    print(f"\nmachine: {machine()}; seeds {args.seeds}")
    print("| study | fp32 test acc (mean ± sd, range) | bf16 test acc (mean ± sd, range) | "
          "bf16 − fp32 | fp32 seed range | within spread |")
    print("| --- | --- | --- | ---: | ---: | --- |")
    for study, acc in studies.items():
        fp32, bf16 = summarize(acc["fp32"]), summarize(acc["bf16"])
        spread = max(acc["fp32"]) - min(acc["fp32"])
        diff = bf16.mean - fp32.mean
        cells = [f"{100 * s.mean:.2f}% ± {100 * s.std:.2f} ({100 * min(v):.2f}–{100 * max(v):.2f})"
                 for s, v in ((fp32, acc["fp32"]), (bf16, acc["bf16"]))]
        print(f"| {study} | {cells[0]} | {cells[1]} | {100 * diff:+.2f} | {100 * spread:.2f} | "
              f"{'yes' if abs(diff) <= spread else 'no'} |")


if __name__ == "__main__":
    main()
