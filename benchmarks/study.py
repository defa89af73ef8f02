"""The seed studies as shipped, end to end: wall time, achieved GFLOP/s per model, fraction of peak.

Runs what a user runs, each command a fresh process with a fresh run store (``CNNLAB_HOME`` in a
temporary folder):

- seed 000: ``cnnlab sweep examples/sweeps/loss-x-optimizer.toml --data-dir DATA`` (12 runs × 10
  epochs of the three-conv CNN on real MNIST), then ``cnnlab report loss-x-optimizer``;
- seed 002: ``cnnlab sweep examples/sweeps/keras-cifar-ablation.toml`` (16 runs × 20 epochs of
  seed 002's CNN on CIFAR-10: ``--cifar-root`` holding ``cifar-10-batches-py``; without it the
  CIFAR-10-format stand-in of ``cifar_standin.py`` (NOT CIFAR-10) is written first), then its report.

For every model (one row per cell of the sweep) it reads the stored epochs and reports the
training throughput (images/s of the training loop), the FLOPs that makes (6 × the forward
multiply-adds per trained image: forward, and backward for inputs and weights), and that as a
fraction of this machine's peak: a 2048² matmul in the runs' precision (fp32 or bf16), timed in
this process before the study. A whole-run figure counts the evaluated images too (2 × MACs
each) over the run's wall time. Prints the CPU's flags and the load average.

    python benchmarks/study.py [--only seed000,seed002] [--data-dir ../shared/datasets]
        [--cifar-root DIR] [--epochs N --limit N]   # reduced, for checking the script
        [--vmap K] [--workers N]                    # passed to cnnlab sweep
        [--keep DIR]                                # keep the run stores and reports in DIR/STUDY
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from _common import DATA_DIR, machine, matmul_peak_gflops

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples" / "sweeps"
STUDIES = {"seed000": ("loss-x-optimizer", EXAMPLES / "loss-x-optimizer.toml"),
           "seed002": ("keras-cifar-ablation", EXAMPLES / "keras-cifar-ablation.toml")}


def cnnlab(args: list[str], home: Path) -> float:
    """Run ``cnnlab ARGS`` as a user would (a fresh process); its wall seconds."""
    env = {**os.environ, "CNNLAB_HOME": str(home)}
    env.pop("OMP_WAIT_POLICY", None)  # a fresh shell: cnnlab chooses, as it does for a user
    env.pop("CNNLAB_SET_OMP_WAIT_POLICY", None)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cnnlab", *args], env=env, capture_output=True,
                          text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"cnnlab {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds


def forward_macs(config: dict) -> tuple[int, tuple[int, int, int]]:
    """Multiply-adds of one forward pass of the run's model, and its input shape."""
    from cnnlab.checks import validate_experiment
    from cnnlab.data import input_shape
    from cnnlab.models import build_model, summarize

    exp = validate_experiment(config)
    shape, classes = input_shape(exp.data) or ((3, 32, 32), 10)
    model = build_model(exp.model, shape, classes)
    return summarize(model, shape).total_macs, shape


def images_per_epoch(config: dict) -> tuple[int, int]:
    """(trained, evaluated) images per epoch of a run with this config, from its data as loaded."""
    from cnnlab.checks import validate_experiment
    from cnnlab.data import load_data

    exp = validate_experiment(config)
    data = load_data(exp.data, exp.seed)
    evaluated = len(data.val) if data.val is not None else 0
    if exp.train.eval_test and data.test is not None and data.test is not data.val:
        evaluated += len(data.test)
    return len(data.train), evaluated


def model_rows(home: Path, sweep: str, peaks: dict[tuple[str, int], float]) -> tuple[list[str], float]:
    """One Markdown row per cell: runs, precision, threads per run, MFLOP per trained image,
    training images/s and GFLOP/s (median over the runs' epochs), fraction of the peak of the
    run's threads (a sweep's workers train side by side, one thread each by default), and the
    runs' summed wall time; and the FLOPs of the whole study (trained images × 6 MACs +
    evaluated images × 2 MACs)."""
    from cnnlab.store import RunStore

    store = RunStore(root=home)
    cells: dict[str, list] = {}
    for run in store.list_runs():
        if run.sweep == sweep:
            cells.setdefault(run.cell_hash, []).append(run)
    rows, total = [], 0.0
    for runs in cells.values():
        first = runs[0]
        macs, _ = forward_macs(first.config)
        trained, evaluated = images_per_epoch(first.config)
        speeds = []
        for run in runs:
            epochs = store.epochs(run.id)
            speeds += [e["images_per_s"] for e in epochs if e.get("images_per_s")]
            total += len(epochs) * (trained * 6 + evaluated * 2) * macs
        label = " ".join(f"{k.split('.')[-1]}={v}" for k, v in sorted(_cell_values(first).items()))
        speed = statistics.median(speeds) if speeds else 0.0
        gflops = speed * 6 * macs / 1e9
        wall = sum(run.duration_s or 0.0 for run in runs)
        threads = int(first.config["train"].get("threads") or torch.get_num_threads())
        peak = peaks.get((first.precision, threads)) or peaks[first.precision, torch.get_num_threads()]
        rows.append(f"| {label} | {len(runs)} | {first.precision} | {threads} | {6 * macs / 1e6:.1f} | "
                    f"{speed:,.0f} | {gflops:.1f} | {100 * gflops / peak:.0f}% | {wall:,.0f} s |")
    return rows, total


