"""Sentences on a study's factors, written from its factorial analysis: the design, interactions with
their simple effects, main effects with F, p and effect size, and importances of non-grid studies."""

from __future__ import annotations

import math

from scipy import stats

from cnnlab.analyze.cells import is_number
from cnnlab.analyze.factorial import (
    GRID,
    IMPORTANCE_EVALUATOR,
    NOT_A_GRID,
    NOT_COMPARABLE,
    AnovaRow,
    FactorialAnalysis,
    LevelMean,
    SimpleEffect,
)
from cnnlab.analyze.factors import Factor
from cnnlab.analyze.metrics import Metric
from cnnlab.analyze.wording import difference_text

TREND_RHO = 0.8  # |Spearman ρ| of value against mean at or above this is a monotone trend


def factor_sentences(analysis: FactorialAnalysis) -> list[str]:
    """Every sentence the report writes about the factors, in reading order."""
    if analysis.design == NOT_COMPARABLE:
        return [_not_comparable(analysis)]
    sentences = [zipped_sentence(f) for f in analysis.factors if f.zipped]
    if analysis.design == NOT_A_GRID:
        return [*sentences, _importances(analysis)]
    if analysis.design != GRID:
        return sentences
    sentences += single_level_sentences(analysis)
    sentences.append(_design(analysis))
    if not analysis.table:
        return sentences + [_untestable(analysis, factor) for factor in analysis.factors]
    for row in analysis.table:
        if len(row.factors) > 1:
            sentences.append(_interaction(row))
    for factor in analysis.factors:
        rows = analysis.interacting(factor.name)
        if rows:
            other = next(name for name in rows[0].factors if name != factor.name)
            sentences.append(
                _simple(analysis.metric, factor.name, other, analysis.simple(factor.name, other),
                        analysis.robust, len(factor.levels) == 2)
            )
        else:
            sentences.append(_main(analysis, factor))
    return sentences


def single_level_sentences(analysis: FactorialAnalysis) -> list[str]:
    """Factors of which only one value has runs with a value."""
    return [
        f"{name}: only {levels[0].label} has runs with a value, so its effect cannot be estimated."
        for name, levels in analysis.marginal.items()
        if len(levels) < 2
    ]


def describe_p(p: float | None) -> str:
    """``p < 0.001`` or ``p = 0.031``."""
    if p is None or math.isnan(p):
        return "p not defined"
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def describe_f(f: float) -> str:
    """An F statistic: 3 significant digits, whole numbers from 1000 on, ``–`` when undefined."""
    if math.isnan(f):
        return "–"
    return f"{f:.3g}" if f < 1000 else f"{f:.0f}"


def zipped_sentence(factor: Factor) -> str:
    """Keys that always moved together, said to be one factor."""
    keys = ", ".join(factor.keys[:-1]) + f" and {factor.keys[-1]}"
    levels = " or ".join(factor.labels())
    return (
        f"{factor.name}, moved together: {keys} always changed together ({factor.name} = {levels}), so "
        "their effects cannot be told apart; they are one factor here."
    )


def _not_comparable(analysis: FactorialAnalysis) -> str:
    shown = "; ".join(f"{key} is {' vs '.join(values)}" for key, values in analysis.evaluation.items())
    return (
        f"These runs were evaluated on different data ({shown}): their {analysis.metric.description} "
        "values are not comparable, so no setting is said to make them better or worse."
    )


def _importances(analysis: FactorialAnalysis) -> str:
    head = (
        f"Not a grid ({analysis.observations} runs with sampled settings), so no ANOVA: parameter "
        f"importance for {analysis.metric.description} by {IMPORTANCE_EVALUATOR}"
    )
    if not analysis.importances:
        return head + " needs at least 2 finished runs."
    ranked = sorted(analysis.importances.items(), key=lambda item: -item[1])
    return head + ", shares summing to 1: " + ", ".join(f"{name} {value:.2f}" for name, value in ranked) + "."


