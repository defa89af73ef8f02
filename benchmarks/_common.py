"""Shared helpers for the benchmark scripts: where the real data is and what machine this is."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch

DATA_DIR = Path(
    os.environ.get("CNNLAB_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "datasets")
)


RELEVANT_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_flags_text() -> str:
    """Which of the flags that decide the fast paths this CPU has: ``avx2 yes, avx512f no, …``."""
    from cnnlab.train.hardware import cpu_flags

    flags = cpu_flags()
    return ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in RELEVANT_FLAGS)


def machine() -> str:
    """CPU model and flags, core count, torch version and thread count, for BENCHMARKS.md."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu} ({cpu_flags_text()}), {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def matmul_peak_gflops(dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 10,
                       device: str = "cpu") -> float:
    """Measured dense matmul throughput in GFLOP/s (the best of ``repeats``)."""
    if device == "cuda":
        size = max(size, 8192)
        torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 peak, not TF32's
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def cpu_flags() -> str:
    """Which of the flags that decide fast paths this CPU has: avx2, avx512f, avx512_bf16, amx_bf16."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "flags unknown"
    lines = [line for line in text.splitlines() if line.startswith("flags")]
    have = set(lines[0].split(":", 1)[1].split()) if lines else set()
    return " ".join(f"{flag}={'yes' if flag in have else 'no'}"
                    for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16"))