def _cell_values(run) -> dict[str, object]:
    """The settings that differ between the cells of the sweep (the run's name says them)."""
    parts = [part.strip(",") for part in run.name.split(" ")[1:]]
    return dict(part.split("=", 1) for part in parts if "=" in part and not part.startswith("seed="))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="seed000,seed002")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--cifar-root", type=Path, help="folder holding cifar-10-batches-py")
    parser.add_argument("--standin-images", type=int, default=50_000,
                        help="training images of the stand-in when there is no --cifar-root")
    parser.add_argument("--epochs", type=int, help="reduced: epochs per run (default: as shipped)")
    parser.add_argument("--limit", type=int, help="reduced: data.train_limit (test_limit: a quarter)")
    parser.add_argument("--workers", type=int, help="cnnlab sweep --workers (default: its own)")
    parser.add_argument("--vmap", type=int, default=0, help="cnnlab sweep --vmap K")
    parser.add_argument("--keep", type=Path, help="keep each study's run store and report in KEEP/STUDY "
                                                  "(default: a temporary folder, removed after)")
    args = parser.parse_args()
    studies = args.only.split(",")
    unknown = sorted(set(studies) - set(STUDIES))
    if unknown:
        parser.error(f"--only: {', '.join(unknown)} not among {', '.join(STUDIES)}")
    overrides = []
    if args.epochs is not None:
        overrides += ["-s", f"train.epochs={args.epochs}"]
    if args.limit is not None:
        overrides += ["-s", f"data.train_limit={args.limit}",
                      "-s", f"data.test_limit={max(1, args.limit // 4)}"]
    extra = (["--workers", str(args.workers)] if args.workers else []) + (
        ["--vmap", str(args.vmap)] if args.vmap else [])

    print(f"machine: {machine()}")
    threads = torch.get_num_threads()
    peaks = {}
    for count in sorted({1, threads}):
        torch.set_num_threads(count)
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            peaks[name, count] = matmul_peak_gflops(dtype)
        print(f"2048² matmul peak, {count} thread{'s' * (count != 1)}: fp32 {peaks['fp32', count]:.1f} "
              f"GFLOP/s, bf16 {peaks['bf16', count]:.1f} GFLOP/s")
    torch.set_num_threads(threads)
    reduced = f" (reduced: {' '.join(overrides[1::2])})" if overrides else " (as shipped)"
    for study in studies:
        sweep, path = STUDIES[study]
        with tempfile.TemporaryDirectory() as scratch:
            tmp = str(args.keep / study) if args.keep else scratch
            Path(tmp).mkdir(parents=True, exist_ok=True)
            home = Path(tmp) / "home"
            data = args.data_dir
            if study == "seed002":
                if args.cifar_root is not None:
                    data, what = args.cifar_root, f"CIFAR-10 from {args.cifar_root}"
                else:
                    sys.path.insert(0, str(HERE))
                    from cifar_standin import write_standin

                    data = Path(tmp) / "cifar"
                    write_standin(data, train=args.standin_images, test=10_000)
                    what = f"CIFAR-10-format stand-in (NOT CIFAR-10), {args.standin_images:,} training images"
            else:
                what = f"MNIST from {data}"
            load = os.getloadavg()[0]
            sweep_s = cnnlab(["sweep", str(path), "--data-dir", str(data), "--quiet", *overrides, *extra],
                             home)
            report_s = cnnlab(["report", sweep, "-o", str(Path(tmp) / "report")], home)
            print()
            print(f"## {study}: {sweep}{reduced}; {what}")
            print(f"`cnnlab sweep` {sweep_s:,.1f} s + `cnnlab report` {report_s:,.1f} s = "
                  f"{sweep_s + report_s:,.1f} s wall; load average {load:.1f} → {os.getloadavg()[0]:.1f}")
            print()
            print("| cell | runs | precision | threads per run | MFLOP per trained image | "
                  "train images/s (median epoch) | train GFLOP/s | of its threads' peak | run wall (sum) |")
            print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
            rows, flops = model_rows(home, sweep, peaks)
            for row in rows:
                print(row)
            precisions = {row.split(" | ")[2] for row in rows}
            peak = min(peaks[p, threads] for p in precisions)
            print(f"\nwhole study: {flops / 1e12:,.2f} TFLOP (trained × 6 MACs + evaluated × 2 MACs) in "
                  f"{sweep_s:,.1f} s of `cnnlab sweep`: {flops / sweep_s / 1e9:,.1f} GFLOP/s, "
                  f"{100 * flops / sweep_s / 1e9 / peak:.0f}% of the {'/'.join(sorted(precisions))} peak")


if __name__ == "__main__":
    main()
