"""Factorial analysis of a study as data: its design, the ANOVA table of a grid (statsmodels OLS with
categorical factors and their interactions, seeds as replicates), simple effects where factors
interact, and parameter importances (Optuna) for studies that are not grids."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import product
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnlab.analyze.cells import is_number
from cnnlab.analyze.design import MAX_GRID_LEVELS
from cnnlab.analyze.factors import Factor, evaluation_differs, find_factors, level_ident
from cnnlab.analyze.metrics import Metric
from cnnlab.analyze.ranking import rankable
from cnnlab.analyze.rundata import RunData
from cnnlab.analyze.stats import ALPHA, Comparison, Difference, Summary, holm, summarize
from cnnlab.errors import ConfigError, Problem

if TYPE_CHECKING:
    import pandas as pd

GRID, SINGLE, NOT_A_GRID, NO_VALUES, NOT_COMPARABLE, ONE_FACTOR = (
    "grid",
    "one configuration",
    "not a grid",
    "no values",
    "not comparable",
    "one factor at a time",
)
IMPORTANCE_EVALUATOR = "fANOVA (optuna.importance.FanovaImportanceEvaluator, seed 0)"
LOG_KEYS = ("lr", "weight_decay")  # numeric settings searched on a log scale


@dataclass(frozen=True)
class AnovaRow:
    """One source of variation: a factor or an interaction of factors."""

    factors: tuple[str, ...]  # factor names; two or more for an interaction
    df: float
    sum_sq: float
    f: float
    p: float
    partial_eta_sq: float  # SS_effect / (SS_effect + SS_residual)
    residual_df: float

    @property
    def source(self) -> str:
        """``loss`` or ``loss × optimizer+lr``."""
        return " × ".join(self.factors)

    @property
    def significant(self) -> bool:
        """p below α."""
        return math.isfinite(self.p) and self.p < ALPHA


@dataclass(frozen=True)
class LevelMean:
    """A level of a factor (within a simple effect or overall) and the metric of its runs."""

    label: str
    summary: Summary


@dataclass(frozen=True)
class SimpleEffect:
    """The effect of ``factor`` among the runs where ``at_factor`` is at ``at_level`` (one-way ANOVA
    on that subset; ``p`` Holm-corrected over the levels of ``at_factor``)."""

    factor: str
    at_factor: str
    at_level: str
    levels: list[LevelMean]
    df: tuple[float, float] | None
    f: float | None
    p_raw: float | None
    p: float | None
    difference: tuple[str, str, Difference] | None = None  # best level, worst level, best − worst


    @property
    def significant(self) -> bool:
        """Corrected p below α."""
        return self.p is not None and self.p < ALPHA


@dataclass(frozen=True)
class FactorialAnalysis:
    """What the data of a study can say about its factors (see `analyze_factors`)."""

    metric: Metric
    design: str  # GRID, SINGLE, NOT_A_GRID, NO_VALUES or NOT_COMPARABLE
    factors: list[Factor]
    seeds_per_cell: list[int]
    missing_cells: list[str]  # grid configurations without a value
    ss_type: int | None  # 2 for balanced cells, 3 for unbalanced; None without an ANOVA
    interactions_tested: bool
    table: list[AnovaRow]
    residual_df: float | None
    residual_sd: float | None
    marginal: dict[str, list[LevelMean]]  # factor name -> its levels pooled over the others
    simple_effects: list[SimpleEffect]
    importances: dict[str, float] = field(default_factory=dict)  # not a grid: Optuna importances
    evaluation: dict[str, list[str]] = field(default_factory=dict)  # NOT_COMPARABLE: differing keys
    observations: int = 0
    numeric: dict[str, str] = field(default_factory=dict)  # factor name -> its term (``log10(lr)``)
    robust: bool = False  # HC3 heteroscedasticity-robust errors (cells' variances differ)
    robust_reason: str = ""
    # factor name -> (best level, worst level, best minus worst with its CI): least-squares means
    differences: dict[str, tuple[str, str, Difference]] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        """Every configuration has the same number of seeds."""
        return len(set(self.seeds_per_cell)) <= 1

    @property
    def one_seed(self) -> bool:
        """Every configuration has one seed at most."""
        return bool(self.seeds_per_cell) and max(self.seeds_per_cell) == 1

    def anova_frame(self) -> pd.DataFrame:
        """The ANOVA table as a DataFrame (source, df, sum_sq, F, p, partial_eta_sq; residual last)."""
        import pandas as pd

        rows = [
            {
                "source": row.source,
                "df": row.df,
                "sum_sq": row.sum_sq,
                "F": row.f,
                "p": row.p,
                "partial_eta_sq": row.partial_eta_sq,
            }
            for row in self.table
        ]
        if self.residual_df is not None and self.residual_sd is not None:
            rows.append(
                {
                    "source": "residual",
                    "df": self.residual_df,
                    "sum_sq": self.residual_sd**2 * self.residual_df,
                    "F": math.nan,
                    "p": math.nan,
                    "partial_eta_sq": math.nan,
                }
            )
        return pd.DataFrame(rows, columns=["source", "df", "sum_sq", "F", "p", "partial_eta_sq"])

    def row(self, *factors: str) -> AnovaRow | None:
        """The ANOVA row of a factor or of an interaction (names in factor order)."""
        return next((row for row in self.table if set(row.factors) == set(factors)), None)

    def interacting(self, factor: str) -> list[AnovaRow]:
        """Significant two-way interactions that involve ``factor``."""
        return [
            row for row in self.table if len(row.factors) == 2 and factor in row.factors and row.significant
        ]

    def simple(self, factor: str, at_factor: str) -> list[SimpleEffect]:
        """Simple effects of ``factor`` at each level of ``at_factor``."""
        return [s for s in self.simple_effects if s.factor == factor and s.at_factor == at_factor]


def analyze_factors(
    runs: Sequence[RunData],
    metric: Metric,
    varying: Sequence[str],
    numeric: Sequence[str] = (),
    *,
    factors: Sequence[Factor] | None = None,
    robust: str = "",
    anova: bool = True,
) -> FactorialAnalysis:
    """The factorial analysis of ``runs`` on ``metric``: rankable runs with a finite value are the
    observations; ``varying`` are the settings that vary across all the runs (``factors``: found from
    them unless given). Every factor is categorical, except the numeric settings named in ``numeric``,
    which enter the model as one straight-line term (in log10 for learning rates and values spanning
    100× or more). ``robust`` (the reason, when the cells' variances differ) tests with HC3
    heteroscedasticity-robust errors and type III sums of squares; ``anova=False`` stops before the
    ANOVA (a grid without replicates has no error term to test against)."""
    scored = [run for run in rankable(runs) if math.isfinite(metric.of(run))]
    factors = list(factors) if factors is not None else find_factors(runs, varying)
    terms = _numeric_terms(factors, numeric)
    empty = FactorialAnalysis(
        metric, NO_VALUES, factors, [], [], None, False, [], None, None, {}, [], numeric=terms
    )
    if not scored:
        return empty
    differing = evaluation_differs(runs)
    if differing:
        return _replace(empty, design=NOT_COMPARABLE, evaluation=differing, observations=len(scored))
    cells: dict[tuple[str, ...], list[RunData]] = {}
    for run in scored:
        cells.setdefault(tuple(level_ident(f.level_of(run)) for f in factors), []).append(run)
    seeds = sorted(len(group) for group in cells.values())
    marginal = {f.name: _level_means(scored, f, metric) for f in factors}
    base = _replace(empty, seeds_per_cell=seeds, marginal=marginal, observations=len(scored))
    if not factors:
        return _replace(base, design=SINGLE)
    if any(len(f.levels) > MAX_GRID_LEVELS for f in factors) or math.prod(
        len(f.levels) for f in factors
    ) > max(len({tuple(level_ident(f.level_of(r)) for f in factors) for r in runs}), 1):
        return _replace(base, design=NOT_A_GRID, importances=importances(scored, factors, metric))
    missing = [
        ", ".join(f"{f.name}={f.label(level)}" for f, level in zip(factors, combo, strict=True))
        for combo in _grid(factors)
        if tuple(level_ident(level) for level in combo) not in cells
    ]
    factors = [f for f in factors if len({level_ident(f.level_of(r)) for r in scored}) > 1] or factors
    grid = _replace(base, design=GRID, missing_cells=missing, factors=factors)
    if not anova:
        return grid
    return _anova(_replace(grid, robust=bool(robust), robust_reason=robust), scored, cells)


def _numeric_terms(factors: Sequence[Factor], keys: Sequence[str]) -> dict[str, str]:
    """Factor name -> model term for the ``keys`` asked to be numeric; a clear error for any other key."""
    terms = {}
    for key in keys:
        factor = next((f for f in factors if key in f.keys), None)
        values = [level[0] for level in factor.levels] if factor else []
        if factor is None or factor.zipped or not all(is_number(v) for v in values):
            allowed = [
                f.keys[0] for f in factors if not f.zipped and all(is_number(lv[0]) for lv in f.levels)
            ]
            raise ConfigError(
                Problem(
                    "--numeric",
                    key,
                    "must name a numeric setting that varies on its own: " + (", ".join(allowed) or "none"),
                )
            )
        terms[factor.name] = f"log10({factor.name})" if _log_axis(factor, values) else factor.name
    return terms


def _log_axis(factor: Factor, values: Sequence[float]) -> bool:
    low, high = float(min(values)), float(max(values))
    return low > 0 and (factor.keys[0].rsplit(".", 1)[-1] in LOG_KEYS or high / low >= 100)


def importances(runs: Sequence[RunData], factors: Sequence[Factor], metric: Metric) -> dict[str, float]:
    """Each factor's importance for ``metric`` by Optuna's fANOVA evaluator, one trial per run
    (a zipped factor counts through its first key); empty with fewer than 2 runs."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    if len(runs) < 2:
        return {}
    distributions = {}
    for factor in factors:
        values = [level[0] for level in factor.levels]
        if all(is_number(v) for v in values):
            low, high = float(min(values)), float(max(values))
            distributions[factor.name] = FloatDistribution(low, high, log=_log_axis(factor, values))
        else:
            distributions[factor.name] = CategoricalDistribution(factor.labels())
    trials = []
    for run in runs:
        params = {}
        for factor in factors:
            value = factor.level_of(run)[0]
            distribution = distributions[factor.name]
            params[factor.name] = (
                float(value)
                if isinstance(distribution, FloatDistribution)
                else factor.label(factor.level_of(run))
            )
        trials.append(
            optuna.trial.create_trial(params=params, distributions=distributions, value=metric.of(run))
        )
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" line
    try:
        study = optuna.create_study(direction="maximize" if metric.higher_is_better else "minimize")
        study.add_trials(trials)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0), normalize=True)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return {name: float(value) for name, value in found.items()}


