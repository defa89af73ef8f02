"""Training curves: one run's accuracy and loss, and overlays of run groups as mean ± band over seeds."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from cnnlab.analyze.rundata import RunData, aligned
from cnnlab.analyze.wording import chance_level
from cnnlab.data.labels import run_dataset
from cnnlab.viz.style import (
    LINESTYLES,
    SPLIT_NAMES,
    chance_line,
    color,
    house_style,
    new_figure,
    plain_log_labels,
    shorten,
    wrap_label,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

LOG_LOSS_SPAN = 30.0  # a loss axis whose finite values span more than this factor is drawn log-scaled
MIN_ACC_SPAN = 10.0  # an accuracy axis spans at least this many points, so noise does not look like a trend
RELATIVE_LOSS = "each curve's loss ÷ its own epoch-1 value"
_SPLIT_COLORS = {"train": color(0), "val": color(1), "test": color(2)}


def run_figure(run: RunData) -> Figure:
    """Accuracy and loss per epoch of one run, training and validation (and test) together."""
    scheduled = _lr_varies(run)
    with house_style():
        fig = new_figure(13.0 if scheduled else 9.5, 3.8)
        axes = fig.subplots(1, 3 if scheduled else 2)
        acc_ax, loss_ax = axes[0], axes[1]
        epochs = run.epoch_numbers()
        if scheduled:
            _lr_panel(axes[2], run)
        for split in ("train", "val", "test"):
            style = {
                "color": _SPLIT_COLORS[split],
                "linestyle": LINESTYLES[split],
                "marker": "o",
                "markersize": 2.5,
                "label": SPLIT_NAMES[split],
            }
            if run.has(f"{split}_acc"):
                acc_ax.plot(epochs, 100 * _finite(run.series(f"{split}_acc")), **style)
            if run.has(f"{split}_loss"):
                loss_ax.plot(epochs, _finite(run.series(f"{split}_loss")), **style)
        val = run.series("val_acc")
        if np.isfinite(val).any():
            i = int(np.nanargmax(val))
            acc_ax.plot(
                [epochs[i]],
                [100 * val[i]],
                marker="*",
                markersize=11,
                color="black",
                linestyle="none",
                label=f"best validation: {100 * val[i]:.2f}% (epoch {epochs[i]})",
            )
        bad = _first_nonfinite(run)
        if bad is not None:
            for ax in (acc_ax, loss_ax):
                ax.axvline(bad, color="red", linewidth=1, label=f"loss not finite from epoch {bad}")
        _axes(acc_ax, "accuracy", "accuracy (%)")
        _axes(loss_ax, "loss", f"loss ({run.settings.get('train.loss', 'per epoch')})")
        _honest(acc_ax, loss_ax)
        if acc_ax.lines:
            chance_line(acc_ax, run.facts.chance)
        dataset = run_dataset(run.record.config)
        fig.suptitle(shorten(f"{run.label}: {run.status}, {run.record.model} on {dataset}", 90))
        handles, labels = _unique(acc_ax, loss_ax)
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4))
    return fig


def _lr_varies(run: RunData) -> bool:
    """Whether the run's stored lr changed over its epochs (a schedule), so it is worth a panel."""
    if not run.has("lr"):
        return False
    lr = _finite(run.series("lr"))
    lr = lr[np.isfinite(lr)]
    return len(lr) > 1 and float(lr.max() - lr.min()) > 1e-12 * float(lr.max())


def _lr_panel(ax: Axes, run: RunData) -> None:
    """The learning rate of each epoch (its last step's), log-scaled when it spans over 10×."""
    lr = _finite(run.series("lr"))
    ax.plot(run.epoch_numbers(), lr, color=color(4), marker="o", markersize=2.5, label="learning rate")
    finite = lr[np.isfinite(lr) & (lr > 0)]
    if len(finite) and finite.max() / finite.min() > 10:
        ax.set_yscale("log")
        plain_log_labels(ax.yaxis)
    schedule = run.settings.get("train.schedule") or "constant"
    warmup = run.settings.get("train.warmup_epochs") or 0
    _axes(ax, f"learning rate: {schedule}" + (f", {warmup} warm-up epochs" if warmup else ""),
          "lr at the epoch's last step")


