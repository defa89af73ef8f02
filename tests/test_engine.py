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
from cnnlab.store import RunStore
from cnnlab.train import Pruned
from cnnlab.train.engine import CellRun, Engine
from cnnlab.train.lifecycle import EarlyStopping, RunLife
from cnnlab.train.run import prepare, train_sweep_cells
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


class Recorder:
    """A schedule and an augmentation that record how they are called."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.shapes: list[tuple[int, ...]] = []

    def schedule(self, step: int) -> float:
        self.steps.append(step)
        return 0.5 ** step

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(images.shape))
        return images.flip(-1)


def test_both_steppers_call_the_schedule_and_the_augmentation_every_batch():
    exps = [validate_experiment(cell(seed, epochs=2)) for seed in (1, 2)]
    lone, stacked = Recorder(), Recorder()
    single = ModelStepper(prepare(exps[0]), schedule=lone.schedule, augment=lone.augment)
    early = EarlyStopping.configured(exps[0].train, enabled=True)
    (run,) = Engine(single, [CellRun(RunLife(None, ""), early)], epochs=2).run()
    cells = VmapCells(exps, schedule=stacked.schedule, augment=stacked.augment)
    runs = Engine(cells, [CellRun(RunLife(None, ""), cells.early_stopping(c)) for c in (0, 1)],
                  epochs=2).run()

    batches = -(-single.train_images // 64)
    assert lone.steps == stacked.steps == list(range(2 * batches))  # counted over the run, not per epoch
    assert lone.shapes[0] == (64, 1, 28, 28) and stacked.shapes[0] == (128, 1, 28, 28)  # K·B for two cells
    assert len(lone.shapes) == len(stacked.shapes) == 2 * batches
    last = 0.05 * 0.5 ** (2 * batches - 1)  # the rate the last step was taken with
    for r in (run, *runs):
        assert r.status == "completed"
        assert r.epochs[-1]["lr"] == pytest.approx(last)
