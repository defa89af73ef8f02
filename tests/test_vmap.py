"""vmap-batched training: grouping, the functional optimizers, equality with separate runs,
dropout, BatchNorm fallback, divergence and the store-backed sweep entry point."""

from __future__ import annotations

import io
import math
import os
import signal

import pytest
import torch
from rich.console import Console

from cnnlab.checks import validate_experiment
from cnnlab.config import Experiment, TrainConfig
from cnnlab.errors import VmapUnsupported
from cnnlab.models import build_model
from cnnlab.store import RunRecord, RunStore
from cnnlab.train import Pruned, load_checkpoint, resume_run, train_experiment
from cnnlab.train.engine import CellRun, Engine
from cnnlab.train.lifecycle import RunLife
from cnnlab.train.losses import make_loss, mse
from cnnlab.train.optimizers import make_optimizer
from cnnlab.train.run import train_sweep_cells
from cnnlab.train.stacked_optimizer import StackedOptimizer
from cnnlab.train.vmap import (
    VmapCells,
    train_cells_vmapped,
    vmap_groups,
    vmap_unsupported,
)

QUIET = Console(quiet=True)
DATA = {"dataset": "mnist-sample", "train_limit": 512, "test_limit": 256, "val": 0.1}
CNN = [
    {"type": "conv", "filters": 6, "kernel": 3},
    {"type": "relu"},
    {"type": "maxpool"},
    {"type": "flatten"},
    {"type": "linear", "units": 32},
    {"type": "relu"},
    {"type": "linear", "units": 10},
]
BN_CNN = [*CNN[:1], {"type": "batchnorm"}, *CNN[1:]]
REL = 1e-4  # measured agreement is about 1e-7 relative (float32 rounding of batched kernels)


def cell(seed: int = 1, model: dict | None = None, **train) -> Experiment:
    return validate_experiment({
        "seed": seed,
        "data": DATA,
        "model": model or {"name": "layers", "layers": CNN},
        "train": {"batch_size": 64, "epochs": 2, "device": "cpu", "threads": 1, "precision": "fp32",
                  **train},
    })


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(root=tmp_path / "runs")


def sweep_cells(exps, store, **kwargs) -> list[RunRecord]:
    """The stored runs `train_sweep_cells` trained (cells never started left out)."""
    return [o.record for o in train_sweep_cells(exps, store, **kwargs) if o is not None]


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL, abs_tol=1e-7)


def same(a: float, b: float) -> bool:
    """Close, or both NaN, or the same infinity."""
    return (math.isnan(a) and math.isnan(b)) or a == b or close(a, b)


# -- grouping and support ---------------------------------------------------------------------


def test_groups_allow_seed_and_optimizer_hyperparameters_to_differ():
    exps = [
        cell(1, lr=0.1),
        cell(2, lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4),
        cell(1, batch_size=32),
        cell(3, lr=0.5),
        cell(1, optimizer="adam"),
        validate_experiment({**cell(1).resolved(), "name": "other-name"}),
        cell(1, model={"name": "book_cnn"}),
    ]
    assert vmap_groups(exps) == [[0, 1, 3, 5], [2], [4], [6]]


def test_batchnorm_with_running_stats_is_unsupported_and_plain_models_are_not():
    bn = build_model(cell(model={"name": "layers", "layers": BN_CNN}).model, (1, 28, 28), 10)
    reason = vmap_unsupported(bn)
    assert reason is not None and "BatchNorm2d" in reason and "replace_all_batch_norm_modules_" in reason
    plain = build_model(cell().model, (1, 28, 28), 10)
    assert vmap_unsupported(plain, (1, 28, 28)) is None
    plain.fc1.weight.requires_grad_(False)
    assert "frozen" in vmap_unsupported(plain)


def test_model_that_fails_under_vmap_is_reported():
    class ItemModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            if x.sum().item() > 0:  # data-dependent control flow: vmap refuses it
                return self.fc(x.flatten(1))
            return -self.fc(x.flatten(1))

    reason = vmap_unsupported(ItemModel(), (1, 2, 2))
    assert reason is not None and "torch.vmap" in reason


def test_mse_works_under_vmap_and_equals_the_one_hot_formula():
    logits, targets = torch.randn(3, 16, 10), torch.randint(0, 10, (3, 16))
    batched = torch.vmap(make_loss("mse"))(logits, targets)
    for cell in range(3):
        one_hot = torch.nn.functional.one_hot(targets[cell], 10).float()
        expected = torch.nn.functional.mse_loss(torch.softmax(logits[cell], 1), one_hot)
        assert torch.allclose(batched[cell], expected)
        assert torch.equal(mse(logits[cell], targets[cell]), expected)


# -- the functional optimizer -----------------------------------------------------------------

