"""Where a classifier fails: confusion matrix, per-class precision and recall, most confident mistakes."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from rich.table import Table
from rich.text import Text
from torch import Tensor


def confusion_matrix(labels: Tensor, predictions: Tensor, num_classes: int) -> Tensor:
    """K×K int64 counts: row = true class, column = predicted class."""
    index = labels.long() * num_classes + predictions.long()
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


@dataclass
class ClassScores:
    """Per-class precision and recall (NaN where a ratio is 0/0), true and predicted counts, and
    the number of images classified correctly."""

    precision: list[float]
    recall: list[float]
    support: list[int]
    predicted: list[int]
    correct: int

    @property
    def accuracy(self) -> float:
        """Fraction of all images classified correctly."""
        total = sum(self.support)
        return self.correct / total if total else math.nan


def class_scores(matrix: Tensor) -> ClassScores:
    """Precision (correct / predicted as the class) and recall (correct / truly the class)."""
    counts = matrix.long()
    correct = counts.diagonal()
    support = counts.sum(dim=1)
    predicted = counts.sum(dim=0)

    def ratio(num: Tensor, den: Tensor) -> list[float]:
        return [float(n) / float(d) if d else math.nan for n, d in zip(num, den, strict=True)]

    return ClassScores(ratio(correct, predicted), ratio(correct, support), support.tolist(),
                       predicted.tolist(), int(correct.sum()))


def scores_table(classes: list[str], scores: ClassScores, title: str = "") -> Table:
    """A Rich table: one row per class with precision, recall, support; accuracy in the caption."""
    table = Table(title=title or None, caption=f"accuracy {_percent(scores.accuracy)} "
                  f"on {sum(scores.support):,} images", caption_justify="left")
    for header in ("class", "precision", "recall", "support", "predicted"):
        table.add_column(header, justify="left" if header == "class" else "right")
    for i, name in enumerate(classes):
        low = min((v for v in (scores.precision[i], scores.recall[i]) if not math.isnan(v)),
                  default=math.nan)
        style = "red" if not math.isnan(low) and low < scores.accuracy - 0.05 else None
        table.add_row(Text(name), _percent(scores.precision[i]), _percent(scores.recall[i]),
                      f"{scores.support[i]:,}", f"{scores.predicted[i]:,}", style=style)
    return table


def _percent(value: float) -> str:
    return "—" if math.isnan(value) else f"{100 * value:.2f}%"


def confident_mistakes(probabilities: Tensor, labels: Tensor, count: int) -> Tensor:
    """Indices of up to ``count`` misclassified images, the most confident wrong prediction first."""
    confidence, predictions = probabilities.max(dim=1)
    wrong = (predictions != labels).nonzero().flatten()
    order = confidence[wrong].argsort(descending=True, stable=True)
    return wrong[order[:count]]
