"""One run's (or one cell's) training recipe, as the steppers call it.

A `Recipe` is built from the experiment and holds the small objects the training loops call:
the learning-rate `Schedule` (asked for the lr before every step), the batch `Augment` (None:
off; applied to uint8 training batches only), the training loss (label smoothing; evaluation
uses the plain loss), and the epoch callbacks that follow early stopping: the plateau schedule
reading the epoch's metrics, and `BestWeights` for ``train.restore_best``. Their state goes into
every checkpoint (`state`), so a resumed run continues them. A lone model has one recipe, vmapped
cells one each; nothing else in the loops knows about recipes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from cnnlab.config import Experiment
from cnnlab.data.augment import Augment, make_augment
from cnnlab.train.best import BestWeights
from cnnlab.train.lifecycle import EarlyStopping, EpochCallback, EpochEnd, RunLife
from cnnlab.train.losses import LossFn, make_loss
from cnnlab.train.schedules import Schedule, describe


@dataclass
class ScheduleStep(EpochCallback):
    """Tells the schedule each finished epoch's metrics (plateau reads ``train.monitor``)."""

    schedule: Schedule

    def on_epoch_end(self, run: RunLife, end: EpochEnd) -> None:
        if not end.diverged:
            self.schedule.end_epoch(end.epoch, end.metrics)


class Recipe:
    """The schedule, augmentation, training loss and restore_best of one experiment trained on
    ``train_images`` images of ``image_size`` pixels, continuing a checkpoint's ``resume_state``."""

    def __init__(self, exp: Experiment, train_images: int, image_size: int,
                 resume_state: Mapping[str, Any] | None = None) -> None:
        cfg = exp.train
        self.exp = exp
        self.steps_per_epoch = math.ceil(train_images / cfg.batch_size)
        self.schedule = Schedule(cfg, self.steps_per_epoch)
        self.augment: Augment | None = make_augment(exp.data, image_size)
        self.loss_fn: LossFn = make_loss(cfg.loss, cfg.label_smoothing)
        self.best: BestWeights | None = None
        self._resume = resume_state
        if resume_state is not None:
            self.schedule.load_state(resume_state.get("schedule"))

    @property
    def scheduled(self) -> bool:
        """Whether the lr changes during the run (the loops then set it before every step)."""
        return not self.schedule.constant

    def callbacks(self, early: EarlyStopping, weights: Callable[[], Mapping[str, torch.Tensor]],
                  ) -> list[EpochCallback]:
        """The epoch steps that follow early stopping (whose verdict restore_best reads) and come
        before the checkpoint (which holds their state). ``weights``: the model's state now."""
        out: list[EpochCallback] = [ScheduleStep(self.schedule)] if self.schedule.name == "plateau" else []
        if self.exp.train.restore_best:
            self.best = BestWeights(early, weights)
            if self._resume is not None:
                self.best.load_state(self._resume.get("best_weights"))
            out.append(self.best)
        return out

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the recipe (nothing for a stateless one)."""
        out: dict[str, Any] = {}
        if self.schedule.name == "plateau":
            out["schedule"] = self.schedule.state()
        if self.best is not None:
            out["best_weights"] = self.best.state()
        return out

    def describe(self) -> str:
        """The recipe in a few words for the run's opening line ('' when it has none)."""
        cfg = self.exp.train
        parts = [describe(cfg), self.augment.describe() if self.augment is not None else "",
                 f"label smoothing {cfg.label_smoothing:g}" if cfg.label_smoothing else "",
                 f"restore best {cfg.monitor}" if cfg.restore_best else ""]
        return ", ".join(part for part in parts if part)
