"""Learning-rate schedules: the lr of a run at each optimizer step, from its `train` settings.

A schedule is a small object the training loop asks for the lr before every step (``lr(step)``,
steps counted from 0 over the whole run) and tells about every finished epoch (``end_epoch``);
the loop sets the lr on its optimizer with `set_lr` (a `torch.optim` optimizer, or a stacked
optimizer whose ``lr`` is a per-cell tensor). The same objects drive a lone run, vmapped cells
(one schedule per cell) and sweep trials, so they cannot drift apart.

- ``constant`` (the default): ``train.lr`` throughout, as before schedules existed.
- ``step``: ``train.lr × gamma^⌊e / step_size⌋`` after ``e`` epochs past the warm-up (torchvision's
  StepLR); per epoch. Defaults: gamma 0.1, step_size a third of the epochs after the warm-up.
- ``cosine``: from ``train.lr`` down to ``min_lr`` (default 0) along half a cosine, per batch
  (torch's CosineAnnealingLR stepped every batch).
- ``one_cycle``: Leslie Smith's 1cycle as torch's OneCycleLR (cosine annealing): from
  ``lr / div_factor`` up to ``train.lr`` over the first ``pct_start`` of the steps, then down to
  ``lr / div_factor / final_div_factor``; per batch. Defaults as fastai's ``fit_one_cycle``
  (pct_start 0.25, div_factor 25) and torch's final_div_factor 1e4. It warms up by itself.
- ``plateau``: Keras' ``ReduceLROnPlateau`` on ``train.monitor``: when the monitored validation
  metric has not improved by more than ``train.min_delta`` for ``plateau_patience`` epochs
  (default 10, Keras'), the lr is multiplied by ``gamma`` (default 0.1, Keras' factor), not
  below ``min_lr``; per epoch. Its state is checkpointed, so a resumed run continues it.

``train.warmup_epochs`` W (every schedule but one_cycle) ramps the lr linearly, per batch, over
the first W epochs: from ``lr / (W · steps_per_epoch)`` at the first step up to ``lr`` at the
last step of epoch W; then the schedule runs over the remaining epochs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from cnnlab.config import TrainConfig

DEFAULT_GAMMA = 0.1
DEFAULT_PLATEAU_PATIENCE = 10
DEFAULT_PCT_START = 0.25
DEFAULT_DIV_FACTOR = 25.0
DEFAULT_FINAL_DIV_FACTOR = 1e4


class Schedule:
    """The learning rate of one run at every optimizer step (see the module docstring)."""

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int) -> None:
        self.cfg = cfg
        self.base = float(cfg.lr)
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.total = self.steps_per_epoch * cfg.epochs
        warmup = cfg.warmup_epochs if cfg.schedule != "one_cycle" else 0
        self.warmup = self.steps_per_epoch * warmup
        self.after = max(1, self.total - self.warmup)  # steps the schedule proper spans
        self.name = cfg.schedule
        self.gamma = cfg.gamma if cfg.gamma is not None else DEFAULT_GAMMA
        self.min_lr = cfg.min_lr or 0.0
        epochs_after = cfg.epochs - warmup
        self.step_size = cfg.step_size or max(1, math.ceil(epochs_after / 3))
        self.plateau_patience = (cfg.plateau_patience if cfg.plateau_patience is not None
                                 else DEFAULT_PLATEAU_PATIENCE)
        # Plateau state: drops so far, best monitored value, epochs without improvement.
        self.drops = 0
        self.best: float | None = None
        self.wait = 0

    @property
    def constant(self) -> bool:
        """True when the lr never changes (the default): the loop need not touch the optimizer."""
        return self.name == "constant" and self.warmup == 0

    def lr(self, step: int) -> float:
        """The lr for optimizer step ``step`` (0-based, counted over the whole run)."""
        if step < self.warmup:
            return self.base * (step + 1) / self.warmup
        t = step - self.warmup
        if self.name == "step":
            return self.base * self.gamma ** ((t // self.steps_per_epoch) // self.step_size)
        if self.name == "cosine":
            progress = min(t / self.after, 1.0)
            return self.min_lr + (self.base - self.min_lr) * (1 + math.cos(math.pi * progress)) / 2
        if self.name == "one_cycle":
            return self._one_cycle(t)
        if self.name == "plateau":
            return max(self.base * self.gamma**self.drops, min(self.min_lr, self.base))
        return self.base

    def _one_cycle(self, t: int) -> float:
        cfg = self.cfg
        pct = cfg.pct_start if cfg.pct_start is not None else DEFAULT_PCT_START
        div = cfg.div_factor if cfg.div_factor is not None else DEFAULT_DIV_FACTOR
        final_div = cfg.final_div_factor if cfg.final_div_factor is not None else DEFAULT_FINAL_DIV_FACTOR
        start, peak = self.base / div, self.base
        end = start / final_div
        # torch's OneCycleLR phases: up until step pct·total − 1, down until step total − 1.
        up_end = float(pct * self.total) - 1
        if t <= up_end:
            return _cos_anneal(start, peak, t / up_end if up_end > 0 else 1.0)
        down = self.total - 1 - up_end
        return _cos_anneal(peak, end, min((t - up_end) / down, 1.0) if down > 0 else 1.0)

    def end_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Tell the schedule an epoch ended (plateau reads ``train.monitor`` from ``metrics``,
        as Keras' ReduceLROnPlateau does at the end of every epoch)."""
        if self.name != "plateau" or epoch * self.steps_per_epoch <= self.warmup:
            return
        value = metrics.get(self.cfg.monitor)
        if value is None or not math.isfinite(value):
            return
        sign = -1.0 if self.cfg.monitor == "val_loss" else 1.0
        if self.best is None or sign * (value - self.best) > self.cfg.min_delta:
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.plateau_patience and self.lr(epoch * self.steps_per_epoch) > self.min_lr:
            self.drops += 1
            self.wait = 0

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps (only plateau has state)."""
        return {"drops": self.drops, "best": self.best, "wait": self.wait}

    def load_state(self, state: Mapping[str, Any] | None) -> None:
        """Continue from a checkpoint's `state` (absent in checkpoints written before schedules)."""
        if state:
            self.drops, self.best, self.wait = int(state["drops"]), state["best"], int(state["wait"])