def _anova(base: FactorialAnalysis, runs: list[RunData], cells: dict) -> FactorialAnalysis:
    import pandas as pd
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    factors = base.factors
    columns: dict[str, list] = {"y": [base.metric.of(run) for run in runs]}
    terms = []
    for i, factor in enumerate(factors):
        if factor.name in base.numeric:
            values = [float(factor.level_of(run)[0]) for run in runs]
            log = base.numeric[factor.name].startswith("log10")
            columns[f"x{i}"] = [math.log10(v) for v in values] if log else values
            terms.append(f"x{i}")
        else:
            columns[f"f{i}"] = [level_ident(factor.level_of(run)) for run in runs]
            terms.append(f"C(f{i}, Sum)")
    frame = pd.DataFrame(columns)
    replicated = len(runs) > len(cells)
    interactions = replicated and not base.missing_cells and len(factors) > 1
    formula = "y ~ " + (" * ".join(terms) if interactions else " + ".join(terms))
    ss_type = 2 if base.balanced and not base.missing_cells and not base.robust else 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = smf.ols(formula, frame).fit(**({"cov_type": "HC3", "use_t": True} if base.robust else {}))
        if model.df_resid <= 0:
            return base
        if base.robust and np.any(model.get_influence().hat_matrix_diag > 1 - 1e-9):
            return _replace(base, robust=False, robust_reason="")  # a one-run cell: HC3 is undefined
        table = anova_lm(model, typ=ss_type, robust="hc3" if base.robust else None)
    ss_resid = float(table.loc["Residual", "sum_sq"])
    rows = []
    for source, values in table.iterrows():
        if source in ("Intercept", "Residual"):
            continue
        named = tuple(factors[int(index)].name for index in re.findall(r"\b[fx](\d+)\b", str(source)))
        ss = float(values["sum_sq"])
        eta = ss / (ss + ss_resid) if ss + ss_resid > 0 else math.nan
        rows.append(
            AnovaRow(
                named,
                float(values["df"]),
                ss,
                _finite(values["F"]),
                _finite(values["PR(>F)"]),
                eta,
                float(model.df_resid),
            )
        )
    analysis = _replace(
        base,
        differences=_differences(model, frame, factors, base),
        ss_type=ss_type,
        interactions_tested=interactions,
        table=rows,
        residual_df=float(model.df_resid),
        residual_sd=math.sqrt(ss_resid / model.df_resid),
    )
    simple = []
    for row in analysis.table:
        if len(row.factors) == 2 and row.significant:
            a, b = (next(f for f in factors if f.name == name) for name in row.factors)
            residual = Comparison(analysis.residual_sd, int(analysis.residual_df or 0))
            test = Comparison() if base.robust else residual
            simple += _simple_effects(runs, a, b, base.metric, test)
            simple += _simple_effects(runs, b, a, base.metric, test)
    return _replace(analysis, simple_effects=simple)


