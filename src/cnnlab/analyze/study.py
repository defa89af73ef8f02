"""A study: everything a report says about a set of runs (cells, ranking, diagnoses, effects,
conclusions), computed once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cnnlab.analyze.budget import budget_caveat
from cnnlab.analyze.cells import Cell, fixed_settings, group_cells, varying_keys
from cnnlab.analyze.claim import Claim, parse_claim
from cnnlab.analyze.claim_check import check_claim
from cnnlab.analyze.conclusions import (
    Conclusions,
    at_chance_sentence,
    best_configuration,
    fastest_falling,
    learns_best,
)
from cnnlab.analyze.design import NOT_COMPARABLE, ONE_FACTOR, Design, classify
from cnnlab.analyze.designs import DesignAnalysis, analyze_design
from cnnlab.analyze.diagnose import Diagnosis, diagnose_run
from cnnlab.analyze.effects import Effect
from cnnlab.analyze.factorial import FactorialAnalysis
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
    effects: list[Effect]  # one per factor (keys moved together are one); the design decides whose runs
    factorial: FactorialAnalysis
    speeds: list[FallSpeed]
    conclusions: Conclusions
    design: Design | None = None
    analysis: DesignAnalysis | None = None
    claim: Claim | None = None

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
    claim: Claim | None = None,
) -> Study:
    """Analyse ``runs``: group them into cells once, classify the design, rank, diagnose, hand the
    design to its own analysis and write conclusions (``claim``: the seed's claim to check)."""
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
    design = classify(runs, cells, factors, chosen)
    ranking = rank_cells(cells, chosen)
    diagnoses = [diagnose_run(run) for run in runs]
    analysis = analyze_design(design, chosen, ranking, numeric)
    speeds = fall_speeds([row.cell for row in ranking.rows])
    comparable = design.kind != NOT_COMPARABLE
    one_loss = len({str(run.settings.get("train.loss")) for run in runs}) == 1
    conclusions = Conclusions(
        # one factor at a time: each level is compared with the base cell (the design's sentences),
        # not with the best configuration, which may differ from it in another factor
        learns_best=learns_best(ranking) if comparable and design.kind != ONE_FACTOR else None,
        fastest_falling=fastest_falling(speeds, ranking, one_loss) if comparable else None,
        best_configuration=best_configuration(ranking) if comparable else None,
        effects=analysis.sentences,
        at_chance=at_chance_sentence(ranking) if comparable else None,
        budget=budget_caveat(cells, diagnoses, ranking.one_seed) if comparable else None,
        claim=check_claim(claim, cells, ranking, diagnoses) if claim is not None else None,
    )
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
        diagnoses=diagnoses,
        effects=analysis.effects,
        factorial=analysis.factorial,
        speeds=speeds,
        conclusions=conclusions,
        design=design,
        analysis=analysis,
        claim=claim,
    )


def analyze_stored(
    store: RunStore,
    refs: Sequence[str],
    metric: str | None = None,
    exclude: Sequence[str] = (),
    numeric: Sequence[str] = (),
    claim: Claim | None = None,
) -> Study:
    """Load the runs named by ``refs`` (sweeps or runs), leave out ``exclude`` and analyse the rest
    (``numeric``: settings the factorial analysis treats as numbers, see `analyze_factors`); a sweep's
    own ``[claim]`` is checked unless ``claim`` is given."""
    runs = load_runs(store, refs)
    kept = exclude_runs(runs, exclude, store)
    if claim is None and len(refs) == 1:
        claim = stored_claim(store, refs[0])
    return analyze_runs(
        kept, metric, excluded=[run for run in runs if run not in kept], numeric=numeric, claim=claim
    )


def stored_claim(store: RunStore, sweep: str, storage: str | None = None) -> Claim | None:
    """The ``[claim]`` of sweep ``sweep``'s file, as its Optuna study keeps it (``storage``: the
    sweep storage; by default the store's database, or the journal file beside a SQLite store);
    None when there is none or the study cannot be read."""
    from cnnlab.errors import CnnlabError
    from cnnlab.sweep import Location
    from cnnlab.sweep.optuna_study import open_study, quiet_optuna

    if storage is None and not store.url.startswith("sqlite"):
        storage = store._url.render_as_string(hide_password=False)  # the shared database holds the sweep
    location = Location(storage=storage, root=str(store.root))
    try:
        if location.storage_url is None and not location.journal_path.exists():
            return None
        with quiet_optuna():
            _, spec = open_study(location, sweep)
    except (CnnlabError, KeyError, ValueError, OSError):  # no study, or one that cannot be read here
        return None
    raw = getattr(spec, "claim", None)
    return parse_claim(raw) if raw else None


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
