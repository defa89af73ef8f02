"""Written conclusions generated from the numbers: orderings, best configuration, loss fall, factors."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from cnnlab.analyze.cells import format_value
from cnnlab.analyze.factor_text import factor_sentences
from cnnlab.analyze.factorial import NOT_COMPARABLE, FactorialAnalysis
from cnnlab.analyze.metrics import Metric
from cnnlab.analyze.ranking import TIED, Ranking
from cnnlab.analyze.speed import FallSpeed
from cnnlab.analyze.stats import ALPHA, CONFIDENCE, TEST_NAME, holm

MAX_LISTED = 8  # orderings name at most this many configurations
# Settings named in the best configuration's sentence besides those that vary.
KEY_SETTINGS = {
    "model.name": "model",
    "data.dataset": "dataset",
    "train.loss": "loss",
    "train.optimizer": "optimizer",
    "train.lr": "lr",
    "train.batch_size": "batch_size",
    "train.epochs": "epochs",
}


@dataclass(frozen=True)
class Conclusions:
    """The sentences that close a report, each generated from the data (None when not applicable)."""

    learns_best: str | None
    fastest_falling: str | None
    best_configuration: str | None
    effects: list[str]

    def sentences(self) -> list[str]:
        """All sentences in reading order."""
        first = [self.best_configuration, self.learns_best, self.fastest_falling]
        return [s for s in first if s] + self.effects


def conclude(ranking: Ranking, speeds: Sequence[FallSpeed], factorial: FactorialAnalysis) -> Conclusions:
    """Conclusions for a ranking, its configurations' loss fall speeds and the factorial analysis."""
    comparable = factorial.design != NOT_COMPARABLE
    return Conclusions(
        learns_best=learns_best(ranking) if comparable else None,
        fastest_falling=fastest_falling(speeds),
        best_configuration=best_configuration(ranking) if comparable else None,
        effects=factor_sentences(factorial),
    )


def learns_best(ranking: Ranking) -> str | None:
    """``Learns best (...): A (98.3%) > B (97.9%) ≈ C (97.8%)``; ≈ joins neighbours that are not
    significantly apart."""
    rows = [row for row in ranking.rows if row.summary.n]
    if len(rows) < 2:
        return None
    metric = ranking.metric
    text = rows[0].cell.label + f" ({metric.format(rows[0].summary.mean)})"
    neighbours = list(itertools.pairwise(rows[:MAX_LISTED]))
    tests = holm([ranking.comparison.p(previous.values, row.values) for previous, row in neighbours])
    for (_, row), p in zip(neighbours, tests, strict=True):
        text += (
            " ≈ " if p is not None and p >= ALPHA else " > "
        ) + f"{row.cell.label} ({metric.format(row.summary.mean)})"
    if len(rows) > MAX_LISTED:
        worst = rows[-1]
        worst_score = metric.format(worst.summary.mean)
        text += f" > … {len(rows) - MAX_LISTED} more, down to {worst.cell.label} ({worst_score})"
    seeds = sorted({row.summary.n for row in rows})
    counted = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"
    sentence = (
        f"Learns best ({metric.description}, mean over {counted} seed{'s' if seeds[-1] > 1 else ''}): {text}."
    )
    if ranking.one_seed:
        sentence += " With one seed per configuration this order may be noise."
    elif any(p is not None for p in tests):
        sentence += (
            f" (≈: not significantly different by {_short(ranking)} between neighbours, Holm-corrected, "
            f"α = {ALPHA}.)"
        )
    return sentence


def fastest_falling(speeds: Sequence[FallSpeed]) -> str | None:
    """The configurations ordered by loss fall speed (see ``speed.DEFINITION``)."""
    if len(speeds) < 2:
        return None
    parts = []
    for speed in speeds[:MAX_LISTED]:
        if speed.epochs_to_fall is not None:
            parts.append(f"{speed.cell.label} (halved by epoch {speed.epochs_to_fall:.1f})")
        else:
            parts.append(
                f"{speed.cell.label} (never halved in {speed.last_epoch} epochs; "
                f"ended at {speed.end_ratio:.0%} of its epoch-1 loss)"
            )
    more = f" > … {len(speeds) - MAX_LISTED} more" if len(speeds) > MAX_LISTED else ""
    return (
        "Most dramatic curve (fastest-falling training loss, each configuration's mean over seeds relative "
        "to its epoch-1 value, so loss functions compare): " + " > ".join(parts) + more + "."
    )


def best_configuration(ranking: Ranking) -> str | None:
    """The best configuration with its settings, its score over seeds and its best run."""
    best = ranking.best
    if best is None:
        return None
    metric, summary = ranking.metric, best.summary
    run = max(best.cell.runs, key=lambda r: _ordered(metric, metric.of(r)))
    varied = best.cell.label if best.cell.settings else ""
    fixed = [
        f"{KEY_SETTINGS[key]}={format_value(run.settings[key])}"
        for key in KEY_SETTINGS
        if key in run.settings and key not in best.cell.settings
    ]
    settings = ", ".join(filter(None, [varied, *fixed]))
    score = f"{metric.description} {metric.format(summary.mean)}"
    if summary.n >= 2:
        low, high = metric.interval(summary)
        score += (
            f" ± {metric.format(summary.std, unit=False)} (sd; {CONFIDENCE:.0%} CI "
            f"{metric.format(low, unit=False)}–{metric.format(high)}, "
            f"{summary.n} seeds)"
        )
    else:
        score += " (one seed)"
    what = (
        "Best configuration"
        if len(ranking.rows) > 1
        else f"The one configuration ({len(best.cell.runs)} run{'s' if len(best.cell.runs) > 1 else ''})"
    )
    sentence = (
        f"{what}: {settings} — {score}; its best run is {run.label}, seed {run.record.seed}, "
        f"at {metric.format(metric.of(run))}."
    )
    tied = [row for row in ranking.rows if row.verdict == TIED]
    if tied:
        sentence += (
            f" {len(tied)} other configuration{'s are' if len(tied) > 1 else ' is'} not significantly "
            f"worse ({_short(ranking)}, Holm-corrected, α = {ALPHA}): "
            + ", ".join(row.cell.label for row in tied[:MAX_LISTED])
            + ("…" if len(tied) > MAX_LISTED else "")
            + "."
        )
    return sentence


def _short(ranking: Ranking) -> str:
    return "Welch's t-test" if ranking.comparison.name == TEST_NAME else "a pooled-variance t-test"


def _ordered(metric: Metric, value: float) -> float:
    if math.isnan(value):
        return -math.inf
    return value if metric.higher_is_better else -value