OPT_CELLS = {
    "sgd": [dict(lr=0.1, momentum=0.9), dict(lr=0.05, weight_decay=0.01),
            dict(lr=0.2, momentum=0.5, nesterov=True, weight_decay=1e-3)],
    "adam": [dict(lr=0.01), dict(lr=0.003, weight_decay=0.01), dict(lr=0.1, weight_decay=0.5)],
    "adamw": [dict(lr=0.01), dict(lr=0.003, weight_decay=0.01), dict(lr=0.1, weight_decay=0.5)],
    "rmsprop": [dict(lr=0.01), dict(lr=0.003, momentum=0.9, weight_decay=0.01), dict(lr=0.02)],
}


@pytest.mark.parametrize("kind", list(OPT_CELLS))
def test_stacked_optimizer_matches_torch_optim_per_cell(kind):
    gen = torch.Generator().manual_seed(0)
    shapes = {"w": (4, 3), "b": (5,)}
    cfgs = [TrainConfig(optimizer=kind, **c) for c in OPT_CELLS[kind]]
    start = {name: torch.randn(len(cfgs), *shape, generator=gen) for name, shape in shapes.items()}
    params = [{name: torch.nn.Parameter(start[name][k].clone()) for name in shapes} for k in range(len(cfgs))]
    torch_opts = [make_optimizer(cfg, p.values()) for cfg, p in zip(cfgs, params, strict=True)]
    stacked = StackedOptimizer(kind, [o.param_groups[0] for o in torch_opts])
    current = dict(start)
    for step in range(6):
        grads = {name: torch.randn(len(cfgs), *shape, generator=gen) for name, shape in shapes.items()}
        mask = torch.tensor([True, True, step < 3])  # the last cell is frozen after 3 steps
        current = stacked.step(current, grads, mask)
        for k, opt in enumerate(torch_opts):
            if not mask[k]:
                continue
            for name, p in params[k].items():
                p.grad = grads[name][k].clone()
            opt.step()
    for k in range(len(cfgs)):
        for name, p in params[k].items():
            torch.testing.assert_close(current[name][k], p.detach(), rtol=1e-6, atol=1e-7)
    # The exported state is torch's own, key for key (the frozen cell aside: it stepped less).
    named = list(params[0].items())
    exported = stacked.torch_state(0, named)
    for name, p in named:
        own = torch_opts[0].state[p]
        assert set(exported[name]) == set(own)
        for key, value in own.items():
            torch.testing.assert_close(exported[name][key], value, rtol=1e-6, atol=1e-7)


def test_stacked_sgd_first_momentum_buffer_is_the_gradient():
    opt = StackedOptimizer("sgd", [{"lr": 0.5, "momentum": 0.9, "weight_decay": 0.0, "nesterov": False}] * 2)
    grad = {"w": torch.tensor([[1.0, -2.0], [3.0, 4.0]])}
    new = opt.step({"w": torch.zeros(2, 2)}, grad)
    assert torch.equal(opt.state["w"]["momentum_buffer"], grad["w"])
    assert torch.equal(new["w"], -0.5 * grad["w"])


# -- equality with separately trained cells ---------------------------------------------------


@pytest.mark.parametrize("kind, cells", [
    ("sgd", [dict(seed=1, lr=0.05, momentum=0.9), dict(seed=2, lr=0.02, momentum=0.9, nesterov=True),
             dict(seed=1, lr=0.1, weight_decay=1e-3)]),
    ("adam", [dict(seed=1, lr=1e-3), dict(seed=2, lr=3e-3, weight_decay=1e-3), dict(seed=3, lr=2e-3)]),
])
def test_vmapped_cells_equal_separately_trained_runs(store, kind, cells):
    exps = [cell(**c, optimizer=kind) for c in cells]
    group = VmapCells(exps)
    results = Engine(group, [CellRun(RunLife(None, ""), group.early_stopping(c)) for c in range(len(exps))],
                     epochs=2).run()
    for exp, result, model in zip(exps, results, group.models, strict=True):
        record = train_experiment(exp, store, console=QUIET, progress=False).record
        alone = store.epochs(record.id)
        assert result.status == record.status == "completed"
        assert len(result.epochs) == len(alone) == 2
        for mine, theirs in zip(result.epochs, alone, strict=True):
            for key in ("train_loss", "val_loss", "test_loss"):
                assert close(mine[key], theirs[key]), (key, mine[key], theirs[key])
            for key, n in (("train_acc", 512), ("val_acc", 400), ("test_acc", 256)):
                assert abs(mine[key] - theirs[key]) * n <= 1.0 + 1e-9, (key, mine[key], theirs[key])
            assert mine["lr"] == theirs["lr"]
        weights = load_checkpoint(store.checkpoint_path(record.id))["model"]
        # Adam divides by sqrt(v): a weight whose gradient is ~0 can move by float rounding of
        # the gradient (seen on an H100: 1 of 32,448 weights off by 1.2e-5), hence atol 1e-4.
        atol = 1e-4 if kind == "adam" else 1e-6
        for name, value in model.state_dict().items():
            torch.testing.assert_close(value, weights[name], rtol=1e-4, atol=atol)


