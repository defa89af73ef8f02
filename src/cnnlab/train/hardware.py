"""What this machine can do: physical cores, bf16 support, and the settings `auto` resolves to."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import torch

from cnnlab.errors import ConfigError, Problem
from cnnlab.openmp import WAIT_POLICY, WaitPolicy


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


BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is no such file)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_fast_bf16(flags: frozenset[str] | None = None) -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX-512 BF16 or AMX)."""
    return any(flag in (cpu_flags() if flags is None else flags) for flag in BF16_FLAGS)


def busy_cpu_hint(threads_setting: int, threads: int, load: float | None = None,
                  policy: WaitPolicy = WAIT_POLICY) -> str | None:
    """A hint for a machine whose cores other jobs already keep busy (``load``: the 1-minute load
    average, by default this machine's) when this process's OpenMP threads spin while they wait
    (``policy``: torch was imported before cnnlab, or the user asked for it): several threads then
    burn the time their descheduled partners need, 2-8x slower than one thread on a 2-core machine
    at load 10 (BENCHMARKS.md). None when the threads spin briefly or not at all (cnnlab's choice),
    the thread count was set, is 1, or the cores are not all busy."""
    if threads_setting != 0 or threads <= 1 or not policy.spins:
        return None
    load = os.getloadavg()[0] if load is None and hasattr(os, "getloadavg") else load
    if load is None or load < physical_cores():
        return None
    fix = ("import cnnlab before torch, or set GOMP_SPINCOUNT=10000 before Python starts"
           if policy.chosen_by == "too late" else "GOMP_SPINCOUNT=10000 (cnnlab's choice) avoids that")
    return (f"note: this machine is busy (load average {load:.1f} on {physical_cores()} cores) and "
            f"OpenMP threads spin while they wait ({policy.describe()}): {fix}; one thread is also "
            'often several times faster than two: -s train.threads=1 on the command line, '
            'train={"threads": 1} in Python')


def resolve_device(device: str) -> torch.device:
    """'auto' -> the first CUDA GPU when there is one, else the CPU; 'cuda' without one is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(Problem("train.device", device,
                                  "needs a CUDA GPU, and torch sees none here; use 'cpu' or 'auto'"))
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device | None = None,
                      flags: frozenset[str] | None = None) -> str:
    """'auto' -> 'bf16' on a GPU with bf16 support or a CPU that runs it natively (``flags``, by
    default this CPU's, include avx512_bf16 or amx_bf16), else 'fp32'. 'fp32' and 'bf16' stay."""
    if precision == "auto":
        if device is not None and device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if cpu_has_fast_bf16(flags) else "fp32"
    return precision


def use_precision(device: torch.device, precision: str) -> None:
    """On a CUDA GPU, 'fp32' means fp32: TF32 tensor-core convolutions and matmuls (which cuDNN
    allows by default) are turned off, so runs, resumed runs and vmapped cells agree; 'bf16' is
    the fast path (and keeps TF32 on for what autocast leaves in fp32). cuDNN is asked for
    deterministic algorithms either way: the same config and seed give the same numbers."""
    if device.type == "cuda":
        fast = precision != "fp32"
        torch.backends.cudnn.allow_tf32 = fast
        torch.backends.cuda.matmul.allow_tf32 = fast
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def set_threads(threads: int) -> int:
    """Use ``threads`` intra-op threads, or the physical core count when 0."""
    n = threads or physical_cores()
    torch.set_num_threads(n)
    return n


def device_label(device: torch.device) -> str:
    """What a run stores as its device: the GPU's name, or ``cpu``."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
