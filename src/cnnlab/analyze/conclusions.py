"""Written conclusions generated from the numbers: orderings, best configuration, each setting's effect."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

from cnnlab.analyze.cells import format_value
from cnnlab.analyze.effects import Effect, Level
from cnnlab.analyze.metrics import Metric
from cnnlab.analyze.ranking import TIED, Ranking
from cnnlab.analyze.speed import FallSpeed
from cnnlab.analyze.stats import ALPHA, CONFIDENCE, welch_p

MAX_LISTED = 8  # orderings name at most this many configurations
TREND_RHO = 0.8  # |Spearman ρ| of value against mean at or above this is a monotone trend
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


def conclude(ranking: Ranking, speeds: Sequence[FallSpeed], effects: Sequence[Effect]) -> Conclusions:
    """Conclusions for a ranking, its configurations' loss fall speeds and the effects of varying settings."""
    return Conclusions(
        learns_best=learns_best(ranking),
        fastest_falling=fastest_falling(speeds),
        best_configuration=best_configuration(ranking),
        effects=[s for effect in effects if (s := effect_sentence(effect))],
    )


def learns_best(ranking: Ranking) -> str | None:
    """``Learns best (...): A (98.3%) > B (97.9%) ≈ C (97.8%)``; ≈ joins neighbours that are not
    significantly apart."""
    rows = [row for row in ranking.rows if row.summary.n]
    if len(rows) < 2:
        return None
    metric = ranking.metric
    text = rows[0].cell.label + f" ({metric.format(rows[0].summary.mean)})"
    for previous, row in itertools.pairwise(rows[:MAX_LISTED]):
        p = welch_p(previous.values, row.values)
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
    elif any(welch_p(a.values, b.values) is not None for a, b in itertools.pairwise(rows)):
        sentence += f" (≈: not significantly different, Welch's t-test, α = {ALPHA}.)"
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
    return "Fastest-falling training loss: " + " > ".join(parts) + more + "."


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
            f"worse (Welch's t-test, α = {ALPHA}): "
            + ", ".join(row.cell.label for row in tied[:MAX_LISTED])
            + ("…" if len(tied) > MAX_LISTED else "")
            + "."
        )
    return sentence


def effect_sentence(effect: Effect) -> str | None:
    """One sentence on how the metric changes with ``effect.key``; None with fewer than 2 values."""
    levels = [level for level in effect.levels if level.summary.n]
    if len(levels) < 2:
        return None
    metric = effect.metric
    pooled = " (averaged over the other settings)" if effect.others else ""
    # Sorted, not max/min: with equal means, best and worst must still be two different values.
    ranked = sorted(levels, key=lambda lv: _ordered(metric, lv.summary.mean))
    worst, best = ranked[0], ranked[-1]
    head = f"{effect.key}{pooled}: {metric.description}"
    if best.summary.mean == worst.summary.mean:
        values = ", ".join(lv.label for lv in levels)
        return f"{head} is the same, {_score(metric, best)}, with every value ({values})."
    gap = (
        f"best and worst are {metric.format_diff(best.summary.mean - worst.summary.mean)} apart, "
        f"{_significance(best, worst)}"
    )
    if len(levels) == 2:
        return (
            f"{head} is better with {best.label} ({_score(metric, best)}) than with {worst.label} "
            f"({_score(metric, worst)}); {gap}."
        )
    if effect.numeric:
        means = [lv.summary.mean for lv in levels]
        rho = (
            stats.spearmanr([float(lv.value) for lv in levels], means).statistic
            if len(set(means)) > 1
            else 0.0
        )
        first, last = levels[0], levels[-1]
        name = effect.key.rsplit(".", 1)[-1]
        if abs(rho) >= TREND_RHO:
            direction = "rises" if rho > 0 else "falls"
            return (
                f"{head} {direction} as {name} rises, from {_score(metric, first)} at {first.label} to "
                f"{_score(metric, last)} at {last.label} over {len(levels)} values; {gap}."
            )
        if best is not first and best is not last:
            return (
                f"{head} is best at {best.label} ({_score(metric, best)}) of {len(levels)} values, against "
                f"{_score(metric, first)} at {first.label} and {_score(metric, last)} at {last.label}; {gap}."
            )
        return (
            f"{head} shows no consistent trend over {len(levels)} values: best at {best.label} "
            f"({_score(metric, best)}), worst at {worst.label} ({_score(metric, worst)}); {gap}."
        )
    return (
        f"{head} is best with {best.label} ({_score(metric, best)}) and worst with {worst.label} "
        f"({_score(metric, worst)}) of {len(levels)} values; {gap}."
    )


def _score(metric: Metric, level: Level) -> str:
    return metric.format(level.summary.mean)


def _significance(a: Level, b: Level) -> str:
    p = welch_p(a.values, b.values)
    if p is None:
        return "a difference a single run cannot separate from noise"
    verdict = "a significant difference" if p < ALPHA else "a difference within the noise"
    return f"{verdict} by Welch's t-test (p = {p:.2g}; {a.summary.n} and {b.summary.n} runs)"


def _ordered(metric: Metric, value: float) -> float:
    if math.isnan(value):
        return -math.inf
    return value if metric.higher_is_better else -value
