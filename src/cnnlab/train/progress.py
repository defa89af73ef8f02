"""Console output while training: a Rich progress bar per run and one line per epoch."""

from __future__ import annotations

import math

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "–"
    if not math.isfinite(value):
        return str(value)
    return f"{100 * value:.2f}%" if pct else f"{value:.4f}"


def epoch_line(epoch: int, epochs: int, metrics: dict[str, float]) -> str:
    """One readable line of an epoch's metrics."""
    parts = [f"epoch {epoch:>{len(str(epochs))}}/{epochs}"]
    for split in ("train", "val", "test"):
        if f"{split}_loss" in metrics:
            parts.append(f"{split} loss {_fmt(metrics[f'{split}_loss'])} "
                         f"acc {_fmt(metrics.get(f'{split}_acc'), pct=True)}")
    parts.append(f"{metrics['seconds']:.1f} s, {metrics['images_per_s']:,.0f} img/s")
    return " │ ".join(parts)


class TrainingProgress:
    """A progress bar over all batches of a run, with loss, accuracy, images/s and ETA."""

    def __init__(self, console: Console, total_images: int, enabled: bool = True):
        self.console = console
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("loss {task.fields[loss]} acc {task.fields[acc]}"),
            TextColumn("{task.fields[speed]} img/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not enabled,
        )
        self._task = self._progress.add_task("", total=total_images, loss="–", acc="–", speed="–")
        self._base = 0

    def __enter__(self) -> TrainingProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def start_epoch(self, epoch: int, epochs: int, images_done_before: int) -> None:
        self._base = images_done_before
        self._progress.update(self._task, description=f"epoch {epoch}/{epochs}",
                              completed=images_done_before)

    def batch(self, images_done: int, loss: float, acc: float, images_per_s: float) -> None:
        self._progress.update(self._task, completed=self._base + images_done, loss=_fmt(loss),
                              acc=_fmt(acc, pct=True), speed=f"{images_per_s:,.0f}")
