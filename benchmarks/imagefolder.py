"""Your own images: how long `cnnlab train` takes to start training on a folder of PNGs, the first
time (decoding into the cache) and the second (reading the cache), against the code before the cache.

The folder (``--folder``, written first when it does not exist) holds ``--images`` 32×32 RGB PNGs
in ``train/`` and ``test/`` class folders (5/6 and 1/6, like CIFAR-10's 50,000 + 10,000), made from
the CIFAR-10-format stand-in of ``cifar_standin.py`` (coloured Fashion-MNIST; CIFAR-10 itself is
not on the machine). Each run is ``python -m cnnlab train examples/keras-cifar-cnn.toml -s
data.dataset=imagefolder -s data.path=FOLDER`` in a fresh process and a fresh store; the time is
from starting it to its ``run …`` line (printed when training begins), after which it is stopped
with SIGTERM. The cache is a fresh temporary folder (``CNNLAB_CACHE_DIR``), so run 1 decodes.
``--baseline-src`` runs the same command with ``PYTHONPATH`` at another checkout's ``src`` (e.g.
the commit before the cache: ``mkdir /tmp/before && git archive 00ffd34 src | tar -x -C /tmp/before``),
which decodes every time. A second table times the loader alone (``load_imagefolder`` in a fresh
process, an empty cache: listing, decoding and, here, caching), the "decode" of the issue's target.
Both sources are byte-compiled first (``compileall``), as a pip install does: a machine with
``PYTHONDONTWRITEBYTECODE`` set would otherwise compile cnnlab on every start (0.15–0.2 s here).

    python benchmarks/imagefolder.py [--images 60000] [--folder /tmp/cnnlab-pngs] [--runs 2]
        [--baseline-src /tmp/before/src]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "keras-cifar-cnn.toml"


def write_folder(folder: Path, images: int) -> None:
    """``images`` PNGs of the stand-in in ``folder/{train,test}/<class>/``."""
    from cifar_standin import write_standin

    from cnnlab.config import DataConfig
    from cnnlab.data.torchvision_sets import load_cifar10

    test = images // 6
    with tempfile.TemporaryDirectory() as tmp:
        write_standin(Path(tmp), train=images - test, test=test)
        source = load_cifar10(DataConfig(dataset="cifar10", root=tmp))
    for split_name, split in (("train", source.train), ("test", source.test)):
        pixels = split.images.permute(0, 2, 3, 1).numpy()
        for i, (image, label) in enumerate(zip(pixels, split.labels.tolist(), strict=True)):
            target = folder / split_name / source.classes[label].replace("/", "-")
            target.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.ascontiguousarray(image)).save(target / f"{i:05d}.png")


def time_to_training(folder: Path, cache: Path, src: Path | None) -> tuple[float, list[str]]:
    """Seconds from starting `cnnlab train` to its ``run …`` line; its data lines."""
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "CNNLAB_HOME": home, "CNNLAB_CACHE_DIR": str(cache), "COLUMNS": "300"}
        env.pop("OMP_WAIT_POLICY", None)
        env.pop("CNNLAB_SET_OMP_WAIT_POLICY", None)
        if src is not None:
            env["PYTHONPATH"] = str(src)
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "cnnlab", "train", str(EXAMPLE), "-s", "data.dataset=imagefolder",
             "-s", f"data.path={folder}", "-s", "data.root=null", "-q"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("run "):
                seconds = time.perf_counter() - start
                process.send_signal(signal.SIGTERM)
                process.communicate()
                return seconds, lines
            if line.startswith("data:"):
                lines.append(line.strip())
        process.wait()
        raise SystemExit(f"cnnlab train exited {process.returncode} before training: {lines}")


LOAD = """
import sys, time
import torch
from cnnlab.config import DataConfig
from cnnlab.data.imagefolder import load_imagefolder
started = time.perf_counter()
source = load_imagefolder(DataConfig(dataset="imagefolder", path=sys.argv[1]))
print(time.perf_counter() - started, len(source.train.images) + len(source.test.images))
"""


def time_loader(folder: Path, src: Path) -> float:
    """Seconds ``load_imagefolder`` takes in a fresh process with an empty cache (torch imported first)."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "CNNLAB_CACHE_DIR": cache, "PYTHONPATH": str(src)}
        done = subprocess.run([sys.executable, "-c", LOAD, str(folder)], env=env, capture_output=True,
                              text=True, check=True)
    return float(done.stdout.split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60_000)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "cnnlab-pngs")
    parser.add_argument("--runs", type=int, default=2, help="runs with the cache (the first decodes)")
    parser.add_argument("--baseline-src", type=Path, help="another checkout's src/ to time first")
    args = parser.parse_args()

    from _common import machine

    if not args.folder.exists():
        started = time.perf_counter()
        write_folder(args.folder, args.images)
        print(f"wrote {args.images:,} PNGs into {args.folder} in {time.perf_counter() - started:.0f} s",
              file=sys.stderr)
    count = sum(1 for _ in args.folder.rglob("*.png"))
    sources = [HERE.parent / "src", *([args.baseline_src] if args.baseline_src else [])]
    for src in sources:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(src)], check=True)
    print(f"machine: {machine()}")
    print(f"folder: {args.folder}, {count:,} 32×32 RGB PNGs (train/ and test/); load average "
          f"{os.getloadavg()[0]:.1f}")
    print()
    print("| code | run | seconds to training | what it said |")
    print("| --- | ---: | ---: | --- |")
    if args.baseline_src is not None:
        with tempfile.TemporaryDirectory() as cache:
            seconds, lines = time_to_training(args.folder, Path(cache), args.baseline_src)
        print(f"| {args.baseline_src} | 1 | {seconds:.1f} | {' / '.join(lines)[:120]} |")
    with tempfile.TemporaryDirectory() as cache:
        for run in range(1, args.runs + 1):
            seconds, lines = time_to_training(args.folder, Path(cache), None)
            said = " / ".join(line.split(" (")[0] for line in lines)
            print(f"| this checkout | {run} | {seconds:.1f} | {said[:160]} |")
    print()
    print("| code | loader alone, empty cache (s) |")
    print("| --- | ---: |")
    for src in reversed(sources):
        times = [time_loader(args.folder, src) for _ in range(args.runs)]
        print(f"| {src} | {' / '.join(f'{t:.2f}' for t in times)} |")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
