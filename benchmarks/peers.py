"""Side by side: cnnlab against Keras, the seed-001 PyTorch loop and PyTorch Lightning.

One subprocess per contender, run back to back, all on the same data (one seeded synthetic
CIFAR-shaped uint8 array, saved once to a temporary .npz that every contender loads), the same
model (seed 002's Keras CIFAR CNN: Conv32-Pool-Conv64-Pool-Conv64-Dense64-Dense10), the same
optimizer (RMSprop with Keras' defaults), batch size and epochs. Each contender trains one
warm-up epoch, then ``--epochs`` timed epochs; images/s is over the timed epochs only.

Keras and Lightning run in their own virtual environments, given by path; a contender whose
interpreter is missing or cannot import its framework is skipped with the reason printed:

    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu
    python3 -m venv /tmp/plvenv && /tmp/plvenv/bin/pip install torch==2.14.1 lightning numpy
    python benchmarks/peers.py --keras-python /tmp/tfvenv/bin/python \\
        --lightning-python /tmp/plvenv/bin/python [--images 10240] [--epochs 2]

This file is also the worker (``--worker NAME``): only the standard library and NumPy are imported
at the top, so it runs in the Keras environment, which has no torch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULT = "PEERS-RESULT "
LR, RHO, EPS = 1e-3, 0.9, 1e-7  # Keras' RMSprop defaults, which seed 002 used


def make_data(path: Path, images: int, seed: int) -> None:
    """Seeded synthetic CIFAR-10-shaped data: uint8 N×3×32×32 images, int64 labels 0..9."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(images, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, size=images, dtype=np.int64)
    np.savez(path, x=x, y=y)


def report(epoch_seconds: list[float], images: int, **extra: object) -> None:
    """Print the worker's result line: images/s over the timed (non-warm-up) epochs."""
    timed = epoch_seconds[1:]
    print(RESULT + json.dumps({"ips": images * len(timed) / sum(timed), "epochs": epoch_seconds,
                               **extra}), flush=True)


# ---- workers: each runs in its own process ---------------------------------------------------


def keras_worker(args: argparse.Namespace) -> None:
    """Seed 002's Keras code as written: Sequential CNN, RMSprop, model.fit(batch_size=256)."""
    import tensorflow as tf
    from tensorflow.keras import layers, models

    data = np.load(args.data)
    # Seed 002 divides the uint8 NHWC images by 255.0 before fit (NumPy float64; Keras casts).
    train_images = data["x"].transpose(0, 2, 3, 1) / 255.0
    train_labels = data["y"]
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

    seconds: list[float] = []

    class Timer(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    model.fit(train_images, train_labels, epochs=1 + args.epochs, batch_size=args.batch_size,
              verbose=0, callbacks=[Timer()])
    report(seconds, len(train_labels), params=int(model.count_params()),
           version=f"tensorflow {tf.__version__}")


def torch_model():
    """The same CNN written out in plain PyTorch, as a seed-001-style script would (no cnnlab)."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3), nn.ReLU(),
        nn.Flatten(), nn.Linear(64 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def torch_loader(args: argparse.Namespace):
    """Seed-001 style data: float tensors normalised up front, a shuffling DataLoader, NCHW."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    data = np.load(args.data)
    x = torch.from_numpy(data["x"]).float().div_(255)
    mean, std = x.mean(dim=(0, 2, 3), keepdim=True), x.std(dim=(0, 2, 3), keepdim=True)
    dataset = TensorDataset((x - mean) / std, torch.from_numpy(data["y"]))
    return DataLoader(dataset, batch_size=args.batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(0))


def seed001_worker(args: argparse.Namespace) -> None:
    """The seed-001 way: DataLoader over a TensorDataset, NCHW, eager, zero_grad/backward/step."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    loader = torch_loader(args)
    torch.manual_seed(0)
    model = torch_model()
    optimizer = torch.optim.RMSprop(model.parameters(), lr=LR, alpha=RHO, eps=EPS)
    model.train()
    seconds = []
    for _ in range(1 + args.epochs):
        start = time.perf_counter()
        for data, target in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(data), target)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    report(seconds, len(loader.dataset), params=sum(p.numel() for p in model.parameters()),
           version=f"torch {torch.__version__}")


def lightning_worker(args: argparse.Namespace) -> None:
    """A PyTorch Lightning Trainer with the same model, loader and optimizer (what a user writes)."""
    import lightning as L
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    loader = torch_loader(args)
    L.seed_everything(0, verbose=False)

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch_model()

        def training_step(self, batch, batch_idx):
            data, target = batch
            loss = F.cross_entropy(self.net(data), target)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.RMSprop(self.parameters(), lr=LR, alpha=RHO, eps=EPS)

    seconds: list[float] = []

    class Timer(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            seconds.append(time.perf_counter() - self.start)

    module = Module()
    trainer = L.Trainer(max_epochs=1 + args.epochs, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[Timer()])
    trainer.fit(module, loader)
    report(seconds, len(loader.dataset), params=sum(p.numel() for p in module.parameters()),
           version=f"lightning {L.__version__}, torch {torch.__version__}")


def cnnlab_worker(args: argparse.Namespace) -> None:
    """cnnlab's train_one_epoch: uint8 tensors in memory, one indexing op per batch, channels_last."""
    import torch

    from cnnlab.data.transforms import Normalizer
    from cnnlab.models import create_model
    from cnnlab.train.hardware import resolve_channels_last, resolve_precision
    from cnnlab.train.loop import train_one_epoch
    from cnnlab.train.losses import cross_entropy

    torch.set_num_threads(args.threads)
    data = np.load(args.data)
    images, labels = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])
    scaled = images.float().div_(255)
    mean = tuple(scaled.mean(dim=(0, 2, 3)).tolist())
    std = tuple(scaled.std(dim=(0, 2, 3)).tolist())
    del scaled
    precision = resolve_precision(args.precision)
    torch.manual_seed(0)
    model = create_model("keras_cifar_cnn")
    channels_last = resolve_channels_last("auto", model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=LR, alpha=RHO, eps=EPS)
    generator = torch.Generator().manual_seed(0)
    seconds = []
    for _ in range(1 + args.epochs):
        result = train_one_epoch(model, images, labels, batch_size=args.batch_size, optimizer=optimizer,
                                 loss_fn=cross_entropy, normalize=Normalizer(mean, std, channels_last),
                                 generator=generator, precision=precision)
        seconds.append(result.seconds)
    report(seconds, len(labels), params=sum(p.numel() for p in model.parameters()),
           version=f"torch {torch.__version__}", precision=precision,
           memory_format="channels_last" if channels_last else "NCHW")