def _cos_anneal(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)


def set_lr(optimizer: Any, lr: float | Sequence[float]) -> None:
    """Set the lr of a `torch.optim` optimizer (every param group), or of a stacked optimizer
    (an object with a per-cell ``lr`` tensor) from one lr per cell."""
    if isinstance(optimizer, torch.optim.Optimizer):
        for group in optimizer.param_groups:
            group["lr"] = float(lr)  # type: ignore[arg-type]
        return
    current: torch.Tensor = optimizer.lr
    values = [float(lr)] * len(current) if isinstance(lr, int | float) else list(lr)
    optimizer.lr = torch.tensor(values, dtype=current.dtype, device=current.device)


def planned_lrs(cfg: TrainConfig, steps_per_epoch: int) -> list[float]:
    """The lr at the last step of every epoch, as a run would store it, for schedules that do
    not depend on the run's metrics (plateau: its lr before any drop)."""
    schedule = Schedule(cfg, steps_per_epoch)
    return [schedule.lr(epoch * schedule.steps_per_epoch - 1) for epoch in range(1, cfg.epochs + 1)]


def describe(cfg: TrainConfig) -> str:
    """A few words for the run's opening line: the schedule and its options, '' when constant."""
    if cfg.schedule == "constant" and not cfg.warmup_epochs:
        return ""
    options = [f"{key} {getattr(cfg, key):g}" for key in
               ("step_size", "gamma", "min_lr", "pct_start", "div_factor", "final_div_factor",
                "plateau_patience") if getattr(cfg, key) is not None]
    if cfg.warmup_epochs and cfg.schedule != "one_cycle":
        options.insert(0, f"warm-up {cfg.warmup_epochs} epoch{'s' * (cfg.warmup_epochs != 1)}")
    return f"{cfg.schedule} schedule" + (f" ({', '.join(options)})" if options else "")
