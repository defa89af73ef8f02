"""Training recipes (issue 22): what augmentation and the LR finder cost, what the recipes reach.

    python benchmarks/recipes.py [--only augment,lr-find,mnist,fashion,cifar] [--seeds 1,2,3]
                                 [--threads N] [--epochs N] [--train-limit N] [--images N]

- ``augment``: one epoch of ``train_one_epoch`` with the recipe's augmentation against the same
  epoch without it (same model, batch, images), alternated, median of ``--rounds``: target an
  augmented epoch ≤ 1.15× a plain one. Book CNN with ``crop`` on MNIST (batch 64) and seed 002's
  CNN with ``crop_flip`` on the CIFAR-10-format stand-in (batch 256).
- ``lr-find``: the range test (default steps) against one training epoch of the same
  experiment: target ≤ 1 epoch of compute.
- ``mnist``: ``examples/book-cnn-mnist-recipe.toml`` on real MNIST, one run per seed: target best
  validation (= test, as seed 001) accuracy ≥ 99.1% on each seed within 15 epochs.
- ``fashion``: ``examples/book-cnn-fashion-recipe.toml`` on real Fashion-MNIST: target ≥ 91% test.
- ``cifar``: seed 002's CNN on the CIFAR-10-format stand-in (``benchmarks/cifar_standin.py``:
  Fashion-MNIST photographs coloured to 32×32, NOT CIFAR-10), ``examples/keras-cifar-cnn.toml``
  against ``examples/keras-cifar-recipe.toml``: test accuracy of each after the same wall time
  (the last epoch each finished by the shorter run's total time) and how far each validation
  curve falls after its peak (target: the recipe's does not fall beyond the noise).

``--train-limit`` and ``--epochs`` shrink the accuracy runs to check the script quickly (their
numbers then say nothing about the targets). Runs go to a temporary store; the script prints
Markdown tables for BENCHMARKS.md, with the machine and its CPU flags.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from cifar_standin import write_standin
from rich.console import Console

from cnnlab.checks import load_experiment
from cnnlab.config import Experiment
from cnnlab.data.augment import make_augment
from cnnlab.data.labels import run_dataset
from cnnlab.data.transforms import Normalizer
from cnnlab.store import RunStore
from cnnlab.train import train_experiment
from cnnlab.train.hardware import set_threads
from cnnlab.train.loop import on_device, train_one_epoch
from cnnlab.train.losses import make_loss
from cnnlab.train.lr_find import lr_find
from cnnlab.train.optimizers import make_optimizer
from cnnlab.train.run import prepare

from _common import DATA_DIR, machine

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TARGETS = {"augment": 1.15, "lr-find": 1.0, "mnist": 0.991, "fashion": 0.91}


def experiment(file: str, overrides: dict[str, Any]) -> Experiment:
    return load_experiment(EXAMPLES / file, overrides)


def epoch_seconds(exp: Experiment, augmented: bool, images: int) -> float:
    """Seconds of one `train_one_epoch` over ``images`` training images (augmented or not)."""
    prepared = prepare(exp)
    data, model, cfg = prepared.data, prepared.model, exp.train
    train = on_device(data.train, prepared.device, prepared.channels_last)
    assert train is not None
    n = min(images, len(train))
    optimizer = make_optimizer(cfg, model.parameters())
    augment = make_augment(exp.data, data.input_shape[-1]) if augmented else None
    start = time.perf_counter()
    normalize = Normalizer(data.mean, data.std, prepared.channels_last)
    train_one_epoch(model, train.images[:n], train.labels[:n], batch_size=cfg.batch_size,
                    optimizer=optimizer, loss_fn=make_loss(cfg.loss), normalize=normalize,
                    generator=torch.Generator().manual_seed(exp.seed), precision=prepared.precision,
                    augment=augment)
    return time.perf_counter() - start


def augment_cost(cases: list[tuple[str, Experiment]], images: int, rounds: int) -> None:
    print("\n| model, data, augmentation | batch | plain epoch (s) | augmented epoch (s) | ratio "
          "| target ≤ 1.15× |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for label, exp in cases:
        epoch_seconds(exp, True, min(images, 2048))  # warm-up
        plain, augmented = [], []
        for _ in range(rounds):
            plain.append(epoch_seconds(exp, False, images))
            augmented.append(epoch_seconds(exp, True, images))
        ratio = statistics.median(augmented) / statistics.median(plain)
        print(f"| {label} | {exp.train.batch_size} | {statistics.median(plain):.2f} | "
              f"{statistics.median(augmented):.2f} | {ratio:.3f}× | {'yes' if ratio <= 1.15 else 'NO'} |")


def lr_find_cost(cases: list[tuple[str, Experiment]]) -> None:
    print("\n| model, data | range test steps | range test (s) | one epoch (s) | ratio | target ≤ 1 epoch |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for label, exp in cases:
        finding = lr_find(exp)
        epoch = epoch_seconds(exp, True, 10**9)
        ratio = finding.seconds / epoch
        print(f"| {label} | {finding.steps} of {finding.steps_per_epoch} per epoch | {finding.seconds:.1f} | "
              f"{epoch:.1f} | {ratio:.2f} | {'yes' if ratio <= 1 else 'NO'} |")
        print(f"|  | suggestion: {finding.line() or 'none'} |  |  |  |  |")


def accuracy_runs(store: RunStore, file: str, seeds: list[int], overrides: dict[str, Any],
                  console: Console) -> list[Any]:
    records = []
    for seed in seeds:
        exp = experiment(file, {**overrides, "seed": seed})
        record = train_experiment(exp, store, console=console, progress=False).record
        if record.status == "interrupted":
            raise SystemExit(130)
        records.append(record)
    return records


def at_time(epochs: list[dict[str, Any]], seconds: float) -> dict[str, Any] | None:
    """The last epoch finished within ``seconds`` of training (cumulative epoch seconds)."""
    done, last = 0.0, None
    for row in epochs:
        done += row["seconds"]
        if done > seconds * (1 + 1e-9):
            break
        last = row
    return last


def fall_after_peak(epochs: list[dict[str, Any]]) -> tuple[float, int]:
    """How far validation accuracy ends below its peak (points) and the peak's epoch."""
    values = [row["val_acc"] for row in epochs]
    peak = max(range(len(values)), key=values.__getitem__)
    return 100 * (values[peak] - values[-1]), epochs[peak]["epoch"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="augment,lr-find,mnist,fashion,cifar")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override every recipe's epochs")
    parser.add_argument("--train-limit", type=int, default=None, help="shrink the accuracy runs")
    parser.add_argument("--images", type=int, default=10_240, help="images per timed epoch (augment)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cifar-train", type=int, default=10_240)
    args = parser.parse_args()
    only = set(args.only.split(","))
    seeds = [int(s) for s in args.seeds.split(",")]
    set_threads(args.threads)
    console = Console()
    print(f"machine: {machine()}")
    common: dict[str, Any] = {"data.root": str(DATA_DIR), "train.threads": args.threads}
    shrink: dict[str, Any] = {}
    if args.epochs is not None:
        shrink["train.epochs"] = args.epochs
    if args.train_limit is not None:
        shrink["data.train_limit"] = args.train_limit
    with tempfile.TemporaryDirectory() as tmp:
        standin = Path(tmp) / "standin"
        write_standin(standin, train=args.cifar_train)
        cifar = {**common, "data.root": str(standin)}
        timed = [("book_cnn, MNIST, crop", experiment("book-cnn-mnist-recipe.toml", common)),
                 ("keras_cifar_cnn, CIFAR-10 stand-in, crop_flip",
                  experiment("keras-cifar-recipe.toml", cifar))]
        if "augment" in only:
            augment_cost(timed, args.images, args.rounds)
        if "lr-find" in only:
            lr_find_cost(timed)
        store = RunStore(root=tmp)
        if "mnist" in only or "fashion" in only:
            print("\n| recipe | data | seed | epochs | best val acc (epoch) | final test acc | wall "
                  "| target |")
            print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
        for study, file, metric in (("mnist", "book-cnn-mnist-recipe.toml", "best_val_acc"),
                                    ("fashion", "book-cnn-fashion-recipe.toml", "final_test_acc")):
            if study not in only:
                continue
            for record in accuracy_runs(store, file, seeds, {**common, **shrink}, console):
                value = getattr(record, metric)
                print(f"| {file} | {run_dataset(record.config)} | {record.seed} | {record.epochs_done} | "
                      f"{100 * record.best_val_acc:.2f}% ({record.best_epoch}) | "
                      f"{100 * record.final_test_acc:.2f}% | {record.duration_s:.0f} s | "
                      f"{metric} ≥ {100 * TARGETS[study]:g}%: {'yes' if value >= TARGETS[study] else 'NO'} |")
        if "cifar" in only:
            plain = accuracy_runs(store, "keras-cifar-cnn.toml", seeds, {**cifar, **shrink}, console)
            recipe = accuracy_runs(store, "keras-cifar-recipe.toml", seeds, {**cifar, **shrink}, console)
            print("\n| seed | plain: test acc at T | recipe: test acc at T | T (s) | plain: val falls after "
                  "peak | recipe: val falls after peak |")
            print("| ---: | ---: | ---: | ---: | ---: | ---: |")
            wins = 0
            for a, b in zip(plain, recipe, strict=True):
                ea, eb = store.epochs(a.id), store.epochs(b.id)
                budget = min(sum(r["seconds"] for r in ea), sum(r["seconds"] for r in eb))
                ra, rb = at_time(ea, budget), at_time(eb, budget)
                acc_a = ra["test_acc"] if ra else math.nan
                acc_b = rb["test_acc"] if rb else math.nan
                wins += acc_b > acc_a
                fa, pa = fall_after_peak(ea)
                fb, pb = fall_after_peak(eb)
                print(f"| {a.seed} | {100 * acc_a:.2f}% (epoch {ra['epoch'] if ra else '-'}) | "
                      f"{100 * acc_b:.2f}% (epoch {rb['epoch'] if rb else '-'}) | {budget:.0f} | "
                      f"{fa:.2f} points (peak epoch {pa}) | {fb:.2f} points (peak epoch {pb}) |")
            print(f"recipe ahead at equal wall time on {wins} of {len(plain)} seeds")


if __name__ == "__main__":
    main()
