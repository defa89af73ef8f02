"""The one run engine: a lone run and vmapped cells end the same way in every end state, and the
per-batch recipe hooks (schedule, augment) are called by both steppers."""

from __future__ import annotations

import os
import re
import signal

import pytest
import torch
from rich.console import Console

from cnnlab.checks import validate_experiment
from cnnlab.data.augment import Augment
from cnnlab.store import RunStore
from cnnlab.train import Pruned
from cnnlab.train.engine import CellRun, Engine
from cnnlab.train.lifecycle import EarlyStopping, RunLife
from cnnlab.train.run import prepare, train_sweep_cells
from cnnlab.train.schedules import Schedule
from cnnlab.train.single import ModelStepper
from cnnlab.train.vmap import VmapCells

DATA = {"dataset": "mnist-sample", "train_limit": 256, "test_limit": 64, "val": 0.05}
CNN = [{"type": "conv", "filters": 4, "kernel": 3}, {"type": "relu"}, {"type": "maxpool"},
       {"type": "flatten"}, {"type": "linear", "units": 10}]


def cell(seed: int, **train) -> dict:
    return {"seed": seed, "data": DATA, "model": {"name": "layers", "layers": CNN},
            "train": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 64, "epochs": 2,
                      "device": "cpu", "threads": 1, "precision": "fp32", **train}}


def sigterm(i: int, epoch: int, metrics: dict) -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # as Ctrl-C, `kill` or a cluster scheduler would


def prune(i: int, epoch: int, metrics: dict) -> None:
    raise Pruned(epoch)


# end state -> (train settings of both cells, the sweep's epoch hook)
END_STATES = {
    "completed": ({}, None),
    "stopped_early": ({"epochs": 3, "patience": 1, "min_delta": 10.0}, None),
    "diverged": ({"lr": 1000.0, "momentum": 0.0}, None),
    "pruned": ({}, prune),
    "interrupted": ({}, sigterm),
}


def ends(records, store: RunStore, printed: str) -> list[tuple]:
    """Per run: status, epochs kept, stored error and closing line, run ids and timings masked."""
    out = []
    for record in records:
        closing = [line for line in printed.splitlines() if line.startswith(f"run {record.id} ")]
        masked = [re.sub(r" in [\d.]+ s", " in <t> s", line.replace(record.id, "<id>")) for line in closing]
        error = record.error.replace(record.id, "<id>") if record.error else None
        out.append((record.status, record.epochs_done, error, masked))
    return out


@pytest.mark.parametrize("state", list(END_STATES))
def test_a_two_cell_sweep_ends_alike_alone_and_vmapped(tmp_path, state):
    train, hook = END_STATES[state]
    exps = [validate_experiment(cell(seed, **train)) for seed in (1, 2)]
    store = RunStore(root=tmp_path / "runs")

    def trained(outcomes) -> list:
        return [o.record for o in outcomes if o is not None]

    alone_console = Console(record=True, width=300)
    alone = []  # a lone trial is a group of one, as the sweep worker hands it to the engine
    for exp in exps:
        alone += trained(train_sweep_cells([exp], store, console=alone_console, on_epoch=hook))
    vmapped_console = Console(record=True, width=300)
    together = trained(train_sweep_cells(exps, store, console=vmapped_console, on_epoch=hook, batched=True))
    alone_text, vmapped_text = alone_console.export_text(), vmapped_console.export_text()
    assert "vmap: 2 cells of layers together" in vmapped_text

    assert len(alone) == len(together) == 2
    assert {r.status for r in alone} == {state}
    assert ends(together, store, vmapped_text) == ends(alone, store, alone_text)
    for record in together:  # every status text is the engine's, closing line printed once
        assert len([line for line in vmapped_text.splitlines()
                    if line.startswith(f"run {record.id} {state} after")]) == 1


def test_both_steppers_call_the_schedule_and_the_augmentation_every_batch(monkeypatch):
    """Each cell's recipe (`cnnlab.train.recipe`): its schedule is asked for the lr of every step,
    counted over the run, and its augmentation sees every uint8 training batch (a vmapped group's
    cells in one call, each block drawn from its own generator)."""
    steps: list[int] = []
    shapes: list[tuple[int, ...]] = []
    real_lr, real_augment = Schedule.lr, Augment.__call__

    def lr(self: Schedule, step: int) -> float:
        steps.append(step)
        return real_lr(self, step)

    def augment(self: Augment, images: torch.Tensor, generator) -> torch.Tensor:
        assert images.dtype == torch.uint8
        shapes.append(tuple(images.shape))
        return real_augment(self, images, generator)

    monkeypatch.setattr(Schedule, "lr", lr)
    monkeypatch.setattr(Augment, "__call__", augment)
    recipe = {"schedule": "step", "step_size": 1, "gamma": 0.5}
    data = {**DATA, "augment": "crop"}
    # One seed (one data split, so one batch of K·B images), two learning rates.
    exps = [validate_experiment({**cell(1, **recipe, lr=lr), "data": data}) for lr in (0.05, 0.1)]
    single = ModelStepper(prepare(exps[0]))
    early = EarlyStopping.configured(exps[0].train, enabled=True)
    (run,) = Engine(single, [CellRun(RunLife(None, ""), early)], epochs=2).run()
    batches = -(-single.train_images // 64)
    assert steps == list(range(2 * batches))  # counted over the run, not per epoch
    assert shapes[0] == (64, 1, 28, 28) and len(shapes) == 2 * batches
    steps.clear()
    shapes.clear()
    cells = VmapCells(exps)
    runs = Engine(cells, [CellRun(RunLife(None, ""), cells.early_stopping(c)) for c in (0, 1)],
                  epochs=2).run()
    assert steps == [step for step in range(2 * batches) for _ in (1, 2)]  # once per cell
    assert shapes[0] == (128, 1, 28, 28) and len(shapes) == 2 * batches  # K·B for two cells
    for r, lr in ((run, 0.05), *zip(runs, (0.05, 0.1), strict=True)):
        assert r.status == "completed"
        assert [epoch["lr"] for epoch in r.epochs] == pytest.approx([lr, lr / 2])