def test_vmapped_cells_train_the_rewritten_model_and_equal_lone_runs(store):
    exps = [cell(seed=1, epochs=1), cell(seed=2, epochs=1, lr=3e-3)]
    group = VmapCells(exps)
    kinds = [type(m).__name__ for m in group.base.modules() if type(m).__name__ in ("ReLU", "MaxPool2d")]
    assert kinds[:2] == ["MaxPool2d", "ReLU"], "max-pool moved in front of the ReLU, as in a lone run"
    assert all(m.inplace for m in group.base.modules() if isinstance(m, torch.nn.ReLU))
    results = Engine(group, [CellRun(RunLife(None, ""), group.early_stopping(c)) for c in range(2)],
                     epochs=1).run()
    for exp, result in zip(exps, results, strict=True):
        alone = store.epochs(train_experiment(exp, store, console=QUIET, progress=False).record.id)
        for key in ("train_loss", "val_loss", "test_loss"):
            assert close(result.epochs[0][key], alone[0][key]), (key, result.epochs[0][key], alone[0][key])


def test_vmapped_bf16_cells_on_the_cpu_keep_small_convolutions_fp32_as_lone_runs_do():
    from cnnlab.models.cpu_bf16 import Fp32Conv2d

    small = [{"type": "conv", "filters": 4, "kernel": 3}, {"type": "relu"}, {"type": "maxpool"},
             {"type": "conv", "filters": 4, "kernel": 3}, {"type": "relu"}, {"type": "maxpool"},
             {"type": "flatten"}, {"type": "linear", "units": 10}]  # 28 -> 26 -> 13 -> 11 -> 5
    small[3]["kernel"] = 10  # 13 -> 4: 16 output positions
    bf16 = VmapCells([cell(seed=1, model={"name": "layers", "layers": small}, precision="bf16")])
    fp32 = VmapCells([cell(seed=1, model={"name": "layers", "layers": small}, precision="fp32")])
    assert [type(m) for m in bf16.base.modules() if isinstance(m, torch.nn.Conv2d)] == [
        torch.nn.Conv2d, Fp32Conv2d]
    assert not any(isinstance(m, Fp32Conv2d) for m in fp32.base.modules())


def test_dropout_cells_draw_their_own_masks_and_learn():
    model = {"name": "book_cnn"}  # dropout 0.5 and conv dropout 0.5
    exps = [cell(5, model=model, optimizer="adam", lr=3e-3) for _ in range(2)]
    epochs = train_cells_vmapped(exps)
    losses = [[e["train_loss"] for e in cell_epochs] for cell_epochs in epochs]
    for cell_losses in losses:
        assert all(math.isfinite(x) for x in cell_losses)
        assert cell_losses[-1] < cell_losses[0]
    # Same seed, same start, same batches: only the dropout masks differ.
    assert losses[0] != losses[1]


# -- the store-backed entry point -------------------------------------------------------------


def test_sweep_cells_store_runs_with_summaries_and_resumable_checkpoints(store):
    exps = [cell(1, optimizer="sgd", lr=0.05, momentum=0.9), cell(2, optimizer="sgd", lr=0.02, momentum=0.9)]
    records = sweep_cells(exps, store, sweep="s1", trials=[3, 4], console=QUIET, batched=True)
    assert [r.status for r in records] == ["completed", "completed"]
    for exp, record, trial in zip(exps, records, (3, 4), strict=True):
        assert (record.sweep, record.trial, record.seed) == ("s1", trial, exp.seed)
        assert record.config_hash == exp.hash() and record.cell_hash == exp.hash(include_seed=False)
        assert record.epochs_done == 2 and record.n_params is not None and record.precision == "fp32"
        assert record.device == "cpu"
        epochs = store.epochs(record.id)
        assert [e["epoch"] for e in epochs] == [1, 2]
        assert record.final_test_acc == epochs[-1]["test_acc"]
        assert record.best_val_acc == max(e["val_acc"] for e in epochs)
        assert record.duration_s == pytest.approx(sum(e["seconds"] for e in epochs))
        state = load_checkpoint(store.checkpoint_path(record.id))
        assert state["epoch"] == 2 and state["config"] == exp.resolved()
        model = build_model(exp.model, tuple(state["input_shape"]), len(state["classes"]))
        model.load_state_dict(state["model"])



