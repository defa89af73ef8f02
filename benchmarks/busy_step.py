"""Why a busy machine slows training: one model step under competing CPU-bound processes, per
OpenMP wait policy.

Each variant runs in a fresh process (the wait policy is read once, when torch loads OpenMP), with
``--busy`` busy-looping processes started beside it (0: a quiet run). It times ``--steps`` training
steps of seed 002's model (keras_cifar_cnn, batch 256, channels_last, rewritten, RMSprop) on
synthetic batches and reports, besides images/s, the step's **CPU seconds per image** of its own
process and its involuntary context switches: threads that spin at OpenMP barriers while their
partner is descheduled burn CPU time that does no work, so the CPU time per image grows with the
load when they spin and stays flat when they sleep. The CPU time is the evidence that does not
need a quiet machine; images/s does.

Variants (`VARIANTS`): ``cnnlab`` (what cnnlab runs: ``GOMP_SPINCOUNT=10000`` with
``OMP_WAIT_POLICY=PASSIVE``, and in bf16 the small convolutions in fp32, `cnnlab.models.cpu_bf16`),
``passive`` (``OMP_WAIT_POLICY=PASSIVE`` alone: 0 spins, cnnlab's first choice), ``before``
(libgomp's default: spin up to
300,000 times at each barrier, then sleep; every layer bf16), each of the two changes alone,
``spin1k``/``spin10k``/``spin100k`` (``GOMP_SPINCOUNT`` 1,000 / 10,000 / 100,000, small
convolutions fp32) and ``1thread``. All with one thread per physical core
unless named. The variants interleave, ``--rounds`` times.

    python benchmarks/busy_step.py [--busy 0,2] [--rounds 3] [--steps 12] [--precision auto]
        [--variants cnnlab,before,1thread]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULT = "BUSY-RESULT "
DEFAULT = {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None}
PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None}
VARIANTS = {
    # name: (environment, threads (0: one per physical core), small convolutions fp32 in bf16)
    "cnnlab": ({"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"}, 0, True),  # what it runs now
    "passive": (PASSIVE, 0, True),  # its first choice (issue 26): no spinning at all
    "before": (DEFAULT, 0, False),  # what it ran before: libgomp's spinning, every layer bf16
    "PASSIVE-only": (PASSIVE, 0, False),
    "fp32-convs-only": (DEFAULT, 0, True),
    "spin1k": ({"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "1000"}, 0, True),
    "spin10k": ({"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "10000"}, 0, True),
    "spin100k": ({"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "100000"}, 0, True),
    "1thread": (DEFAULT, 1, False),
}


def spin(seconds: float) -> None:
    """A CPU-bound competitor: busy-loop in Python for ``seconds``."""
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        x += 1


def worker(steps: int, threads: int, precision: str, fp32_small: bool) -> None:
    """Time ``steps`` training steps in this process; print the result line."""
    # torch is imported directly, not through cnnlab, so the variant's environment is what
    # OpenMP reads; cnnlab's own choice is switched off for this process.
    import torch
    import torch.nn.functional as F

    from cnnlab.models import create_model, rewrite_for_training
    from cnnlab.models.cpu_bf16 import keep_small_convolutions_fp32
    from cnnlab.train.hardware import physical_cores, resolve_precision
    from cnnlab.train.loop import autocast_context

    torch.set_num_threads(threads or physical_cores())
    precision = resolve_precision(precision)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 3, 32, 32, generator=gen).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (256,), generator=gen)
    torch.manual_seed(0)
    model = rewrite_for_training(create_model("keras_cifar_cnn").to(memory_format=torch.channels_last))
    if fp32_small and precision == "bf16":
        keep_small_convolutions_fp32(model, (3, 32, 32))
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-4)

    def step() -> None:
        with autocast_context(precision):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    step()
    walls, cpus = [], []
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(steps):
        usage, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        step()
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpus.append(after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime)
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(RESULT + json.dumps({
        "walls": walls, "cpus": cpus, "threads": torch.get_num_threads(), "precision": precision,
        "involuntary": after.ru_nivcsw - before.ru_nivcsw, "voluntary": after.ru_nvcsw - before.ru_nvcsw,
    }), flush=True)


def run_variant(name: str, busy: int, args: argparse.Namespace) -> dict:
    """One fresh process of variant ``name`` beside ``busy`` competitors."""
    changes, threads, fp32_small = VARIANTS[name]
    env = {k: v for k, v in os.environ.items() if k != "CNNLAB_SET_OMP_WAIT_POLICY"}
    for key, value in changes.items():
        env.pop(key, None)
        if value is not None:
            env[key] = value
    competitors = [multiprocessing.Process(target=spin, args=(3600,)) for _ in range(busy)]
    for process in competitors:
        process.start()
    try:
        load = os.getloadavg()[0]
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker",
                               "--steps", str(args.steps), "--threads", str(threads),
                               "--precision", args.precision, *(["--fp32-small"] if fp32_small else [])],
                              capture_output=True, text=True, env=env, check=False)
    finally:
        for process in competitors:
            process.terminate()
            process.join()
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT):
            return {**json.loads(line[len(RESULT):]), "load": load}
    raise SystemExit(f"{name} failed: {proc.stderr.strip().splitlines()[-1:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", default="0,2", help="competitor counts to try, e.g. 0,2")
    parser.add_argument("--variants", default="cnnlab,before,PASSIVE-only,fp32-convs-only,1thread")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fp32-small", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.steps, args.threads, args.precision, args.fp32_small)
        return

    from _common import machine

    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants: {', '.join(unknown)} not among {', '.join(VARIANTS)}")
    busy_counts = [int(b) for b in args.busy.split(",")]
    results: dict[tuple[int, str], list[dict]] = {}
    for round_ in range(args.rounds):
        for busy in busy_counts:
            shift = round_ % len(variants)
            for name in variants[shift:] + variants[:shift]:
                result = run_variant(name, busy, args)
                results.setdefault((busy, name), []).append(result)
                print(f"round {round_ + 1}, {busy} busy, {name}: median "
                      f"{256 / statistics.median(result['walls']):,.0f} img/s, "
                      f"{1e6 * sum(result['cpus']) / (256 * len(result['cpus'])):.0f} CPU-µs/img, "
                      f"load {result['load']:.1f}", file=sys.stderr, flush=True)
    print(f"machine: {machine()}")
    precision = next(iter(results.values()))[0]["precision"]
    print(f"keras_cifar_cnn, batch 256, {precision}, channels_last, rewritten; {args.rounds} rounds "
          f"× {args.steps} steps per variant, each a fresh process")
    print()
    print("| competitors | variant | threads | img/s best step | img/s median | CPU-µs per image "
          "(median step) | involuntary switches per step | load average |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for (busy, name), runs in results.items():
        walls = [w for r in runs for w in r["walls"]]
        cpus = [c for r in runs for c in r["cpus"]]
        switches = sum(r["involuntary"] for r in runs) / len(walls)
        loads = [r["load"] for r in runs]
        print(f"| {busy} | {name} | {runs[0]['threads']} | {256 / min(walls):,.0f} | "
              f"{256 / statistics.median(walls):,.0f} | {1e6 * statistics.median(cpus) / 256:,.0f} | "
              f"{switches:.1f} | {min(loads):.1f}–{max(loads):.1f} |")


if __name__ == "__main__":
    main()
