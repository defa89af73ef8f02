"""The single-model stepper: one model trained by `cnnlab.train.loop`, as the run engine drives it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cnnlab.config import Experiment
from cnnlab.data import DataBundle
from cnnlab.data.transforms import Normalizer
from cnnlab.train.lifecycle import EarlyStopping, EpochCallback
from cnnlab.train.loop import (
    EpochResult,
    StopFlag,
    evaluation_metrics,
    on_device,
    train_one_epoch,
)
from cnnlab.train.losses import make_loss
from cnnlab.train.optimizers import make_optimizer
from cnnlab.train.recipe import Recipe
from cnnlab.train.schedules import set_lr


@dataclass
class Prepared:
    """Everything a run needs, built and checked before anything is written to the store."""

    exp: Experiment
    data: DataBundle
    model: nn.Module
    precision: str
    channels_last: bool
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


class ModelStepper:
    """One model (cell 0) with its optimizer, loss, normaliser, shuffle generator and training
    recipe (`cnnlab.train.recipe.Recipe`: schedule, augmentation, training loss, restore_best);
    with ``resume_state`` (a checkpoint) it continues where that checkpoint left off."""

    def __init__(self, prepared: Prepared, resume_state: dict[str, Any] | None = None) -> None:
        self.prepared = prepared
        exp, data, device = prepared.exp, prepared.data, prepared.device
        self.cfg = exp.train
        self.optimizer = make_optimizer(self.cfg, prepared.model.parameters())
        self.recipe = Recipe(exp, len(data.train), data.input_shape[-1], resume_state)
        self.loss_fn = make_loss(self.cfg.loss)  # evaluation; training uses the recipe's
        self.normalize = Normalizer(data.mean, data.std, prepared.channels_last, device)
        self.generator = torch.Generator().manual_seed(exp.seed)
        if resume_state is not None:
            self.optimizer.load_state_dict(resume_state["optimizer"])
            self.generator.set_state(resume_state["rng"]["shuffle"])
            torch.set_rng_state(resume_state["rng"]["torch"])
            if device.type == "cuda" and "cuda" in resume_state["rng"]:
                torch.cuda.set_rng_state(resume_state["rng"]["cuda"], device)
        # Everything on the device once: batches are gathered there by one indexing op.
        train = on_device(data.train, device, prepared.channels_last)
        assert train is not None
        self.train = train
        self.val, self.test = on_device(data.val, device), on_device(data.test, device)
        if data.test is data.val:
            self.test = self.val
        if len(data.domains) > 1:  # evaluated one by one (a single domain is just val and test)
            for domain in data.domains:
                domain.val, domain.test = on_device(domain.val, device), on_device(domain.test, device)
        self.train_images = len(self.train)

    def train_epoch(self, epoch: int, stop: StopFlag,
                    on_batch: Callable[[int, float, float], None] | None) -> dict[int, EpochResult]:
        """One epoch of the model (cell 0)."""
        batches = -(-len(self.train) // self.cfg.batch_size)
        return {0: train_one_epoch(
            self.prepared.model, self.train.images, self.train.labels, batch_size=self.cfg.batch_size,
            optimizer=self.optimizer, loss_fn=self.recipe.loss_fn, normalize=self.normalize,
            generator=self.generator, precision=self.prepared.precision, stop=stop, on_batch=on_batch,
            before_step=self._scheduled if self.recipe.scheduled else None, augment=self.recipe.augment,
            first_step=(epoch - 1) * batches,
        )}

    def _scheduled(self, step: int) -> None:
        set_lr(self.optimizer, self.recipe.schedule.lr(step))

    def evaluate(self, cell: int) -> dict[str, float]:
        """Validation and test metrics of the model (test only with ``train.eval_test``)."""
        return evaluation_metrics(
            self.prepared.model, self.prepared.data,
            {"val": self.val, "test": self.test if self.cfg.eval_test else None},
            loss_fn=self.loss_fn, normalize=self.normalize, batch_size=self.cfg.eval_batch_size,
            precision=self.prepared.precision)

    def lr(self, cell: int) -> float:
        """The optimizer's learning rate now."""
        return self.optimizer.param_groups[0]["lr"]

    def checkpoint(self, cell: int, epoch: int, early: EarlyStopping, seconds: float) -> dict[str, Any]:
        """The model's checkpoint after ``epoch``."""
        p = self.prepared
        return {**checkpoint_state(p.exp, p.data, p.model, self.optimizer, self.generator, early, epoch,
                                   seconds, p.device), **self.recipe.state()}

    def recipe_callbacks(self, cell: int, early: EarlyStopping) -> list[EpochCallback]:
        """The recipe's epoch steps (plateau, restore_best) for the model."""
        return self.recipe.callbacks(early, self.prepared.model.state_dict)

    def drop(self, cells: Sequence[int]) -> None:
        """Nothing to do: a lone model's run ends with its cell."""


def checkpoint_state(exp: Experiment, data: DataBundle, model: nn.Module, optimizer: torch.optim.Optimizer,
                     generator: torch.Generator, early: EarlyStopping, epoch: int, train_seconds: float,
                     device: torch.device) -> dict[str, Any]:
    """What a checkpoint holds after ``epoch``: weights, optimizer state, every RNG state the next
    epoch draws from, early-stopping state, and the data facts `cnnlab inspect` needs."""
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "shuffle": generator.get_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return {
        "epoch": epoch,
        "config": exp.resolved(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng,
        "early_stopping": early.state(),
        "train_seconds": train_seconds,
        "classes": list(data.classes),
        "input_shape": list(data.input_shape),
        "mean": list(data.mean),
        "std": list(data.std),
    }


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())