WORKERS = {"keras": keras_worker, "seed001": seed001_worker, "lightning": lightning_worker,
           "cnnlab": cnnlab_worker}


# ---- driver -----------------------------------------------------------------------------------


def run_worker(python: str, worker: str, args: argparse.Namespace, data: Path,
               precision: str = "fp32") -> dict:
    """Run one contender in a fresh process; returns its result or {'skipped': reason}."""
    cmd = [python, str(Path(__file__).resolve()), "--worker", worker, "--data", str(data),
           "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
           "--threads", str(args.threads), "--precision", precision]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(HERE)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT):])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    return {"skipped": f"worker exited with {proc.returncode}: {lines[-1] if lines else 'no output'}"}


def check_python(python: str | None, option: str, module: str) -> str | None:
    """Why this interpreter cannot run its contender, or None when it can."""
    if not python:
        return f"no {option} given"
    if not Path(python).exists():
        return f"{option} {python} does not exist"
    proc = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        return f"{python} cannot import {module}: {lines[-1] if lines else proc.returncode}"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keras-python", help="python of a venv with tensorflow-cpu")
    parser.add_argument("--lightning-python", help="python of a venv with torch and lightning")
    parser.add_argument("--images", type=int, default=10_240)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs, after one warm-up epoch")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: physical cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        WORKERS[args.worker](args)
        return

    import torch

    from cnnlab.models import create_model, summarize
    from cnnlab.train.hardware import cpu_has_fast_bf16, physical_cores, resolve_precision

    from _common import machine, matmul_peak_gflops

    args.threads = args.threads or physical_cores()
    torch.set_num_threads(args.threads)
    contenders = [
        ("Keras, seed 002's code (model.fit)", args.keras_python, "--keras-python", "tensorflow",
         "keras", "fp32"),
        ("seed-001 PyTorch loop (DataLoader over TensorDataset, NCHW)", sys.executable, "", "torch",
         "seed001", "fp32"),
        ("PyTorch Lightning Trainer", args.lightning_python, "--lightning-python", "lightning",
         "lightning", "fp32"),
        ("cnnlab fp32", sys.executable, "", "cnnlab", "cnnlab", "fp32"),
        (f"cnnlab precision=auto (→ {resolve_precision('auto')} here)", sys.executable, "", "cnnlab",
         "cnnlab", "auto"),
    ]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "cifar-shaped.npz"
        make_data(data, args.images, args.seed)
        for label, python, option, module, worker, precision in contenders:
            reason = check_python(python, option, module)
            result = {"skipped": reason} if reason else run_worker(python, worker, args, data, precision)
            done = result.get("skipped") or f"{result['ips']:,.0f} img/s"
            print(f"{label}: {done}", file=sys.stderr)
            results.append((label, result))

    peak32 = matmul_peak_gflops(torch.float32)
    # bf16 matmul is emulated (~1 GFLOP/s) on CPUs without AVX-512 BF16/AMX: 2048² would take minutes.
    bf16_size = 2048 if cpu_has_fast_bf16() else 512
    peak16 = matmul_peak_gflops(torch.bfloat16, size=bf16_size, repeats=10 if bf16_size == 2048 else 3)
    macs = summarize(create_model("keras_cifar_cnn"), (3, 32, 32)).total_macs
    # Training costs about 3× the forward pass: forward, and backward for inputs and weights.
    flops = 6 * macs
    keras = next((r["ips"] for label, r in results if "ips" in r and label.startswith("Keras")), None)

    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    print(f"keras_cifar_cnn: {macs:,} MACs per image forward; synthetic CIFAR-shaped data, "
          f"{args.images:,} images, batch {args.batch_size}, RMSprop, 1 warm-up + {args.epochs} timed "
          f"epochs; matmul peak fp32 {peak32:,.0f} GFLOP/s, bf16 {peak16:,.1f} GFLOP/s ({bf16_size}²)")
    print()
    print("| contender | images/s | vs Keras | FLOP utilisation (fp32 peak) | (bf16 peak) | versions |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for label, r in results:
        if "skipped" in r:
            print(f"| {label} | skipped: {r['skipped']} | | | | |")
            continue
        ips = r["ips"]
        ratio = f"{ips / keras:.2f}×" if keras else "n/a"
        mfu32, mfu16 = ips * flops / (peak32 * 1e9), ips * flops / (peak16 * 1e9)
        print(f"| {label} | {ips:,.0f} | {ratio} | {100 * mfu32:.1f}% | {100 * mfu16:,.0f}% | "
              f"{r['version']} |")
    params = {label: r["params"] for label, r in results if "params" in r}
    if len(set(params.values())) > 1:
        print(f"\nwarning: parameter counts differ: {params}")


if __name__ == "__main__":
    main()