def overlay_figure(
    groups: Sequence[tuple[str, Sequence[RunData]]],
    title: str,
    legend_title: str = "",
    relative_loss: bool | None = None,
) -> Figure:
    """Validation (solid) and training (dashed) accuracy and loss of each group: the mean over its runs,
    with a band from its lowest to its highest run. ``relative_loss`` divides each curve (a run's
    training or validation loss) by its own epoch-1 value, so every curve starts at 1 (the default
    when the runs use different loss functions, whose values do not share a scale)."""
    if relative_loss is None:
        relative_loss = len({str(run.settings.get("train.loss")) for _, runs in groups for run in runs}) > 1
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    with house_style():
        fig = new_figure(10.5, 4.0)
        acc_ax, loss_ax = fig.subplots(1, 2)
        handles: list = []
        banded = False
        for i, (label, runs) in enumerate(groups):
            for ax, metric, scale in ((acc_ax, "acc", 100.0), (loss_ax, "loss", 1.0)):
                for split in ("val", "train"):
                    epochs, matrix = aligned(runs, f"{split}_{metric}")
                    if metric == "loss" and relative_loss:
                        matrix = matrix / matrix[:, :1]  # each curve by its own first value
                    if not np.isfinite(matrix).any():
                        continue
                    mean, low, high = _band(matrix)
                    ax.plot(epochs, scale * mean, color=color(i), linestyle=LINESTYLES[split], linewidth=1.4)
                    if len(runs) > 1 and split == "val":
                        ax.fill_between(
                            epochs, scale * low, scale * high, color=color(i), alpha=0.15, linewidth=0
                        )
                        banded = True
            handles.append(Line2D([], [], color=color(i), label=wrap_label(f"{label} (n={len(runs)})")))
        mean = "" if all(len(runs) <= 1 for _, runs in groups) else " (mean)"
        handles += [
            Line2D([], [], color="black", linestyle=LINESTYLES["val"], label=f"validation{mean}"),
            Line2D([], [], color="black", linestyle=LINESTYLES["train"], label=f"training{mean}"),
        ]
        if banded:
            handles.append(Patch(color="grey", alpha=0.3, label="validation: lowest to highest run"))
        _axes(acc_ax, "accuracy", "accuracy (%)")
        if relative_loss:
            _axes(loss_ax, "loss, relative to epoch 1", RELATIVE_LOSS)
        else:
            _axes(loss_ax, "loss", "loss")
        _honest(acc_ax, loss_ax)
        if acc_ax.lines and chance_line(acc_ax, chance_level(run for _, runs in groups for run in runs)):
            handles.append(Line2D([], [], color="grey", linestyle=":", label="chance"))
        fig.suptitle(shorten(title, 110))
        fig.legend(handles=handles, loc="outside right upper", title=wrap_label(legend_title) or None)
    return fig


def _axes(ax: Axes, title: str, ylabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if not ax.lines:
        ax.text(
            0.5, 0.5, f"no {title} stored", ha="center", va="center", transform=ax.transAxes, color="grey"
        )
    else:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _honest(acc_ax: Axes, loss_ax: Axes) -> None:
    """Axes that show change at its true size: an accuracy axis spans at least MIN_ACC_SPAN points,
    a linear loss axis starts at 0 (a wide one is drawn log-scaled instead)."""
    low, high = acc_ax.get_ylim()
    if acc_ax.lines and high - low < MIN_ACC_SPAN:
        middle = min(max((high + low) / 2, MIN_ACC_SPAN / 2), 100 - MIN_ACC_SPAN / 2 + 1)
        acc_ax.set_ylim(middle - MIN_ACC_SPAN / 2, middle + MIN_ACC_SPAN / 2)
    _log_if_wide(loss_ax)
    if loss_ax.get_yscale() == "linear" and loss_ax.lines:
        loss_ax.set_ylim(0, loss_ax.get_ylim()[1] * 1.05)


def _log_if_wide(ax: Axes) -> None:
    values = np.concatenate(
        [np.asarray(line.get_ydata(), dtype=float) for line in ax.lines if line.get_linestyle() != "None"]
        or [np.array([])]
    )
    values = values[np.isfinite(values) & (values > 0)]
    if len(values) and values.max() / values.min() > LOG_LOSS_SPAN:
        ax.set_yscale("log")
        plain_log_labels(ax.yaxis)
        ax.set_ylabel(ax.get_ylabel() + ", log scale")


def _band(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # epochs no run reached
        return np.nanmean(matrix, axis=0), np.nanmin(matrix, axis=0), np.nanmax(matrix, axis=0)


def _finite(values: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(values), values, np.nan)


def _first_nonfinite(run: RunData) -> int | None:
    for row in run.epochs:
        for key in ("train_loss", "val_loss"):
            value = row.get(key)
            if value is not None and not math.isfinite(value):
                return int(row["epoch"])
    return None


def _unique(*axes: Axes) -> tuple[list, list[str]]:
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    return list(seen.values()), list(seen)