def _differences(model: Any, frame: pd.DataFrame, factors: Sequence[Factor], base: FactorialAnalysis) -> dict:
    """Each categorical factor's best level minus its worst as least-squares means (averaged over the
    other factors' levels alike), with the model's CI and p (HC3 when the analysis is robust)."""
    from patsy import build_design_matrices

    found: dict[str, tuple[str, str, Difference]] = {}
    info = model.model.data.model_spec
    sign = 1.0 if base.metric.higher_is_better else -1.0
    for i, factor in enumerate(factors):
        if factor.name in base.numeric:
            continue
        # Only the levels the model was fitted on: a level whose runs all failed is unknown to it.
        observed = set(frame[f"f{i}"])
        levels = [level for level in factor.levels if level_ident(level) in observed]
        rows = []
        for level in levels:
            grid = _prediction_grid(frame, factors, i, level)
            matrix = np.asarray(build_design_matrices([info], grid)[0])
            rows.append(matrix.mean(axis=0))
        means = [float(row @ model.params.to_numpy()) for row in rows]
        best = max(range(len(means)), key=lambda k: sign * means[k])
        worst = min(range(len(means)), key=lambda k: sign * means[k])
        if best == worst:
            continue
        test = model.t_test(rows[best] - rows[worst])
        low, high = (float(v) for v in np.asarray(test.conf_int(alpha=ALPHA)).ravel())
        found[factor.name] = (
            factor.label(levels[best]),
            factor.label(levels[worst]),
            Difference(float(np.ravel(test.effect)[0]), low, high, float(np.ravel(test.pvalue)[0])),
        )
    return found


