"""A study: everything a report says about a set of runs (cells, ranking, diagnoses, effects,
conclusions), computed once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cnnlab.analyze.cells import Cell, fixed_settings, group_cells, varying_keys
from cnnlab.analyze.conclusions import Conclusions, conclude
from cnnlab.analyze.diagnose import Diagnosis, diagnose_run
from cnnlab.analyze.effects import Effect, effect_of
from cnnlab.analyze.factorial import FactorialAnalysis, analyze_factors
from cnnlab.analyze.factors import Factor, find_factors
from cnnlab.analyze.metrics import Metric, choose_metric
from cnnlab.analyze.ranking import Ranking, rank_cells
from cnnlab.analyze.rundata import RunData
from cnnlab.analyze.select import exclude_runs, load_runs
from cnnlab.analyze.speed import FallSpeed, fall_speeds
from cnnlab.store import RunStore


@dataclass(frozen=True)
class Study:
    """The analysis of a set of runs that a report presents."""

    title: str
    runs: list[RunData]
    excluded: list[RunData]
    varying: list[str]
    factors: list[Factor]  # the varying keys, those moved together as one factor
    fixed: dict[str, Any]
    cells: list[Cell]
    metric: Metric
    ranking: Ranking
    diagnoses: list[Diagnosis]
    effects: list[Effect]  # one per factor (keys moved together are one)
    factorial: FactorialAnalysis
    speeds: list[FallSpeed]
    conclusions: Conclusions

    @property
    def best_run(self) -> RunData | None:
        """The best run of the best configuration."""
        best = self.ranking.best
        if best is None:
            return None
        metric = self.metric
        return max(best.cell.runs, key=lambda r: metric.of(r) if metric.higher_is_better else -metric.of(r))


def analyze_runs(
    runs: Sequence[RunData],
    metric: str | None = None,
    excluded: Sequence[RunData] = (),
    numeric: Sequence[str] = (),
) -> Study:
    """Analyse ``runs``: group them into cells, rank, diagnose, analyse the factors and write conclusions."""
    runs = list(runs)
    chosen = choose_metric(runs, metric)
    varying = varying_keys(runs)
    factors = find_factors(runs, varying)
    cells = group_cells(runs, varying)
    if any(factor.zipped for factor in factors):  # keys moved together are named as one factor
        for cell in cells:
            cell.label = ", ".join(
                f"{f.name}={f.label(tuple(cell.settings[key] for key in f.keys))}" for f in factors
            )
    ranking = rank_cells(cells, chosen)
    firsts = [factor.keys[0] for factor in factors]  # keys moved together are drawn as one
    effects = [
        effect_of(runs, factor.keys[0], chosen, firsts, " + ".join(factor.keys) if factor.zipped else "")
        for factor in factors
    ]
    factorial = analyze_factors(runs, chosen, varying, numeric)
    speeds = fall_speeds([row.cell for row in ranking.rows])
    return Study(
        title=_title(runs),
        runs=runs,
        excluded=list(excluded),
        varying=varying,
        factors=factors,
        fixed=fixed_settings(runs),
        cells=cells,
        metric=chosen,
        ranking=ranking,
        diagnoses=[diagnose_run(run) for run in runs],
        effects=effects,
        factorial=factorial,
        speeds=speeds,
        conclusions=conclude(ranking, speeds, factorial),
    )


def analyze_stored(
    store: RunStore,
    refs: Sequence[str],
    metric: str | None = None,
    exclude: Sequence[str] = (),
    numeric: Sequence[str] = (),
) -> Study:
    """Load the runs named by ``refs`` (sweeps or runs), leave out ``exclude`` and analyse the rest
    (``numeric``: settings the factorial analysis treats as numbers, see `analyze_factors`)."""
    runs = load_runs(store, refs)
    kept = exclude_runs(runs, exclude, store)
    return analyze_runs(kept, metric, excluded=[run for run in runs if run not in kept], numeric=numeric)


def diagnose_stored(store: RunStore, refs: Sequence[str]) -> list[Diagnosis]:
    """Diagnoses of the runs named by ``refs`` (sweeps or runs)."""
    return [diagnose_run(run) for run in load_runs(store, refs)]


def _title(runs: Sequence[RunData]) -> str:
    sweeps = {run.record.sweep for run in runs}
    if len(sweeps) == 1 and None not in sweeps:
        return f"Sweep {sweeps.pop()}"
    if len(runs) == 1:
        return f"Run {runs[0].label}"
    return f"{len(runs)} runs"
