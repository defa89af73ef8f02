"""Training throughput: the seed-001 PyTorch loop against cnnlab's trainer on `book_cnn`.

Same real MNIST training images, same model, optimizer and batch size, in one process.
The seed-001 way: torchvision's MNIST dataset with ToTensor + Normalize, a shuffling DataLoader,
NCHW, eager loop. cnnlab: uint8 tensors in memory, per-batch normalisation, channels_last.

    python benchmarks/throughput.py [--images 20000] [--batch-size 64] [--device cpu|cuda]

With ``--device cuda`` cnnlab's loop runs on the GPU with the images held there (the seed-001
loop stays on the CPU, as the seed wrote it) and utilisation is against the GPU's matmul peaks.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision import datasets, transforms

from cnnlab.config import DataConfig
from cnnlab.data import load_data
from cnnlab.data.transforms import Normalizer
from cnnlab.models import create_model, rewrite_for_training, summarize
from cnnlab.models.build import resolve_channels_last
from cnnlab.train.hardware import physical_cores, use_precision
from cnnlab.train.loop import train_one_epoch
from cnnlab.train.losses import nll

from _common import DATA_DIR, machine, matmul_peak_gflops


def seed001_loop(root: Path, images: int, batch_size: int) -> float:
    """Images/s of the seed-001 training loop, timed after one warm-up batch."""
    dataset = datasets.MNIST(root, train=True, download=False, transform=transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)
    torch.manual_seed(0)
    model = create_model("book_cnn")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    model.train()
    seen, start = 0, None
    for data, target in loader:
        optimizer.zero_grad()
        loss = F.nll_loss(F.log_softmax(model(data), dim=1), target)
        loss.backward()
        optimizer.step()
        if start is None:
            start = time.perf_counter()
            continue
        seen += len(target)
        if seen >= images:
            break
    return seen / (time.perf_counter() - start)


def cnnlab_loop(images: int, batch_size: int, precision: str, device: str = "cpu",
                rewrite: bool = True) -> float:
    """Images/s of cnnlab's train_one_epoch on the same data, timed after a warm-up pass; the model
    rewritten for training as `cnnlab train` does (``rewrite=False``: as written)."""
    data = load_data(DataConfig(dataset="mnist", root=str(DATA_DIR), val=0), seed=0)
    torch.manual_seed(0)
    model = create_model("book_cnn").to(device)
    channels_last = resolve_channels_last("auto", model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if rewrite:
        model = rewrite_for_training(model)
    normalize = Normalizer(data.mean, data.std, channels_last, device)
    use_precision(torch.device(device), precision)
    x = data.train.images[: images + 10 * batch_size].to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = data.train.labels[: len(x)].to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    common = dict(batch_size=batch_size, optimizer=optimizer, loss_fn=nll, normalize=normalize,
                  generator=torch.Generator().manual_seed(0), precision=precision)
    train_one_epoch(model, x[: 10 * batch_size], y[: 10 * batch_size], **common)
    result = train_one_epoch(model, x[:images], y[:images], **common)
    return result.images / result.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    torch.set_num_threads(physical_cores())

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for gz in (DATA_DIR / "MNIST" / "raw").glob("*.gz"):
            with gzip.open(gz) as src, open(raw / gz.stem, "wb") as dst:
                shutil.copyfileobj(src, dst)
        seed = seed001_loop(Path(tmp), args.images, args.batch_size)

    written = cnnlab_loop(args.images, args.batch_size, "fp32", args.device, rewrite=False)
    fp32 = cnnlab_loop(args.images, args.batch_size, "fp32", args.device)
    bf16 = cnnlab_loop(args.images, args.batch_size, "bf16", args.device)
    macs = summarize(create_model("book_cnn"), (1, 28, 28)).total_macs
    peak = matmul_peak_gflops(device=args.device)
    # Training costs about 3× the forward pass: forward, and backward for inputs and weights.
    flops_per_image = 6 * macs

    print(f"machine: {machine()}" + (f", {torch.cuda.get_device_name()}" if args.device == "cuda" else ""))
    print(f"book_cnn: {macs:,} MACs per image forward; fp32 matmul peak {peak:,.0f} GFLOP/s; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"| loop (batch {args.batch_size}) | images/s | vs seed-001 | model FLOP utilisation |")
    print("| --- | ---: | ---: | ---: |")
    for label, speed in (("seed-001 (torchvision MNIST + DataLoader, NCHW)", seed),
                         ("cnnlab fp32, model as written (no rewrites)", written),
                         ("cnnlab fp32 (tensors in memory, channels_last, rewrites)", fp32),
                         ("cnnlab bf16 autocast", bf16)):
        mfu = speed * flops_per_image / (peak * 1e9)
        print(f"| {label} | {speed:,.0f} | {speed / seed:.1f}× | {100 * mfu:.1f}% |")


if __name__ == "__main__":
    main()
