"""Time the dashboard's pages on a store of 1,000 runs × 40 epochs (synthetic curves, no training).

    python benchmarks/ui.py                   # build the store in a temporary folder, time each page
    python benchmarks/ui.py --keep /tmp/bench-ui --repeats 20

The store holds 5 sweeps of 200 runs (5 learning rates × 2 optimizers × 2 dropouts × 2 batch
sizes × 5 seeds); `--one-sweep` puts all 1,000 runs in one sweep instead (the worst study page).
`cnnlab ui` runs as a user starts it (a separate process, uvicorn, the read-only SQLite store);
each page is timed as a browser needs it: the HTML, then the JSON its script fetches. Target:
each page (HTML + data) served in under 1 s.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cnnlab.analyze.synthetic import make_sweep
from cnnlab.store import RunStore

from _common import machine

GRID = {
    "train.lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2],
    "train.optimizer": ["adam", "sgd"],
    "model.dropout": [0.0, 0.5],
    "train.batch_size": [64, 128],
}
SEEDS = (0, 1, 2, 3, 4)
TARGET_S = 1.0


def cpu_flags() -> str:
    """The flags that decide fast paths on this kind of machine."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    lines = text.splitlines()
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    return " ".join(f"{flag}={'yes' if flag in flags else 'no'}"
                    for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16"))


def build(home: Path, epochs: int, one_sweep: bool) -> int:
    """Store 1,000 synthetic runs: five sweeps of 200, or one of 1,000 (25 seeds per cell)."""
    plan = {"all": tuple(range(25))} if one_sweep else dict.fromkeys("abcde", SEEDS)
    with RunStore(root=home) as store:
        return sum(len(make_sweep(store, name, GRID, seeds, epochs)) for name, seeds in plan.items())


def fetch(port: int, path: str) -> tuple[float, int, int]:
    """Seconds, status and bytes of one GET on a fresh connection."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    return time.perf_counter() - start, response.status, len(body)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid``: what a request costs the server, whatever else runs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid: int, timeout: float = 120.0) -> None:
    """Wait until the server has finished starting: its CPU time stops growing (torch is imported
    in the background after the address is printed)."""
    deadline = time.monotonic() + timeout
    used = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = cpu_seconds(pid)
        if now - used < 0.02:
            return
        used = now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--one-sweep", action="store_true", help="All 1,000 runs in one sweep.")
    parser.add_argument("--keep", type=Path, help="Build the store here instead of a temporary folder.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = (args.keep or Path(tmp)) / "store"
        if not (home / "runs.sqlite").is_file():
            start = time.perf_counter()
            runs = build(home, args.epochs, args.one_sweep)
            print(f"stored {runs} synthetic runs × {args.epochs} epochs in {home} "
                  f"({time.perf_counter() - start:.0f} s)")
        sweep = "all" if args.one_sweep else "a"
        env = {**os.environ, "CNNLAB_HOME": str(home)}
        server = subprocess.Popen([sys.executable, "-m", "cnnlab", "ui", "--port", "0"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert server.stdout is not None
            first = server.stdout.readline()
            match = re.search(r":(\d+)/", first)
            if not match:
                sys.exit(f"cnnlab ui did not start: {first}{server.stdout.read()}")
            port = int(match.group(1))
            settle(server.pid)
            pages = {
                "runs page": ["/", "/api/runs"],
                f"study page ({sweep})": [f"/sweeps/{sweep}", f"/api/sweeps/{sweep}"],
                f"study effect figures ({sweep}), first draw": [f"/api/sweeps/{sweep}/figures"],
            }
            print(f"machine: {machine()}; {cpu_flags()}")
            for label, paths in pages.items():
                repeats = 1 if "first draw" in label else args.repeats
                totals, sizes, cpu = [], [], []
                for _ in range(repeats):
                    cpu_start = cpu_seconds(server.pid)
                    timed = [fetch(port, path) for path in paths]
                    cpu.append(cpu_seconds(server.pid) - cpu_start)
                    if any(status != 200 for _, status, _ in timed):
                        sys.exit(f"{label}: {[(p, s) for p, (_, s, _) in zip(paths, timed, strict=True)]}")
                    totals.append(sum(seconds for seconds, _, _ in timed))
                    sizes = [size for _, _, size in timed]
                again = totals[1:]
                shown = f"first {totals[0] * 1000:.0f} ms ({cpu[0] * 1000:.0f} ms CPU)"
                if again:  # later requests reuse the analysis while the sweep is unchanged
                    shown += (f", then median {statistics.median(again) * 1000:.0f} ms "
                              f"({statistics.median(cpu[1:]) * 1000:.0f} ms CPU), "
                              f"max {max(again) * 1000:.0f} ms over {len(again)}")
                verdict = "ok" if max(totals) < TARGET_S else "OVER TARGET"
                print(f"{label}: {shown} ({' + '.join(f'{s / 1e3:.0f} kB' for s in sizes)}; "
                      f"target < {TARGET_S:g} s: {verdict}); load average {os.getloadavg()[0]:.1f}")
        finally:
            server.terminate()
            server.wait(timeout=20)


if __name__ == "__main__":
    main()
