"""Side by side: seed 002's Keras code against cnnlab's defaults and cnnlab fp32, on the same files.

Every contender trains seed 002's CIFAR CNN (Conv32-Pool-Conv64-Pool-Conv64-Dense64-Dense10, 122,570
parameters) with RMSprop (Keras' defaults), batch 256, 20% of the training set held out for
validation, on the same CIFAR-10 pickles (``--data-root``: a folder holding ``cifar-10-batches-py``;
without it, the CIFAR-10-format stand-in of ``cifar_standin.py`` is written to a temporary folder,
which is NOT CIFAR-10). Each contender runs in a fresh process:

- Keras: seed 002's code as written (``x / 255.0``, ``model.fit(..., validation_split=0.2)``), in
  its own virtual environment (``--keras-venv``; ``--setup`` creates it with ``pip install
  tensorflow-cpu``);
- cnnlab as a user runs it: ``examples/keras-cifar-cnn.toml`` through ``train_experiment`` with
  only ``data.root`` and ``train.epochs`` changed, once with its defaults (``precision = "auto"``)
  and once with ``train.precision = "fp32"``.

An epoch's time is wall time from the end of one epoch to the end of the next, validation
included (cnnlab's also includes its per-epoch test evaluation, checkpoint and store writes); the
first epoch is left out as warm-up. The contenders run ``--rounds`` times, interleaved (the order
rotates each round), so a busy machine shows as spread: the table gives per-epoch seconds (min
and median over all timed epochs), the ratio of Keras' median to each contender's, and the load
average around each run.

    python benchmarks/peers.py --setup [--keras-venv ~/.cache/cnnlab/keras-venv] \\
        [--data-root DIR | --train-images 10240] [--epochs 4] [--rounds 3] [--busy 0,2]

``--busy 0,2`` runs every contender on its own (0) and beside two busy-looping processes (2), the
levels interleaved within each round, one table per level.

This file is also the worker (``--worker NAME``): only the standard library and NumPy are imported
at the top, so it runs in the Keras environment, which has no torch.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "keras-cifar-cnn.toml"
RESULT = "PEERS-RESULT "
DEFAULT_VENV = Path("~/.cache/cnnlab/keras-venv").expanduser()


def read_cifar(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The training images (N×32×32×3 uint8, as keras.datasets.cifar10.load_data gives them) and
    labels (N×1) from ``folder/cifar-10-batches-py``."""
    images, labels = [], []
    for i in range(1, 6):
        with open(folder / "cifar-10-batches-py" / f"data_batch_{i}", "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels += list(batch[b"labels"])
    return np.concatenate(images).transpose(0, 2, 3, 1), np.array(labels).reshape(-1, 1)


def report(epoch_ends: list[float], **extra: object) -> None:
    """Print the worker's result line: seconds of each epoch after the first."""
    seconds = [b - a for a, b in itertools.pairwise(epoch_ends)]
    print(RESULT + json.dumps({"seconds": seconds, **extra}), flush=True)


# ---- workers: each runs in its own process ---------------------------------------------------


def keras_worker(args: argparse.Namespace) -> None:
    """Seed 002's Keras code as written: Sequential CNN, RMSprop, fit with validation_split=0.2."""
    import tensorflow as tf
    from tensorflow.keras import layers, models

    train_images, train_labels = read_cifar(Path(args.data))
    train_images = train_images / 255.0  # seed 002: NumPy float64, Keras casts
    tf.keras.utils.set_random_seed(0)

    model = models.Sequential()
    model.add(layers.Input(shape=(32, 32, 3)))
    model.add(layers.Conv2D(32, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.Flatten())
    model.add(layers.Dense(64, activation="relu"))
    model.add(layers.Dense(10))
    model.compile(optimizer="rmsprop",
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])

    ends: list[float] = []

    class Timer(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            ends.append(time.perf_counter())

    history = model.fit(train_images, train_labels, epochs=args.epochs, batch_size=256,
                        validation_split=0.2, verbose=0, callbacks=[Timer()])
    report(ends, val_acc=float(history.history["val_accuracy"][-1]),
           params=int(model.count_params()), version=f"tensorflow {tf.__version__}")


def cnnlab_worker(args: argparse.Namespace) -> None:
    """cnnlab as a user runs it: the example file, a run store, every epoch stored (cnnlab imported
    before torch, as `cnnlab train` and `import cnnlab` do, so it chooses OpenMP's wait policy)."""
    import cnnlab  # noqa: F401, I001  first, see above
    import torch

    from cnnlab.checks import load_experiment
    from cnnlab.store import RunStore
    from cnnlab.train import train_experiment

    exp = load_experiment(EXAMPLE, [f"data.root={args.data}", f"train.epochs={args.epochs}",
                                    *args.set])
    ends: list[float] = []
    with tempfile.TemporaryDirectory() as home:
        record = train_experiment(exp, RunStore(root=Path(home) / "runs"), progress=False,
                                  on_epoch=lambda epoch, metrics: ends.append(time.perf_counter())
                                  ).record
    report(ends, val_acc=record.final_val_acc, params=record.n_params, precision=record.precision,
           threads=torch.get_num_threads(), version=f"torch {torch.__version__}")


WORKERS = {"keras": keras_worker, "cnnlab": cnnlab_worker}


# ---- driver -----------------------------------------------------------------------------------


def spin(seconds: float) -> None:
    """A competing CPU-bound process: busy-loop in Python for ``seconds``."""
    end = time.monotonic() + seconds
    count = 0
    while time.monotonic() < end:
        count += 1


def run_worker(python: str, worker: str, args: argparse.Namespace, data: Path,
               overrides: tuple[str, ...] = (), busy: int = 0) -> dict:
    """Run one contender in a fresh process beside ``busy`` busy-looping processes; returns its
    result or {'skipped': reason}."""
    import multiprocessing

    cmd = [python, str(Path(__file__).resolve()), "--worker", worker, "--data", str(data),
           "--epochs", str(args.epochs), *(f"--set={o}" for o in overrides)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    for name in ("OMP_WAIT_POLICY", "CNNLAB_SET_OMP_WAIT_POLICY"):  # a fresh shell's environment
        env.pop(name, None)
    competitors = [multiprocessing.Process(target=spin, args=(24 * 3600,), daemon=True)
                   for _ in range(busy)]
    for process in competitors:
        process.start()
    try:
        load = os.getloadavg()[0]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    finally:
        for process in competitors:
            process.terminate()
            process.join()
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT):
            return {**json.loads(line[len(RESULT):]), "load": (load, os.getloadavg()[0]), "busy": busy}
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    return {"skipped": f"worker exited with {proc.returncode}: {lines[-1] if lines else 'no output'}"}


def keras_python(venv: Path, setup: bool) -> tuple[str | None, str | None]:
    """The Keras venv's python (created first with ``setup``), or None and why not."""
    python = venv / "bin" / "python"
    if not python.exists() and setup:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "tensorflow-cpu"], check=True)
    if not python.exists():
        return None, f"no Keras environment at {venv} (run with --setup to create it)"
    proc = subprocess.run([str(python), "-c", "import tensorflow"], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        return None, f"{python} cannot import tensorflow: {lines[-1] if lines else proc.returncode}"
    return str(python), None


def summary_rows(results: dict[str, list[dict]]) -> list[str]:
    """Markdown rows: per-epoch seconds min / median, ratio to Keras, val accuracy, load."""
    medians = {label: statistics.median(s for r in runs for s in r["seconds"])
               for label, runs in results.items() if runs and "seconds" in runs[0]}
    keras = next((m for label, m in medians.items() if label.startswith("Keras")), None)
    rows = []
    for label, runs in results.items():
        done = [r for r in runs if "seconds" in r]
        if not done:
            rows.append(f"| {label} | skipped: {runs[0]['skipped'] if runs else 'not run'} | | | | | |")
            continue
        seconds = [s for r in done for s in r["seconds"]]
        ratio = f"{keras / medians[label]:.2f}×" if keras else "n/a"
        accs = ", ".join(f"{100 * r['val_acc']:.1f}%" for r in done)
        loads = [x for r in done for x in r["load"]]
        rows.append(f"| {label} | {len(seconds)} | {min(seconds):.2f} | {medians[label]:.2f} | "
                    f"{ratio} | {accs} | {min(loads):.1f}–{max(loads):.1f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keras-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--setup", action="store_true", help="create the Keras venv if missing")
    parser.add_argument("--data-root", type=Path, help="folder holding cifar-10-batches-py")
    parser.add_argument("--train-images", type=int, default=10_240,
                        help="size of the stand-in's training set (with no --data-root)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run; the first is warm-up")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--busy", default="0",
                        help="competing busy-looping processes during each run, e.g. 0,2: each level "
                        "gets its own table")
    parser.add_argument("--one-thread", action="store_true",
                        help="also run cnnlab's defaults with train.threads = 1 (for a busy machine)")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--set", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        WORKERS[args.worker](args)
        return

    from cifar_standin import write_standin

    from cnnlab.train.hardware import physical_cores, resolve_precision

    from _common import machine

    python, reason = keras_python(args.keras_venv, args.setup)
    auto = resolve_precision("auto")
    contenders: list[tuple[str, str, tuple[str, ...]]] = [
        ("Keras, seed 002's code", "keras", ()),
        (f"cnnlab defaults (precision auto → {auto}, {physical_cores()} threads)", "cnnlab", ()),
        ("cnnlab fp32", "cnnlab", ("train.precision=fp32",)),
    ]
    if args.one_thread:
        contenders.append((f"cnnlab defaults but train.threads = 1 ({auto})", "cnnlab",
                           ("train.threads=1",)))
    levels = [int(level) for level in args.busy.split(",")]
    results: dict[int, dict[str, list[dict]]] = {
        level: {label: [] for label, _, _ in contenders} for level in levels}
    with tempfile.TemporaryDirectory() as tmp:
        if args.data_root is not None:
            data, what = args.data_root, f"CIFAR-10 pickles from {args.data_root}"
        else:
            data = Path(tmp)
            write_standin(data, train=args.train_images, test=2_000)
            what = (f"CIFAR-10-format stand-in (NOT CIFAR-10: coloured Fashion-MNIST, "
                    f"{args.train_images:,} training images)")
        for round_ in range(args.rounds):
            shift = round_ % len(contenders)
            for level in levels:
                for label, worker, overrides in contenders[shift:] + contenders[:shift]:
                    if worker == "keras" and python is None:
                        result = {"skipped": reason}
                    else:
                        result = run_worker(python if worker == "keras" else sys.executable, worker, args,
                                            data, overrides, busy=level)
                    results[level][label].append(result)
                    done = result.get("skipped") or (
                        "epochs " + ", ".join(f"{s:.2f}" for s in result["seconds"]) + " s; load "
                        + "→".join(f"{x:.1f}" for x in result["load"]))
                    print(f"round {round_ + 1}, {level} busy, {label}: {done}", file=sys.stderr, flush=True)

    versions = {r["version"] for level in results.values() for runs in level.values() for r in runs
                if "version" in r}
    print(f"machine: {machine()}")
    print(f"data: {what}; 80% trained, 20% validated each epoch; batch 256, RMSprop; "
          f"{args.rounds} rounds of {args.epochs} epochs (first left out); {', '.join(sorted(versions))}")
    for level, by_label in results.items():
        print()
        print(f"{level} competing busy-looping process{'es' * (level != 1)}:" if level else "no competing "
              "processes (besides whatever else runs on the machine):")
        print()
        print("| contender | epochs timed | s/epoch min | s/epoch median | vs Keras (median) | "
              "final val acc per round | load average |")
        print("| --- | ---: | ---: | ---: | ---: | --- | --- |")
        for row in summary_rows(by_label):
            print(row)
        params = {label: runs[0]["params"] for label, runs in by_label.items()
                  if runs and "params" in runs[0]}
        if len(set(params.values())) > 1:
            print(f"\nwarning: parameter counts differ: {params}")


if __name__ == "__main__":
    main()
