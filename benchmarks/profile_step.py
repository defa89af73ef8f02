"""Where a training step's time goes: torch.profiler over cnnlab's loop, per precision and rewrite.

Seed 002's CIFAR CNN (or ``--model book_cnn``) on synthetic uint8 images, channels_last, RMSprop,
cnnlab's own ``train_one_epoch`` (batch gather, normalisation, autocast, NaN check and all), the
model as written and as ``rewrite_for_training`` leaves it. Prints the top operators by self CPU time.

    python benchmarks/profile_step.py [--model keras_cifar_cnn] [--batches 20] [--top 12] [--threads 1]
"""

from __future__ import annotations

import argparse
import os

import torch
from torch.profiler import ProfilerActivity, profile

from cnnlab.models import create_model, rewrite_for_training
from cnnlab.train.hardware import physical_cores
from cnnlab.train.loop import Normalizer, train_one_epoch
from cnnlab.train.losses import cross_entropy

from _common import machine

SHAPES = {"keras_cifar_cnn": (3, 32, 32), "book_cnn": (1, 28, 28), "three_conv_cnn": (1, 28, 28)}


def profile_epoch(model_name: str, precision: str, rewritten: bool, batches: int,
                  batch_size: int) -> tuple[float, list[tuple[str, float]]]:
    """Images/s of a profiled epoch of ``batches`` batches and (operator, share of self CPU time)."""
    shape = SHAPES[model_name]
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batches * batch_size, *shape), dtype=torch.uint8, generator=gen)
    images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (len(images),), generator=gen)
    torch.manual_seed(0)
    model = create_model(model_name).to(memory_format=torch.channels_last)
    if rewritten:
        model = rewrite_for_training(model)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    common = dict(batch_size=batch_size, optimizer=optimizer, loss_fn=cross_entropy,
                  normalize=Normalizer((0.5,) * shape[0], (0.25,) * shape[0], True),
                  generator=gen, precision=precision)
    train_one_epoch(model, images[: 3 * batch_size], labels[: 3 * batch_size], **common)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        result = train_one_epoch(model, images, labels, **common)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    ops = sorted(((e.key, e.self_cpu_time_total / total) for e in events), key=lambda t: -t[1])
    return result.images / result.seconds, ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="keras_cifar_cnn", choices=sorted(SHAPES))
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: physical cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads or physical_cores())
    print(f"machine: {machine()}")
    for precision in args.precision:
        for rewritten in (False, True):
            ips, ops = profile_epoch(args.model, precision, rewritten, args.batches, args.batch_size)
            label = "rewritten" if rewritten else "as written"
            print(f"\n{args.model} {precision} {label}: {ips:,.0f} img/s under the profiler "
                  f"(load average {os.getloadavg()[0]:.1f})")
            for name, share in ops[: args.top]:
                print(f"  {100 * share:5.1f}%  {name}")


if __name__ == "__main__":
    main()
