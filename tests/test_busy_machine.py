"""A busy machine: OpenMP's wait policy chosen before torch loads in every entry point, and the
small convolutions that stay fp32 under CPU bf16 autocast."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.checks import validate_experiment
from cnnlab.models import create_model
from cnnlab.models.cpu_bf16 import Fp32Conv2d, keep_small_convolutions_fp32, small_convolutions
from cnnlab.openmp import MARK, POLICY, choose_wait_policy
from cnnlab.store import RunStore
from cnnlab.train.run import prepare

SRC = Path(__file__).resolve().parents[1] / "src"
EXPERIMENT = """
name = "tiny"
[data]
dataset = "mnist-sample"
train_limit = 128
test_limit = 32
val = 0.1
[model]
name = "book_cnn"
[train]
epochs = 1
batch_size = 32
eval_test = false
"""
SWEEP = """
name = "tiny-sweep"
base = "tiny.toml"
[grid]
"train.lr" = [0.001, 0.002]
"""


def test_a_short_spin_unless_the_user_chose() -> None:
    env: dict[str, str] = {}
    assert choose_wait_policy(env, modules={}).describe() == "PASSIVE after 10000 spins (set by cnnlab)"
    assert env == {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000", MARK: POLICY}
    assert not choose_wait_policy(env, modules={}).spins
    assert choose_wait_policy(env, modules={}).chosen_by == "cnnlab"  # a worker started from there
    user = {"OMP_WAIT_POLICY": "active"}
    assert choose_wait_policy(user, modules={}).describe() == "ACTIVE (set by user)" and user == {
        "OMP_WAIT_POLICY": "active"}
    spins = {"GOMP_SPINCOUNT": "1000"}
    assert choose_wait_policy(spins, modules={}).policy == "GOMP_SPINCOUNT=1000"
    assert "OMP_WAIT_POLICY" not in spins
    assert choose_wait_policy({"GOMP_SPINCOUNT": "300000"}, modules={}).spins
    passive = {"OMP_WAIT_POLICY": "passive"}  # the user's own, not cnnlab's: kept as it is
    assert choose_wait_policy(passive, modules={}).describe() == "PASSIVE (set by user)"
    assert passive == {"OMP_WAIT_POLICY": "passive"}
    late = choose_wait_policy({}, modules={"torch": object()})
    assert late.spins and late.describe() == "default (torch was imported before cnnlab)"


def _fresh_env(home: Path) -> dict[str, str]:
    """The environment of a new shell: no wait policy, no marker."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", MARK, "GOMP_SPINCOUNT")}
    return {**env, "PYTHONPATH": str(SRC), "CNNLAB_HOME": str(home)}


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_openmp_reads_cnnlabs_spin_count_when_cnnlab_is_imported_first(tmp_path: Path) -> None:
    # libgomp prints what it read as it loads; its spin count is cnnlab's 10,000, 300,000 unset
    env = {**_fresh_env(tmp_path), "OMP_DISPLAY_ENV": "VERBOSE"}
    out = _run(["-c", "import cnnlab, torch"], tmp_path, env)
    assert "GOMP_SPINCOUNT = '10000'" in out, out
    late = _run(["-c", "import torch, cnnlab"], tmp_path, env)
    assert "GOMP_SPINCOUNT = '300000'" in late, late


def test_cli_api_and_spawned_sweep_workers_run_with_cnnlabs_wait_policy(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(EXPERIMENT)
    (tmp_path / "sweep.toml").write_text(SWEEP)
    env = _fresh_env(tmp_path / "home")
    _run(["-m", "cnnlab", "train", "tiny.toml", "-q"], tmp_path, env)
    _run(["-c", "import cnnlab; cnnlab.train('tiny.toml', name='api', progress=False)"], tmp_path, env)
    _run(["-m", "cnnlab", "sweep", "sweep.toml", "--workers", "2", "--threads", "1", "--quiet"], tmp_path,
         env)
    runs = RunStore(root=tmp_path / "home").list_runs()
    assert sorted(r.name for r in runs if not r.sweep) == ["api", "tiny"] and len(runs) == 4
    assert len({r.pid for r in runs if r.sweep}) == 2, "each sweep run in its own spawned worker"
    assert {r.versions["openmp_wait_policy"] for r in runs} == {"PASSIVE after 10000 spins (set by cnnlab)"}


def test_only_the_small_convolutions_of_seed_002s_model_stay_fp32() -> None:
    model = create_model("keras_cifar_cnn")
    keys = list(model.state_dict())
    names = small_convolutions(model, (3, 32, 32))
    assert len(names) == 1 and names == [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)][-1:]
    assert keep_small_convolutions_fp32(model, (3, 32, 32)) == names
    assert list(model.state_dict()) == keys and model.training
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [type(m) for m in convs] == [nn.Conv2d, nn.Conv2d, Fp32Conv2d]
    dtypes = []
    hooks = [m.register_forward_hook(lambda m, a, out: dtypes.append(out.dtype)) for m in convs]
    x = torch.randn(4, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(x).sum().backward()
    assert dtypes == [torch.bfloat16, torch.bfloat16, torch.float32]
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())
    dtypes.clear()
    model.eval()
    reference = create_model("keras_cifar_cnn").eval()
    reference.load_state_dict(model.state_dict())
    assert torch.equal(model(x), reference(x)) and dtypes[-1] == torch.float32  # outside autocast: as written
    for hook in hooks:
        hook.remove()


@pytest.mark.parametrize(("precision", "expected"), [("bf16", 1), ("fp32", 0)])
def test_prepare_keeps_small_convolutions_fp32_only_for_cpu_bf16(precision: str, expected: int) -> None:
    exp = validate_experiment({"name": "x", "data": {"dataset": "mnist-sample", "train_limit": 64,
                                                     "test_limit": 16, "size": 32, "channels": 3},
                               "model": {"name": "keras_cifar_cnn"},
                               "train": {"precision": precision, "device": "cpu"}})
    prepared = prepare(exp)
    assert sum(type(m) is Fp32Conv2d for m in prepared.model.modules()) == expected