def _prediction_grid(frame: pd.DataFrame, factors: Sequence[Factor], i: int, level: tuple) -> pd.DataFrame:
    """Every combination of the other factors' observed values with factor ``i`` at ``level``."""
    import pandas as pd

    columns = {}
    for j in range(len(factors)):
        name = f"x{j}" if f"x{j}" in frame else f"f{j}"
        if j == i:
            columns[name] = [level_ident(level)] if name.startswith("f") else None
        else:
            columns[name] = sorted(frame[name].unique().tolist())
    if columns.get(f"x{i}", 0) is None:
        raise ValueError("numeric factors have no levels to compare")
    keys = list(columns)
    return pd.DataFrame(list(product(*(columns[k] for k in keys))), columns=keys).assign(y=0.0)


def _simple_effects(
    runs: Sequence[RunData], factor: Factor, at: Factor, metric: Metric, test: Comparison
) -> list[SimpleEffect]:
    """One-way ANOVA of ``factor`` within each level of ``at``, Holm-corrected over those levels, with
    its best level minus its worst by ``test`` (the residual's pooled variance, or Welch's)."""
    found = []
    for level in at.levels:
        subset = [run for run in runs if level_ident(at.level_of(run)) == level_ident(level)]
        found.append(
            (at.label(level), _level_means(subset, factor, metric), *_one_way(subset, factor, metric),
             _best_minus_worst(subset, factor, metric, test))
        )
    if len(factor.levels) == 2:  # the p of the difference its interval comes from, so the two agree
        found = [(label, levels, df, f, diff[2].p if diff else p, diff)
                 for label, levels, df, f, p, diff in found]
    adjusted = holm([p for *_, p, _ in found])
    return [
        SimpleEffect(factor.name, at.name, label, levels, df, f, p, holm_p, diff)
        for (label, levels, df, f, p, diff), holm_p in zip(found, adjusted, strict=True)
    ]