def _design(analysis: FactorialAnalysis) -> str:
    factors = analysis.factors
    shape = (
        " × ".join(str(len(f.levels)) for f in factors) + " grid"
        if len(factors) > 1
        else f"{len(factors[0].levels)} values"
    )
    seeds = analysis.seeds_per_cell
    counted = f"{seeds[0]}" if analysis.balanced else f"{seeds[0]}–{seeds[-1]}"
    ways = {1: "One-way", 2: "Two-way", 3: "Three-way"}.get(len(factors), f"{len(factors)}-way")
    text = (
        f"{ways} ANOVA of {analysis.metric.description} on {' × '.join(f.name for f in factors)} "
        f"({shape}, {counted} seed{'s' if seeds[-1] > 1 else ''} per configuration"
    )
    if analysis.ss_type is not None:
        text += f", type {'II' if analysis.ss_type == 2 else 'III'} sums of squares"
        if analysis.robust:
            text += (
                " with HC3 heteroscedasticity-robust standard errors instead of the pooled residual "
                f"variance, {analysis.robust_reason}"
            )
        elif not analysis.balanced:
            text += " because the configurations have unequal numbers of seeds"
        elif analysis.ss_type == 3:
            text += " because the grid is incomplete"
        if not analysis.robust:
            text += "; tested against the seed-to-seed variance pooled over the configurations"
    text += ")."
    if analysis.numeric:
        text += " Entered as numbers, as asked (one straight-line term each, not one level per value): " + (
            ", ".join(analysis.numeric.values()) + "."
        )
    if analysis.missing_cells:
        count = len(analysis.missing_cells)
        text += (
            f" {count} configuration{'s have' if count > 1 else ' has'} no finished run with a value "
            f"({'; '.join(analysis.missing_cells)}): the grid is incomplete, "
            "so interactions cannot be estimated and only main effects are tested."
        )
    return text


def _untestable(analysis: FactorialAnalysis, factor: Factor) -> str:
    levels = analysis.marginal[factor.name]
    return (
        f"{factor.name}: {_range(analysis.metric, levels)}; with "
        f"{'one seed per configuration' if analysis.one_seed else 'this design'} no degrees of freedom "
        "are left to measure seed-to-seed noise, so this difference cannot be tested: run at least 2 seeds."
    )


def _interaction(row: AnovaRow) -> str:
    stats = _stats(row)
    if row.significant:
        return (
            f"{row.source} interact ({stats}): the effect of each depends on the other, so it is given "
            "per level of the other below, not averaged over it."
        )
    return (
        f"No significant {row.source} interaction ({stats}): the effects below are averaged over the others."
    )


def _simple(metric: Metric, factor: str, other: str, effects: list[SimpleEffect], robust: bool = False,
            two_levels: bool = False) -> str:
    test = (("Welch's t-test" if robust else "a t-test with the pooled residual variance")
            if two_levels else "one-way ANOVA")
    differs = [e for e in effects if e.significant]
    same = [e for e in effects if not e.significant]
    if len(differs) == len(effects):
        where = f"with every {other}"
    elif len(differs) == 1:
        where = f"only with {other}={differs[0].at_level}"
    elif differs:
        where = "only with " + " and ".join(f"{other}={e.at_level}" for e in differs)
    else:
        where = f"with no single {other} on its own"
    parts = [
        (f"with {other}={e.at_level}: " if len(differs) != 1 or e is not differs[0] else "")
        + f"{_versus(metric, e.levels)}"
        + (f", {e.difference[0]} against {e.difference[1]} {difference_text(metric, e.difference[2])}"
           if e.difference else "")
        + f" ({describe_p(e.p) if e.significant else _not_significant(e)})"
        for e in differs + same
    ]
    return (
        f"{factor} makes a difference {where}: " + "; ".join(parts) + f" ({test} within each {other}, "
        f"p Holm-corrected over its {len(effects)} levels)."
    )


def _not_significant(effect: SimpleEffect) -> str:
    if effect.p is None:
        return "untested: one seed per configuration"
    return f"not significant, {describe_p(effect.p)}"


