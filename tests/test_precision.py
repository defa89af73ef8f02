"""`train.precision = "auto"` by default: how it resolves, what it hashes as, and the bf16 path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console

from cnnlab.checks import filled_hashes, validate_experiment
from cnnlab.config import QUICKSTART, Experiment, ModelConfig, config_hash
from cnnlab.models import build_model
from cnnlab.openmp import POLICY, WaitPolicy
from cnnlab.store import RunStore
from cnnlab.train import train_experiment
from cnnlab.train.hardware import (
    busy_cpu_hint,
    cpu_flags,
    cpu_has_fast_bf16,
    physical_cores,
    resolve_precision,
)
from cnnlab.train.loop import autocast_context

QUIET = Console(quiet=True)

# Hashes computed by cnnlab before "auto" became the default (precision "fp32" then).
HASH_BEFORE = {
    "defaults": ({}, "19c723e1914a07fc"),
    "quickstart": (QUICKSTART, "1588203d2198ba06"),
    "explicit bf16": ({"train": {"precision": "bf16"}}, "e8a274c99cd0571a"),
}


def test_default_is_auto() -> None:
    assert validate_experiment({}).train.precision == "auto"


@pytest.mark.parametrize("case", sorted(HASH_BEFORE))
def test_stored_hashes_do_not_change(case: str) -> None:
    raw, before = HASH_BEFORE[case]
    # a run stored before the change holds its resolved config with the old default written out
    # (and, before issue 23, its model defaults left out)
    stored = Experiment.model_validate(raw).resolved()
    if stored["train"]["precision"] == "auto":
        stored["train"]["precision"] = "fp32"
    assert config_hash(stored) == before  # its hash as stored then (kept as legacy_hash)
    # computed again with defaults filled in, it is today's hash of the same experiment
    assert filled_hashes(stored)[0] == validate_experiment(raw).hash()


def test_explicit_precisions_hash_apart() -> None:
    hashes = {p: validate_experiment({"train": {"precision": p}}).hash() for p in ("auto", "fp32", "bf16")}
    assert hashes["auto"] == hashes["fp32"] != hashes["bf16"]


@pytest.mark.parametrize(("flags", "expected"), [
    ({"avx2", "fma"}, "fp32"),                       # AVX2-only EPYC: bf16 is emulated, 10× slower
    ({"avx2", "avx512f"}, "fp32"),                   # AVX-512 without its bf16 extension
    ({"avx2", "avx512f", "avx512_bf16"}, "bf16"),   # Zen 4
    ({"avx2", "amx_tile", "amx_bf16"}, "bf16"),      # Sapphire Rapids
    (set(), "fp32"),                                 # no /proc/cpuinfo
])
def test_auto_resolves_by_cpu_flags(flags: set[str], expected: str) -> None:
    assert resolve_precision("auto", torch.device("cpu"), frozenset(flags)) == expected
    for forced in ("fp32", "bf16"):
        assert resolve_precision(forced, torch.device("cpu"), frozenset(flags)) == forced


def test_auto_on_a_gpu_follows_its_bf16_support(monkeypatch: pytest.MonkeyPatch) -> None:
    for supported, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda answer=supported: answer)
        assert resolve_precision("auto", torch.device("cuda"), frozenset()) == expected


def test_this_cpu_is_read() -> None:
    flags = cpu_flags()
    assert cpu_has_fast_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)


def small(precision: str | None = None, **model) -> dict:
    train = {"optimizer": "adam", "lr": 0.003, "batch_size": 64, "epochs": 2}
    if precision is not None:
        train["precision"] = precision
    return {"seed": 3, "data": {"dataset": "mnist-sample", "train_limit": 1200, "test_limit": 200,
                                "val": 0.2},
            "model": {"name": "book_cnn", **model}, "train": train}


def test_run_stores_and_prints_the_resolved_precision(tmp_path) -> None:
    store = RunStore(root=tmp_path / "runs")
    outcome = train_experiment(validate_experiment(small()), store, console=QUIET, progress=False)
    resolved = "bf16" if cpu_has_fast_bf16() else "fp32"
    assert outcome.record.precision == resolved
    assert outcome.record.config["train"]["precision"] == "auto"
    run_line = next(line for line in outcome.messages if line.startswith("run "))
    assert f", {resolved} (auto), " in run_line


def test_bf16_step_matches_fp32_within_bf16_rounding() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="keras_cifar_cnn"), (3, 32, 32), 10)
    x = torch.randn(8, 3, 32, 32)
    y = torch.randint(0, 10, (8,))
    grads = {}
    for precision in ("fp32", "bf16"):
        model.zero_grad(set_to_none=True)
        with autocast_context(precision):
            logits = model(x)
            loss = F.cross_entropy(logits, y)
        assert logits.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
        loss.backward()
        grads[precision] = torch.cat([p.grad.flatten() for p in model.parameters()])
        assert all(p.grad.dtype == torch.float32 for p in model.parameters())  # fp32 weights
    error = (grads["bf16"] - grads["fp32"]).norm() / grads["fp32"].norm()
    assert 0 < error < 0.05, error


def test_bf16_training_learns_like_fp32(tmp_path) -> None:
    """bf16 autocast trains on real digits as well as fp32 does (the seed-to-seed comparison is
    benchmarks/precision.py's)."""
    store = RunStore(root=tmp_path / "runs")
    acc = {}
    for precision in ("fp32", "bf16"):
        record = train_experiment(validate_experiment(small(precision)), store, console=QUIET,
                                  progress=False).record
        assert record.precision == precision
        acc[precision] = record.final_val_acc
    assert acc["fp32"] > 0.8 and abs(acc["bf16"] - acc["fp32"]) <= 0.04, acc


def test_busy_cpu_hint_only_when_every_core_is_busy_threads_are_automatic_and_they_spin() -> None:
    cores = physical_cores()
    spinning = WaitPolicy("default", "too late")
    assert busy_cpu_hint(0, 2, load=cores + 0.5, policy=spinning) is not None
    hint = busy_cpu_hint(0, 2, load=cores + 0.5, policy=spinning)
    assert "train.threads=1" in hint and "import cnnlab before torch" in hint
    active = WaitPolicy("ACTIVE", "user")
    assert "GOMP_SPINCOUNT=10000 (cnnlab's choice) avoids" in busy_cpu_hint(0, 2, load=cores + 1,
                                                                              policy=active)
    assert busy_cpu_hint(0, 2, load=cores + 5, policy=WaitPolicy(POLICY, "cnnlab")) is None  # brief spin
    assert busy_cpu_hint(0, 2, load=cores + 5, policy=WaitPolicy("PASSIVE", "user")) is None  # they sleep
    assert busy_cpu_hint(0, 2, load=cores + 5, policy=WaitPolicy("GOMP_SPINCOUNT=300000", "user"))
    assert busy_cpu_hint(0, 2, load=cores - 0.5, policy=spinning) is None
    assert busy_cpu_hint(2, 2, load=cores + 5, policy=spinning) is None  # the user chose the thread count
    assert busy_cpu_hint(0, 1, load=cores + 5, policy=spinning) is None  # already one thread