def test_interrupted_group_marks_runs_interrupted_and_each_cell_resumes_alone(store):
    exps = [cell(1, optimizer="sgd", lr=0.05, momentum=0.9), cell(2, optimizer="sgd", lr=0.02, momentum=0.9),
            cell(1, optimizer="adam")]  # another group: not started after the interruption

    def sigterm_after_first_epoch(i: int, epoch: int, metrics: dict) -> None:
        if i == 1:  # a real SIGTERM, as `kill` or a cluster scheduler sends it
            os.kill(os.getpid(), signal.SIGTERM)

    records = sweep_cells(exps, store, console=QUIET, on_epoch=sigterm_after_first_epoch,
                           batched=True)
    assert [r.status for r in records] == ["interrupted", "interrupted"]
    assert [r.epochs_done for r in records] == [1, 1]
    assert all("--resume " + r.id in r.error for r in records)
    # The checkpoint holds a real optimizer state and shuffle generator: continued alone, the
    # cell's second epoch is the second epoch of a separate run.
    resumed = resume_run(records[0].id, store, console=QUIET, progress=False).record
    alone = train_experiment(exps[0], store, console=QUIET, progress=False).record
    assert resumed.status == "completed" and resumed.epochs_done == 2
    second, reference = store.epochs(resumed.id)[1], store.epochs(alone.id)[1]
    for key in ("train_loss", "val_loss", "test_loss"):
        assert close(second[key], reference[key]), (key, second[key], reference[key])


def test_diverged_cell_is_frozen_and_stored_while_the_others_go_on(store):
    exps = [cell(1, optimizer="sgd", lr=0.05), cell(1, optimizer="sgd", lr=1000.0),
            cell(2, optimizer="sgd", lr=0.05, epochs=2)]
    seen: list[tuple[int, int]] = []

    def prune_third(i: int, epoch: int, metrics: dict) -> None:
        seen.append((i, epoch))
        if i == 2:
            raise Pruned(epoch)

    records = sweep_cells(exps, store, console=QUIET, on_epoch=prune_third, batched=True)
    assert [r.status for r in records] == ["completed", "diverged", "pruned"]
    assert [r.epochs_done for r in records] == [2, 1, 1]
    assert "train.lr" in records[1].error and records[2].error == "pruned after epoch 1"
    bad = store.epochs(records[1].id)
    assert not math.isfinite(bad[0]["train_loss"])
    assert sorted(seen) == [(0, 1), (0, 2), (2, 1)]  # the hook skips diverged epochs, as _fit does

    # The diverged cell stored what a separate run of it stores (frozen at the weights before
    # the non-finite step, as the single loop does not step on it); the others were unaffected.
    alone = train_experiment(exps[1], store, console=QUIET, progress=False).record
    assert alone.status == "diverged" and alone.epochs_done == 1
    theirs = store.epochs(alone.id)[0]
    for key in ("train_loss", "val_loss", "test_loss"):
        assert same(bad[0][key], theirs[key]), (key, bad[0][key], theirs[key])
    assert bad[0]["val_acc"] == pytest.approx(theirs["val_acc"], abs=1 / 400)
    assert not (store.checkpoint_path(records[1].id)).exists()  # like _fit: no diverged checkpoint
    first_alone = train_experiment(exps[0], store, console=QUIET, progress=False).record
    for mine, theirs in zip(store.epochs(records[0].id), store.epochs(first_alone.id), strict=True):
        assert close(mine["val_loss"], theirs["val_loss"])


def test_batchnorm_cells_fall_back_to_one_at_a_time(store):
    exps = [cell(s, model={"name": "layers", "layers": BN_CNN}, optimizer="adam", lr=1e-3, epochs=1)
            for s in (1, 2)]
    with pytest.raises(VmapUnsupported, match="running statistics"):
        VmapCells(exps)
    out = io.StringIO()
    records = sweep_cells(exps, store, console=Console(file=out, width=200), batched=True)
    assert "one at a time" in out.getvalue()
    assert [r.status for r in records] == ["completed", "completed"]
    assert [r.seed for r in records] == [1, 2]
    for record in records:
        assert record.epochs_done == 1
        assert (store.checkpoint_path(record.id)).is_file()


def test_sweep_cells_on_the_cpu_train_one_at_a_time_unless_batched(store):
    exps = [cell(s, optimizer="sgd", lr=0.05, epochs=1) for s in (1, 2)]
    out = io.StringIO()
    records = sweep_cells(exps, store, console=Console(file=out, width=200))
    assert "slower than separate runs on the CPU" in out.getvalue()
    assert [(r.status, r.seed, r.epochs_done) for r in records] == [("completed", 1, 1), ("completed", 2, 1)]