def _main(analysis: FactorialAnalysis, factor: Factor) -> str:
    metric = analysis.metric
    levels = analysis.marginal[factor.name]
    row = analysis.row(factor.name)
    pooled = " (averaged over the other factors)" if len(analysis.factors) > 1 else ""
    head = f"{factor.name}{pooled}: {metric.description}"
    ranked = sorted(levels, key=lambda lv: _ordered(metric, lv.summary.mean))
    best, worst = ranked[-1], ranked[0]
    gap = metric.format_diff(best.summary.mean - worst.summary.mean)
    if best.summary.mean == worst.summary.mean:
        return f"{head} is the same, {_score(metric, best)}, with every value ({_range(metric, levels)})."
    trend = _trend(factor, levels)
    if trend:
        first, last = levels[0], levels[-1]
        text = (
            f"{head} {trend} as {factor.name} rises, from {_score(metric, first)} at {first.label} to "
            f"{_score(metric, last)} at {last.label} over {len(levels)} values, best and worst {gap} apart"
        )
    elif len(levels) == 2:
        text = (
            f"{head} is {_better(metric)} with {best.label} ({_score(metric, best)}) than with "
            f"{worst.label} ({_score(metric, worst)}), {gap} apart"
        )
    else:
        text = (
            f"{head} is best with {best.label} ({_score(metric, best)}) and worst with {worst.label} "
            f"({_score(metric, worst)}) of {len(levels)} values, {gap} apart"
        )
    found = analysis.differences.get(factor.name)
    if found is not None:
        errors = "HC3 errors" if analysis.robust else "pooled residual"
        text += f"; {found[0]} against {found[1]}: {difference_text(metric, found[2], errors)}"
    if row is None:
        return text + "; not tested."
    if row.significant:
        return f"{text}: significant ({_stats(row)})."
    seeds = analysis.seeds_per_cell
    counted = f"{seeds[0]}" if analysis.balanced else f"{seeds[0]}–{seeds[-1]}"
    which = "the two" if len(levels) == 2 else "the levels"
    return (
        f"{text}; not significant ({_stats(row)}): {which} cannot be told apart with {counted} "
        f"seed{'s' if seeds[-1] > 1 else ''} per configuration; more seeds would be needed to detect it "
        "if a gap this size is real."
    )


def _trend(factor: Factor, levels: list[LevelMean]) -> str | None:
    """``rises`` or ``falls`` for a numeric factor of 3 or more values whose means follow its values
    (|Spearman ρ| ≥ TREND_RHO), else None."""
    values = [level[0] for level in factor.levels if factor.label(level) in {lv.label for lv in levels}]
    if factor.zipped or len(levels) < 3 or not all(is_number(v) for v in values):
        return None
    rho = stats.spearmanr(values, [lv.summary.mean for lv in levels]).statistic
    if not math.isfinite(rho) or abs(rho) < TREND_RHO:
        return None
    return "rises" if rho > 0 else "falls"


def _stats(row: AnovaRow) -> str:
    if math.isnan(row.f):
        return f"F not defined, partial η² = {row.partial_eta_sq:.2f}"
    return (
        f"F({row.df:g}, {row.residual_df:g}) = {describe_f(row.f)}, "
        f"{describe_p(row.p)}, partial η² = {row.partial_eta_sq:.2f}"
    )


def _versus(metric: Metric, levels: list[LevelMean]) -> str:
    return " vs ".join(f"{lv.label} {_score(metric, lv)}" for lv in levels)


def _range(metric: Metric, levels: list[LevelMean]) -> str:
    return ", ".join(f"{lv.label} {_score(metric, lv)}" for lv in levels)


def _score(metric: Metric, level: LevelMean) -> str:
    return metric.format(level.summary.mean)


def _better(metric: Metric) -> str:
    return "higher" if metric.higher_is_better else "lower"


def _ordered(metric: Metric, value: float) -> float:
    if math.isnan(value):
        return -math.inf
    return value if metric.higher_is_better else -value
