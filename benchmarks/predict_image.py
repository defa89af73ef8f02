"""Time and peak memory of reading a user's image for `cnnlab predict` (read_image + to_input),
per image size and style, each in a fresh process so its peak RSS is its own.

    python benchmarks/predict_image.py [--sizes 4000x3000,7900x7900,10000x10000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from _common import cpu_flags, machine

ONE = """
import json, resource, sys, time
from cnnlab.errors import DataError
from cnnlab.inspect.photo import read_image, to_input
start = time.perf_counter()
try:
    image = to_input(read_image(sys.argv[1]), (1, 28, 28), sys.argv[2])
    outcome = "ok"
except DataError as exc:
    outcome = "refused"
print(json.dumps({"seconds": time.perf_counter() - start, "outcome": outcome,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def make_image(path: Path, width: int, height: int) -> None:
    """A dark digit-like stroke on light paper with noise, saved as PNG or JPEG by suffix."""
    rng = np.random.default_rng(0)
    image = Image.fromarray((235 + rng.integers(0, 20, (height, width), dtype=np.uint8)).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    box = (width * 0.35, height * 0.2, width * 0.65, height * 0.8)
    draw.ellipse(box, outline=20, width=max(2, width // 30))
    image.save(path, quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="4000x3000,7900x7900,10000x10000")
    args = parser.parse_args()
    print(machine())
    print(cpu_flags())
    print(f"{'image':>22} {'style':>6} {'outcome':>8} {'seconds':>8} {'peak MB':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            width, height = (int(v) for v in size.split("x"))
            for suffix in (".png", ".jpg"):
                path = Path(tmp) / f"{size}{suffix}"
                make_image(path, width, height)
                for style in ("digit", "plain"):
                    done = subprocess.run([sys.executable, "-c", ONE, str(path), style], capture_output=True,
                                          text=True, check=True)
                    result = json.loads(done.stdout)
                    print(f"{path.name:>22} {style:>6} {result['outcome']:>8} {result['seconds']:8.2f} "
                          f"{result['peak_mb']:8.0f}", flush=True)


if __name__ == "__main__":
    main()
