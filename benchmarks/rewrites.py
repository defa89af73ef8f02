"""What the training-time rewrites give: one model step, as written against rewritten.

Synthetic batches (no data handling), channels_last, RMSprop, for each precision and thread count;
the variants run interleaved, ``--reps`` times, each a burst of ``--steps`` steps timed one by one
after two warm-up steps. On a busy machine the best step is the closest to the model's own speed
(a step that no other job interrupted); the median shows the spread. Prints both and the load.

    python benchmarks/rewrites.py [--model keras_cifar_cnn] [--threads 1,2] [--reps 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from cnnlab.models import create_model, rewrite_for_training
from cnnlab.train.loop import autocast_context

from _common import machine

SHAPES = {"keras_cifar_cnn": ((3, 32, 32), 256), "book_cnn": ((1, 28, 28), 64)}


def burst(model: torch.nn.Module, precision: str, batch: tuple[torch.Tensor, torch.Tensor],
          steps: int) -> list[float]:
    """Images/s of each of ``steps`` training steps, after two warm-up steps."""
    x, y = batch
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-4, alpha=0.9, eps=1e-7)

    def step() -> None:
        with autocast_context(precision):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    step()
    speeds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        speeds.append(len(y) / (time.perf_counter() - start))
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="keras_cifar_cnn", choices=sorted(SHAPES))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--precision", default="fp32,bf16")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    shape, batch_size = SHAPES[args.model]
    gen = torch.Generator().manual_seed(0)
    batch = (torch.randn(batch_size, *shape, generator=gen).contiguous(memory_format=torch.channels_last),
             torch.randint(0, 10, (batch_size,), generator=gen))
    torch.manual_seed(0)
    written = create_model(args.model).to(memory_format=torch.channels_last)
    models = {"as written": written, "rewritten": rewrite_for_training(written)}
    speeds: dict[tuple[int, str, str], list[float]] = {}
    loads = []
    for _ in range(args.reps):
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            for precision in args.precision.split(","):
                for label, model in models.items():
                    speeds.setdefault((threads, precision, label), []).extend(
                        burst(model, precision, batch, args.steps))
                    loads.append(os.getloadavg()[0])
    print(f"machine: {machine()}")
    print(f"{args.model}, batch {batch_size}, {args.reps} interleaved reps of {args.steps} steps; "
          f"load average {min(loads):.1f}–{max(loads):.1f}")
    print("| threads | precision | as written img/s (best step / median) | rewritten img/s (best step "
          "/ median) | ratio of best steps | ratio of medians |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for threads in (int(t) for t in args.threads.split(",")):
        for precision in args.precision.split(","):
            a, b = speeds[threads, precision, "as written"], speeds[threads, precision, "rewritten"]
            print(f"| {threads} | {precision} | {max(a):,.0f} / {statistics.median(a):,.0f} | "
                  f"{max(b):,.0f} / {statistics.median(b):,.0f} | {max(b) / max(a):.2f}× | "
                  f"{statistics.median(b) / statistics.median(a):.2f}× |")


if __name__ == "__main__":
    main()