def _best_minus_worst(
    runs: Sequence[RunData], factor: Factor, metric: Metric, test: Comparison
) -> tuple[str, str, Difference] | None:
    groups: dict[str, tuple[str, list[float]]] = {}
    for run in runs:
        level = factor.level_of(run)
        groups.setdefault(level_ident(level), (factor.label(level), []))[1].append(metric.of(run))
    if len(groups) < 2:
        return None
    sign = 1.0 if metric.higher_is_better else -1.0
    ranked = sorted(groups.values(), key=lambda item: -sign * float(np.mean(item[1])))
    (best, a), (worst, b) = ranked[0], ranked[-1]
    return best, worst, test.difference(a, b)


def _one_way(
    runs: Sequence[RunData], factor: Factor, metric: Metric
) -> tuple[tuple[float, float] | None, float | None, float | None]:
    groups: dict[str, list[float]] = {}
    for run in runs:
        groups.setdefault(level_ident(factor.level_of(run)), []).append(metric.of(run))
    values = list(groups.values())
    between_df, within_df = len(values) - 1, sum(len(v) for v in values) - len(values)
    if between_df < 1 or within_df < 1:
        return None, None, None
    from scipy import stats

    if all(np.ptp(v) == 0 for v in values):
        same = len({v[0] for v in values}) == 1
        return (float(between_df), float(within_df)), math.nan, 1.0 if same else 0.0
    result = stats.f_oneway(*values)
    return (float(between_df), float(within_df)), float(result.statistic), float(result.pvalue)


def _level_means(runs: Sequence[RunData], factor: Factor, metric: Metric) -> list[LevelMean]:
    out = []
    for level in factor.levels:
        group = [run for run in runs if level_ident(factor.level_of(run)) == level_ident(level)]
        if group:
            out.append(LevelMean(factor.label(level), summarize([metric.of(run) for run in group])))
    return out


def _grid(factors: Sequence[Factor]) -> list[tuple[tuple, ...]]:
    return list(product(*(f.levels for f in factors)))


def _finite(value: object) -> float:
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else math.nan


def _replace(analysis: FactorialAnalysis, **changes: object) -> FactorialAnalysis:
    return replace(analysis, **changes)  # type: ignore[arg-type]
