"""Written conclusions generated from the numbers: the best configuration, every other compared with
it (a difference and its interval, never a bare order), those at chance, the design's own sentences,
the budget caveat and the seed's claim."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from cnnlab.analyze.cells import format_value
from cnnlab.analyze.metrics import Metric
from cnnlab.analyze.ranking import BEST, TIED, WORSE, RankedCell, Ranking
from cnnlab.analyze.speed import FallSpeed
from cnnlab.analyze.stats import ALPHA, CONFIDENCE, Difference
from cnnlab.analyze.wording import (
    UNKNOWN_SPLIT,
    at_chance,
    chance_words,
    difference_text,
    direction,
    first_with_value,
    measured_difference,
    measured_verdict,
)

MAX_LISTED = 8  # comparisons name at most this many configurations
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
    """The sentences that close a report, each generated from the data (None when not applicable):
    ``learns_best`` compares every configuration with the best, ``at_chance`` names those that learned
    nothing, ``effects`` are the design's own sentences, ``budget`` the caveat of runs that had not
    finished learning, ``claim`` the seed's claim checked."""

    learns_best: str | None
    fastest_falling: str | None
    best_configuration: str | None
    effects: list[str]
    at_chance: str | None = None
    budget: str | None = None
    claim: str | None = None

    def sentences(self) -> list[str]:
        """All sentences in reading order."""
        first = [self.best_configuration, self.learns_best, self.at_chance]
        last = [self.budget, self.claim, self.fastest_falling]
        return [s for s in first if s] + self.effects + [s for s in last if s]


def compared_rows(ranking: Ranking) -> tuple[list[RankedCell], list[RankedCell]]:
    """The ranked configurations with a value, split into those above chance and those at chance."""
    rows = [row for row in ranking.rows if row.summary.n]
    chance = [row for row in rows if at_chance(ranking.metric, row.summary.mean, ranking.chance)]
    return [row for row in rows if row not in chance], chance


def learns_best(ranking: Ranking) -> str | None:
    """Each configuration above chance against the best: its difference with a confidence interval
    (the study's test; the interval unadjusted, the verdict from the Holm-corrected p) or, with one run
    per configuration, the interval of measuring two accuracies on the split's images; what that allows:
    lower (higher for a loss), not significant after the Holm correction, or cannot be told apart."""
    above, _ = compared_rows(ranking)
    if len(above) < 2:
        return None
    metric, best = ranking.metric, above[0]
    if ranking.one_seed:
        return _one_run_each(metric, above)
    parts = []
    for row in above[1:MAX_LISTED]:
        d = ranking.comparison.difference(row.values, best.values)
        said = _said(metric, row, d)
        p = f"Holm-corrected p = {row.p_vs_best:.2g}" if row.p_vs_best is not None else "untested"
        score = metric.format(row.summary.mean)
        parts.append(f"{row.cell.label} {score}, {difference_text(metric, d, p)}: {said}")
    more = f"; … {len(above) - MAX_LISTED} more" if len(above) > MAX_LISTED else ""
    seeds = sorted({row.summary.n for row in above})
    counted = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"
    return (
        f"Ranked by {metric.description} (mean over {counted} seeds), the best: {best.cell.label}, "
        f"{metric.format(best.summary.mean)}. Against it, by {ranking.comparison.short_name} "
        f"({ranking.comparison.reason}; intervals {CONFIDENCE:.0%} unadjusted, verdicts from p-values "
        f"Holm-corrected over the comparisons, α = {ALPHA}): " + "; ".join(parts) + more + "."
    )


def _said(metric: Metric, row: RankedCell, d: Difference) -> str:
    """The verdict of the Holm-corrected test, in words that do not contradict the unadjusted
    interval shown beside it."""
    if d.diff == 0:
        return "tied (the same mean)"
    if row.verdict == WORSE:
        return direction(metric, d.diff)
    if row.verdict == TIED and d.excludes_zero:
        return f"not significant after the Holm correction at {row.summary.n} seeds"
    if row.verdict == TIED:
        return f"cannot be told apart at {row.summary.n} seeds"
    return "untested: a test needs at least 2 seeds on both sides"


