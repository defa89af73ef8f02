"""The learning-rate range test (Leslie Smith, 2015; fastai's ``lr_find``): which lr to train with.

A copy of the experiment's model is trained for ``steps`` batches (by default 100 as fastai, but
never more than one epoch: a tenth of an MNIST epoch at batch 64, two thirds of a CIFAR-10 epoch
at batch 256) while the lr grows exponentially from ``start_lr`` to ``end_lr``, one step per
batch; the loss is smoothed (an exponential moving average with bias correction, β = 0.98 for
100 steps as fastai, 1 − 2/steps for fewer) and the test stops when the smoothed loss passes
``STOP_FACTOR`` × its minimum (divergence) or turns non-finite.
Nothing is stored and no weights of the caller's model change: the model is a copy. torch's CPU
random state is put back afterwards; a CUDA GPU's random state (seeded from the experiment's seed
when the model is built here) and its TF32 settings for the experiment's precision
(`cnnlab.train.hardware.use_precision`) stay as the test left them.

The suggestion follows fastai's default rule, the **valley**: the longest stretch over which
the smoothed loss keeps falling (longest decreasing subsequence), and a point two thirds of the
way down it (the first tenth and last five steps of the curve are left out, as fastai does).
Two other common rules are reported beside it: **steepest descent** (where the smoothed loss
falls fastest per decade of lr) and **minimum ÷ 10** (a tenth of the lr at the lowest loss).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from cnnlab.config import Experiment
from cnnlab.data import DataBundle
from cnnlab.data.augment import make_augment
from cnnlab.data.transforms import Normalizer
from cnnlab.errors import ConfigError, Problem
from cnnlab.train.loop import autocast_context, on_device
from cnnlab.train.losses import make_loss
from cnnlab.train.optimizers import make_optimizer
from cnnlab.train.run import prepare
from cnnlab.train.schedules import set_lr

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SMOOTHING_BETA = 0.98
STOP_FACTOR = 4.0
MAX_STEPS = 100
AT_ONCE = 0.1  # a stop within this fraction of the planned steps: diverged at once
RULE = "valley"
RULE_TEXT = ("the valley rule (fastai's default): two thirds of the way down the longest stretch "
             "where the smoothed loss keeps falling")


@dataclass
class LrFinding:
    """A range test's curve and its suggestion (None when the loss diverged at once)."""

    lrs: list[float]
    losses: list[float]  # the loss of each step's batch
    smoothed: list[float]  # its bias-corrected moving average
    start_lr: float
    end_lr: float
    planned_steps: int
    steps_per_epoch: int
    batch_size: int
    seconds: float
    suggestion: float | None = None
    rule: str = RULE
    others: dict[str, float] = field(default_factory=dict)  # other rules' lrs, by name
    stop_reason: str = ""  # why the test stopped before its last step ('' when it did not)
    diverged_at_once: bool = False
    label: str = ""

    @property
    def steps(self) -> int:
        """Steps taken."""
        return len(self.lrs)

    def line(self) -> str:
        """The suggestion as an override, ``-s train.lr=0.0012``; '' without a suggestion."""
        return f"-s train.lr={_round(self.suggestion)}" if self.suggestion is not None else ""

    def lower_start(self) -> float:
        """A start 100× lower, for a model that diverged at once."""
        return self.start_lr / 100

    def text(self) -> str:
        """What the test did and found, a few lines (the last one the `-s` override)."""
        share = self.steps / self.steps_per_epoch
        lines = [f"lr-find: {self.label}{', ' if self.label else ''}{self.steps} steps of batch "
                 f"{self.batch_size} from lr {self.start_lr:g} to {self.lrs[-1]:.3g} "
                 f"({share:.2f} of an epoch), {self.seconds:.1f} s"]
        if self.stop_reason:
            lines.append(f"stopped at lr {self.lrs[-1]:.3g} (step {self.steps}): {self.stop_reason}")
        if self.diverged_at_once:
            lines.append(f"the loss diverged at once, within {self.steps} steps of lr "
                         f"{self.start_lr:g}: even the start of the ramp is too large for this model; "
                         f"try a lower start, e.g. --start {self.lower_start():g}")
            return "\n".join(lines)
        if self.suggestion is None:
            lines.append("no suggestion: the smoothed loss never fell; widen the range (--start, --end)")
            return "\n".join(lines)
        others = ", ".join(f"{name} {_round(lr)}" for name, lr in self.others.items())
        lines.append(f"suggested lr {_round(self.suggestion)} by {RULE_TEXT}"
                     + (f" (other rules: {others})" if others else ""))
        lines.append(self.line())
        return "\n".join(lines)

    def figure(self) -> Figure:
        """Loss against lr (log scale), the smoothed curve and the suggestion marked."""
        from cnnlab.viz.lr_finder import lr_find_figure

        return lr_find_figure(self)

    def save(self, path: str | Path) -> Path:
        """Write the figure (the format follows the suffix)."""
        from cnnlab.viz.style import save_figure

        return save_figure(self.figure(), path)


