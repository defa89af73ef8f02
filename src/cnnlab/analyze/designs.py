"""One analysis per design (see `cnnlab.analyze.design`): each writes its own sentences and chooses
its own figures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cnnlab.analyze.cells import Cell
from cnnlab.analyze.contrasts import EffectEstimate, effect_estimates
from cnnlab.analyze.design import (
    NO_VALUES,
    NOT_COMPARABLE,
    ONE_FACTOR,
    REPLICATED_GRID,
    SAMPLED,
    SINGLE,
    UNREPLICATED_GRID,
    Design,
)
from cnnlab.analyze.effects import Effect, effect_of
from cnnlab.analyze.factor_text import factor_sentences, single_level_sentences, zipped_sentence
from cnnlab.analyze.factorial import NO_VALUES as F_NO_VALUES
from cnnlab.analyze.factorial import NOT_COMPARABLE as F_NOT_COMPARABLE
from cnnlab.analyze.factorial import ONE_FACTOR as F_ONE_FACTOR
from cnnlab.analyze.factorial import SINGLE as F_SINGLE
from cnnlab.analyze.factorial import FactorialAnalysis, analyze_factors
from cnnlab.analyze.factors import Factor
from cnnlab.analyze.metrics import Metric
from cnnlab.analyze.ranking import Ranking
from cnnlab.analyze.rundata import RunData
from cnnlab.analyze.stats import CONFIDENCE
from cnnlab.analyze.wording import (
    UNKNOWN_SPLIT,
    difference_text,
    direction,
    measured_difference,
    measured_verdict,
)

MAX_ESTIMATES_LISTED = 7  # effect estimates named in the unreplicated grid's sentence


@dataclass(frozen=True)
class DesignAnalysis:
    """What a design's analysis found: the factorial data, its sentences and its figures' choices."""

    factorial: FactorialAnalysis
    sentences: list[str]
    effects: list[Effect]  # effect charts, one per factor (a one-factor arm's runs only)
    estimates: list[EffectEstimate] = field(default_factory=list)  # unreplicated grid: half-normal plot
    interaction: tuple[str, str] | None = None  # the two factors whose interaction plot is drawn
    interaction_intervals: bool = False  # intervals only where the plotted means are over seeds


def analyze_design(
    design: Design, metric: Metric, ranking: Ranking, numeric: Sequence[str] = ()
) -> DesignAnalysis:
    """The analysis that ``design.kind`` calls for."""
    return ANALYSES[design.kind](design, metric, ranking, numeric)


def _empty(design: Design, metric: Metric, kind: str) -> FactorialAnalysis:
    return FactorialAnalysis(
        metric,
        kind,
        list(design.factors),
        [],
        [],
        None,
        False,
        [],
        None,
        None,
        {},
        [],
        evaluation=design.evaluation,
        observations=len(design.scored),
    )


def _effects(design: Design, metric: Metric) -> list[Effect]:
    firsts = [f.keys[0] for f in design.factors]
    return [
        effect_of(design.scored, f.keys[0], metric, firsts, " + ".join(f.keys) if f.zipped else "", factor=f)
        for f in design.factors
    ]


def _varying(design: Design) -> list[str]:
    return [key for f in design.factors for key in f.keys]


def replicated_grid(
    design: Design, metric: Metric, ranking: Ranking, numeric: Sequence[str]
) -> DesignAnalysis:
    """A factorial ANOVA with seeds as replicates: pooled residual when the cells scatter alike, HC3
    robust errors when they do not; simple effects where factors interact."""
    robust = "" if ranking.comparison.pooled else ranking.comparison.reason
    factorial = analyze_factors(
        design.runs, metric, _varying(design), numeric, factors=design.factors, robust=robust
    )
    pairs = [row for row in factorial.table if len(row.factors) == 2]
    strongest = max(pairs, key=lambda row: row.partial_eta_sq).factors if pairs else None
    if strongest is None and len(factorial.factors) >= 2:
        strongest = (factorial.factors[0].name, factorial.factors[1].name)
    return DesignAnalysis(
        factorial,
        factor_sentences(factorial),
        _effects(design, metric),
        interaction=strongest,
        interaction_intervals=len(factorial.factors) == 2,
    )


def unreplicated_grid(
    design: Design, metric: Metric, ranking: Ranking, numeric: Sequence[str]
) -> DesignAnalysis:
    """Effect estimates of every main effect and interaction for a half-normal (Daniel) plot, the
    largest named; nothing is tested, since nothing measures how much a run varies."""
    factorial = analyze_factors(
        design.runs, metric, _varying(design), numeric, factors=design.factors, anova=False
    )
    estimates = effect_estimates(design.scored, design.factors, metric)
    sentences = [zipped_sentence(f) for f in factorial.factors if f.zipped] + single_level_sentences(
        factorial
    )
    if not estimates:
        sentences.append(
            "With one run per configuration and an incomplete grid, effects cannot be estimated apart from "
            "each other; the configurations are compared one by one above."
        )
        return DesignAnalysis(factorial, sentences, _effects(design, metric))
    shape = " × ".join(str(len(f.levels)) for f in design.factors)
    listed = "; ".join(
        f"{e.label} {metric.format_signed(e.estimate)}" for e in estimates[:MAX_ESTIMATES_LISTED]
    )
    more = (
        f"; … {len(estimates) - MAX_ESTIMATES_LISTED} smaller"
        if len(estimates) > MAX_ESTIMATES_LISTED
        else ""
    )
    two_level = all(len(f.levels) == 2 for f in design.factors)
    meaning = (
        "each main effect is the mean at a factor's second value minus the mean at its first, each "
        "interaction the usual ±1 contrast"
        if two_level
        else "each is an orthogonal contrast scaled like a two-level effect"
    )
    largest, runner = estimates[0], (estimates[1] if len(estimates) > 1 else None)
    ratio = (
        f", {largest.size / runner.size:.1f}× the next ({runner.label})" if runner and runner.size > 0 else ""
    )
    sentences.append(
        f"An unreplicated {shape} grid (one run per configuration): no run is repeated, so nothing measures "
        f"how much a configuration's result varies and no effect is tested. Instead every main effect and "
        f"interaction is estimated ({meaning}), largest first: {listed}{more}. The largest is "
        f"{largest.label}, {metric.format_signed(largest.estimate)}{ratio}. In the half-normal plot, "
        "effects that stand off the line through the small ones are the candidates; repeat the "
        "configurations to test them."
    )
    interactions = [e for e in estimates if len(e.factors) == 2]
    strongest = interactions[0].factors if interactions else None
    return DesignAnalysis(
        factorial,
        sentences,
        _effects(design, metric),
        estimates,
        interaction=strongest,
        interaction_intervals=False,
    )  # type: ignore[arg-type]


def one_factor(design: Design, metric: Metric, ranking: Ranking, numeric: Sequence[str]) -> DesignAnalysis:
    """A union of one-factor grids around a base cell: each level compared with the base cell, one
    factor at a time; never pooled over another factor's levels; interactions not estimable."""
    base = design.base
    assert base is not None
    factorial = _empty(design, metric, F_ONE_FACTOR)
    base_label = ", ".join(f"{f.name}={f.label(f.level_of(base.runs[0]))}" for f in design.factors)
    replicated = design.replicated
    sentences = [
        f"One factor at a time: {len(design.arms)} one-factor grids share the base cell ({base_label}); "
        "every other configuration changes one factor from it, so each is compared with the base cell "
        "alone (never pooled with configurations that differ in another factor), and interactions "
        "cannot be estimated in this design."
    ]
    base_values = [metric.of(run) for run in base.runs if run in design.scored]
    effects = []
    for arm in design.arms:
        parts = []
        for cell in arm.cells:
            if cell is base:
                continue
            values = [metric.of(run) for run in cell.runs if run in design.scored]
            level = arm.factor.label(arm.factor.level_of(cell.runs[0]))
            if not values or not base_values:
                status = ", ".join(sorted({run.status for run in cell.runs}))
                parts.append(f"{level}: no value ({status})")
                continue
            if replicated:
                d = ranking.comparison.difference(values, base_values)
                if d.diff == 0:
                    said = "tied"
                elif not d.has_interval:
                    said = "not tested (too few values)"
                elif d.excludes_zero:
                    said = direction(metric, d.diff)
                else:
                    said = "cannot be told apart"
                parts.append(
                    f"{level} {metric.format(sum(values) / len(values))}, "
                    f"{difference_text(metric, d, ranking.comparison.short_name)}: {said}"
                )
            else:
                d, _ = measured_difference(metric, _first_scored(design, cell), _first_scored(design, base))
                said = measured_verdict(metric, d)
                parts.append(
                    f"{level} {metric.format(values[0])}, "
                    f"{difference_text(metric, d, missing=UNKNOWN_SPLIT)}: {said}"
                )
        base_level = arm.factor.label(arm.factor.level_of(base.runs[0]))
        how = (
            f"the {CONFIDENCE:.0%} interval over seeds"
            if replicated
            else f"the {CONFIDENCE:.0%} interval of measuring two accuracies on the split's images; "
            "how much a run varies is not measured"
        )
        sentences.append(
            f"{arm.factor.name} against the base cell ({arm.factor.name}={base_level}, "
            f"{metric.format(sum(base_values) / len(base_values)) if base_values else 'no value'}; {how}): "
            + "; ".join(parts)
            + "."
        )
        runs = [run for cell in arm.cells for run in cell.runs if run in design.scored]
        effects.append(
            effect_of(
                runs,
                arm.factor.keys[0],
                metric,
                [arm.factor.keys[0]],
                " + ".join(arm.factor.keys) if arm.factor.zipped else "",
                factor=arm.factor,
                series_label=f"other settings at the base cell ({_others(design, arm.factor)})",
            )
        )
    return DesignAnalysis(factorial, sentences, effects)