def _one_run_each(metric: Metric, rows: Sequence[RankedCell]) -> str:
    best = rows[0]
    best_run = first_with_value(metric, best.cell.runs)
    parts, size = [], None
    for row in rows[1:MAX_LISTED]:
        d, n = measured_difference(metric, first_with_value(metric, row.cell.runs), best_run)
        size = size or n
        said = measured_verdict(metric, d)
        shown = difference_text(metric, d, missing=UNKNOWN_SPLIT)
        parts.append(f"{row.cell.label} {metric.format(row.summary.mean)}, {shown}: {said}")
    more = f"; … {len(rows) - MAX_LISTED} more" if len(rows) > MAX_LISTED else ""
    images = f"{size:,} images" if size else "the split's images"
    return (
        f"Ranked by {metric.description} (one run per configuration), the best: {best.cell.label}, "
        f"{metric.format(best.summary.mean)}. Against it, each difference with the {CONFIDENCE:.0%} interval "
        f"of measuring two accuracies on {images} (how much a configuration varies from run to run is "
        "not measured, so no difference is a tested effect of its settings): " + "; ".join(parts) + more + "."
    )


def at_chance_sentence(ranking: Ranking) -> str | None:
    """The configurations whose accuracy sits at chance, said to be so and not ordered."""
    above, chance = compared_rows(ranking)
    level = ranking.chance
    if not chance or level is None:
        return None
    metric = ranking.metric
    named = ", ".join(f"{row.cell.label} ({metric.format(row.summary.mean)})" for row in chance[:MAX_LISTED])
    more = f" and {len(chance) - MAX_LISTED} more" if len(chance) > MAX_LISTED else ""
    if not above:
        return (
            f"Every configuration sits at {chance_words(level)}: {named}{more}. Their {metric.description} "
            "shows nothing learned, so the study cannot rank them; they are not ordered."
        )
    return (
        f"At {chance_words(level)}: {named}{more}; not ordered among themselves: their "
        f"{metric.description} shows nothing learned."
    )


def fastest_falling(speeds: Sequence[FallSpeed], ranking: Ranking, one_loss: bool) -> str | None:
    """How many epochs each configuration's mean training loss took to halve, listed (not ordered by
    ``>``); only for replicated studies with one loss function (a ratio does not make two loss
    functions comparable, and one run per configuration cannot tell fall speeds apart)."""
    if len(speeds) < 2 or ranking.one_seed or not one_loss:
        return None
    parts = []
    for speed in speeds[:MAX_LISTED]:
        if speed.epochs_to_fall is not None:
            parts.append(f"{speed.cell.label} {speed.epochs_to_fall:.1f}")
        else:
            parts.append(
                f"{speed.cell.label} not within {speed.last_epoch} "
                f"epoch{'s' if speed.last_epoch != 1 else ''} "
                f"(ended at {speed.end_ratio:.0%} of its epoch-1 value)"
            )
    more = f"; … {len(speeds) - MAX_LISTED} more" if len(speeds) > MAX_LISTED else ""
    return (
        "Epochs until the training loss (mean over seeds) halved, a description of the curves, not a "
        "tested difference: " + "; ".join(parts) + more + "."
    )


def best_configuration(ranking: Ranking) -> str | None:
    """The best configuration with its settings, its score over seeds and its best run."""
    best = ranking.best
    if best is None or best.verdict != BEST:
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
        score += " (one run)"
    if (level := ranking.chance) is not None and at_chance(metric, summary.mean, level):
        if len(ranking.rows) > 1:
            return None  # nothing to call best: the sentence on chance says so
        score += f", at {chance_words(level)}"
    what = (
        "Best configuration"
        if len(ranking.rows) > 1
        else f"The one configuration ({len(best.cell.runs)} run{'s' if len(best.cell.runs) > 1 else ''})"
    )
    if summary.n >= 2:
        return (f"{what}: {settings} — {score}; its best run is {run.label}, seed {run.record.seed}, at "
                f"{metric.format(metric.of(run))}.")
    return f"{what}: {settings} — {score}: run {run.id}."


def _ordered(metric: Metric, value: float) -> float:
    if math.isnan(value):
        return -math.inf
    return value if metric.higher_is_better else -value