def lr_find(
    exp: Experiment,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int | None = None,
    model: nn.Module | None = None,
    data: DataBundle | None = None,
) -> LrFinding:
    """Run the range test for ``exp`` (its model, data, optimizer, loss, batch size, precision and
    augmentation) on a copy of ``model`` (default: the experiment's model built from its seed),
    for ``steps`` batches (None: 100, at most one epoch; more than an epoch only when asked for),
    drawn as a run draws them. Given both ``model`` and ``data``, the test runs on the model's
    device in fp32, whatever the experiment's precision. Nothing is stored."""
    problems = []
    # Named as Python and the command line (`cnnlab lr-find`) both call them.
    if not (math.isfinite(start_lr) and start_lr > 0):
        problems.append(Problem("start_lr (--start)", start_lr, "must be a positive number"))
    if not (math.isfinite(end_lr) and end_lr > start_lr):
        problems.append(Problem("end_lr (--end)", end_lr, f"must be a number above start_lr ({start_lr:g})"))
    if steps is not None and steps < 5:
        problems.append(Problem("steps (--steps)", steps, "must be at least 5"))
    if problems:
        raise ConfigError(problems)
    rng_state = torch.get_rng_state()
    try:
        if data is None or model is None:
            prepared = prepare(exp)
            data = data or prepared.data
            net = copy.deepcopy(model) if model is not None else prepared.model
            device, precision, channels_last = prepared.device, prepared.precision, prepared.channels_last
        else:
            net = copy.deepcopy(model)
            device = next(net.parameters()).device
            precision, channels_last = "fp32", False
        return _range_test(exp, net, data, device, precision, channels_last, start_lr, end_lr, steps)
    finally:
        torch.set_rng_state(rng_state)


def _range_test(exp: Experiment, model: nn.Module, data: DataBundle, device: torch.device,
                precision: str, channels_last: bool, start_lr: float, end_lr: float,
                steps: int | None) -> LrFinding:
    cfg = exp.train
    train = on_device(data.train, device, channels_last)
    assert train is not None
    n = len(train)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    planned = steps if steps is not None else max(5, min(MAX_STEPS, steps_per_epoch))
    beta = min(SMOOTHING_BETA, 1 - 2 / planned)
    optimizer = make_optimizer(cfg, model.parameters())
    loss_fn = make_loss(cfg.loss, cfg.label_smoothing)
    normalize = Normalizer(data.mean, data.std, channels_last, device)
    augment = make_augment(exp.data, data.input_shape[-1])
    generator = torch.Generator().manual_seed(exp.seed)
    # Batches in the order a run would draw them; a small dataset is gone through again.
    order = torch.cat([torch.randperm(n, generator=generator)
                       for _ in range(math.ceil(planned * cfg.batch_size / n))]).to(device)
    ratio = end_lr / start_lr
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    average, best = 0.0, math.inf
    stop_reason = ""
    model.train()
    start = time.perf_counter()
    for step in range(planned):
        lr = start_lr * ratio ** (step / max(planned - 1, 1))
        set_lr(optimizer, lr)
        idx = order[step * cfg.batch_size: (step + 1) * cfg.batch_size]
        images = train.images[idx]
        if augment is not None:
            images = augment(images, generator)
        with autocast_context(precision, device.type):
            loss = loss_fn(model(normalize(images)), train.labels[idx])
        value = float(loss.item())
        lrs.append(lr)
        losses.append(value)
        if not math.isfinite(value):
            smoothed.append(math.inf)
            stop_reason = f"the loss became {value}"
            break
        average = beta * average + (1 - beta) * value
        smooth = average / (1 - beta ** (step + 1))
        smoothed.append(smooth)
        best = min(best, smooth)
        if step > 0 and smooth > STOP_FACTOR * best:
            stop_reason = f"the smoothed loss passed {STOP_FACTOR:g}× its minimum {best:.4g}"
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    finding = LrFinding(lrs, losses, smoothed, start_lr, end_lr, planned, steps_per_epoch,
                        cfg.batch_size, seconds, stop_reason=stop_reason,
                        label=f"{exp.model.name}, {cfg.optimizer}, {cfg.loss}")
    at_once = max(3, math.ceil(AT_ONCE * planned))
    finite = [s for s in smoothed if math.isfinite(s)]
    if stop_reason and (len(lrs) <= at_once or not finite or min(finite) >= finite[0]):
        finding.diverged_at_once = True
        return finding
    suggest(finding)
    return finding


def suggest(finding: LrFinding) -> None:
    """Fill in the valley suggestion and the other rules' values from the smoothed curve."""
    lrs, losses = finding.lrs, finding.smoothed
    if finding.stop_reason:  # the last point is the divergence itself
        lrs, losses = lrs[:-1], losses[:-1]
    skip_start = len(finding.lrs) // 10 if len(lrs) > 20 else 0
    skip_end = 5 if len(lrs) - skip_start > 15 else 0
    lrs, losses = lrs[skip_start: len(lrs) - skip_end], losses[skip_start: len(losses) - skip_end]
    if len(lrs) < 3 or min(losses) >= losses[0]:
        return
    finding.suggestion = valley(lrs, losses)
    logs = [math.log10(lr) for lr in lrs]
    slopes = [(losses[i + 1] - losses[i]) / (logs[i + 1] - logs[i]) for i in range(len(lrs) - 1)]
    steepest = min(range(len(slopes)), key=slopes.__getitem__)
    finding.others = {"steepest descent": lrs[steepest],
                      "minimum ÷ 10": lrs[min(range(len(losses)), key=losses.__getitem__)] / 10}


def valley(lrs: list[float], losses: list[float]) -> float:
    """fastai's valley: the longest decreasing run of losses (as a subsequence), and the lr two
    thirds of the way down it (``start + ⌊len/3⌋ + ⌊len/6⌋``, fastai's arithmetic)."""
    n = len(losses)
    longest = [1] * n
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
            if longest[max_end] < longest[i]:
                max_end = i
                max_start = max_end - longest[max_end]
    sections = (max_end - max_start) / 3
    return lrs[max_start + int(sections) + int(sections / 2)]


def _round(lr: float | None) -> str:
    """An lr with two significant digits, as TOML reads it (``0.0012``, ``3e-05``)."""
    return f"{float(f'{lr:.2g}'):g}" if lr is not None else ""
