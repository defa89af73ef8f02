"""What this machine can do: physical cores, bf16 support, and the settings `auto` resolves to."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from torch import nn


@cache
def physical_cores() -> int:
    """Physical cores available to this process (hyper-threads counted once)."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return max(1, logical or 1)
    cores = set()
    physical_id = core_id = None
    for line in [*text.splitlines(), ""]:
        if line.startswith("physical id"):
            physical_id = line.split(":")[1].strip()
        elif line.startswith("core id"):
            core_id = line.split(":")[1].strip()
        elif not line.strip() and core_id is not None:
            cores.add((physical_id, core_id))
            physical_id = core_id = None
    return max(1, min(len(cores) or logical or 1, logical or 1))


@cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX-512 BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str) -> str:
    """'auto' -> 'bf16' where the CPU runs it natively, else 'fp32'."""
    if precision == "auto":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return precision


def resolve_channels_last(memory_format: str, model: nn.Module) -> bool:
    """'auto' -> channels_last for models with 2-D convolutions (measured faster here), else NCHW."""
    if memory_format == "auto":
        return any(isinstance(m, nn.Conv2d) for m in model.modules())
    return memory_format == "channels_last"