def _first_scored(design: Design, cell: Cell) -> RunData:
    """The cell's first run with a value (a failed run before it is not compared)."""
    return next(run for run in cell.runs if run in design.scored)


def _others(design: Design, factor: Factor) -> str:
    base = design.base
    assert base is not None
    return ", ".join(
        f"{f.name}={f.label(f.level_of(base.runs[0]))}" for f in design.factors if f is not factor
    )


def sampled(design: Design, metric: Metric, ranking: Ranking, numeric: Sequence[str]) -> DesignAnalysis:
    """A sampled search (random, TPE): parameter importances by fANOVA, no ANOVA."""
    factorial = analyze_factors(design.runs, metric, _varying(design), numeric, factors=design.factors)
    return DesignAnalysis(factorial, factor_sentences(factorial), _effects(design, metric))


def not_comparable(
    design: Design, metric: Metric, ranking: Ranking, numeric: Sequence[str]
) -> DesignAnalysis:
    """Runs evaluated on different data: nothing is compared."""
    factorial = _empty(design, metric, F_NOT_COMPARABLE)
    return DesignAnalysis(factorial, factor_sentences(factorial), [])


def single(design: Design, metric: Metric, ranking: Ranking, numeric: Sequence[str]) -> DesignAnalysis:
    """One configuration (its seeds) or none with a value: nothing to compare."""
    kind = F_SINGLE if design.kind == SINGLE else F_NO_VALUES
    return DesignAnalysis(_empty(design, metric, kind), [], _effects(design, metric) if design.scored else [])


ANALYSES: dict[str, Callable[[Design, Metric, Ranking, Sequence[str]], DesignAnalysis]] = {
    REPLICATED_GRID: replicated_grid,
    UNREPLICATED_GRID: unreplicated_grid,
    ONE_FACTOR: one_factor,
    SAMPLED: sampled,
    NOT_COMPARABLE: not_comparable,
    SINGLE: single,
    NO_VALUES: single,
}
