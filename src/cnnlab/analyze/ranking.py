"""Ranking of configurations by a metric over their seeds, marking those not significantly worse than
the best."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from cnnlab.analyze.cells import Cell
from cnnlab.analyze.metrics import Metric
from cnnlab.analyze.rundata import RunData
from cnnlab.analyze.stats import ALPHA, CONFIDENCE, Comparison, Summary, comparison_for, holm, summarize
from cnnlab.data.facts import common_chance
from cnnlab.store.schema import FINISHED

BEST, TIED, WORSE, UNTESTED, NO_VALUE = "best", "tied", "worse", "untested", "no value"


@dataclass(frozen=True)
class RankedCell:
    """A configuration's place in the ranking, its seed statistics and its test against the best."""

    rank: int
    cell: Cell
    values: list[float]
    summary: Summary
    p_vs_best: float | None  # the ranking's comparison with the best, Holm-corrected
    verdict: str  # BEST, TIED, WORSE, UNTESTED or NO_VALUE

    @property
    def verdict_text(self) -> str:
        """``best``, ``not significantly different (p = 0.41)``, ``worse (p = 0.002)``, ..."""
        if self.verdict == BEST:
            return "best"
        if self.verdict == TIED:
            return f"not significantly different from the best (Holm-corrected p = {self.p_vs_best:.2g})"
        if self.verdict == WORSE:
            return f"worse than the best (Holm-corrected p = {self.p_vs_best:.2g})"
        if self.verdict == UNTESTED:
            return "cannot tell: a test needs at least 2 seeds on both sides"
        return "no value"


@dataclass(frozen=True)
class Ranking:
    """Cells ranked best first by ``metric``; ``unranked`` are runs left out for their status."""

    metric: Metric
    rows: list[RankedCell]
    unranked: list[RunData]
    comparison: Comparison

    @property
    def best(self) -> RankedCell | None:
        """The top cell, if any cell has a value."""
        return self.rows[0] if self.rows and self.rows[0].verdict == BEST else None

    @property
    def chance(self) -> float | None:
        """The accuracy of guessing its runs share (1 / their class count); None when unknown or
        when the runs have different class counts."""
        return common_chance([run.facts for row in self.rows for run in row.cell.runs])

    @property
    def one_seed(self) -> bool:
        """True when no ranked cell has more than one seed with a value."""
        return bool(self.rows) and all(row.summary.n <= 1 for row in self.rows)

    @property
    def method(self) -> str:
        """What is ranked and how significance is judged, in one paragraph."""
        if self.one_seed:
            return (
                f"Configurations are ranked by {self.metric.description} ({self.metric.name}), one run "
                "each. With one run per configuration nothing measures how much a configuration's result "
                "varies, so no difference is tested: each is given with the 95% interval of measuring two "
                "accuracies on the split's images (two proportions), which leaves run-to-run variation "
                f"out; runs with status {', '.join(FINISHED)} are ranked."
            )
        return (
            f"Configurations are ranked by {self.metric.description} ({self.metric.name}), mean over "
            f"seeds, with the sample standard deviation and the {CONFIDENCE:.0%} confidence interval "
            f"of the mean (Student's t, n − 1 degrees of freedom). Each is compared with the best by "
            f"{self.comparison.name}. Significance is judged at α = {ALPHA}, the p-values corrected for "
            f"multiple comparisons by Holm's method over the {max(len(self.rows) - 1, 0)} comparisons with "
            f"the best; runs with status {', '.join(FINISHED)} are ranked."
        )

    @property
    def noise_note(self) -> str | None:
        """A plain warning when seeds are too few to tell real differences from noise."""
        if self.one_seed and len(self.rows) == 1:
            return (
                "The one configuration has one run: nothing measures how much its result varies from "
                "run to run; run at least 2 seeds (3 or more is better) to measure it."
            )
        if self.one_seed:
            return (
                f"Each of the {len(self.rows)} configurations has one run, so nothing measures how much a "
                "result varies from run to run and no difference between them is tested; run at least "
                "2 seeds per configuration (3 or more is better) to test them."
            )
        single = [row for row in self.rows if row.summary.n == 1]
        if single and self.comparison.pooled_sd is not None:
            return (
                f"{len(single)} of {len(self.rows)} configurations have one seed; they are tested against "
                "the seed-to-seed spread pooled over the configurations that have several."
            )
        if single:
            return (
                f"{len(single)} of {len(self.rows)} configurations have one seed; their differences "
                "from the best cannot be tested."
            )
        return None


def rankable(runs: Sequence[RunData]) -> list[RunData]:
    """The runs whose status lets them be ranked."""
    return [run for run in runs if run.status in FINISHED]


def rank_cells(cells: Sequence[Cell], metric: Metric) -> Ranking:
    """Rank ``cells`` by the mean of ``metric`` over their rankable runs."""
    scored: list[tuple[Cell, list[float], Summary]] = []
    unranked: list[RunData] = []
    for cell in cells:
        runs = rankable(cell.runs)
        unranked += [run for run in cell.runs if run not in runs]
        if runs:
            values = [metric.of(run) for run in runs]
            scored.append((Cell(cell.settings, runs, cell.label), values, summarize(values)))
    sign = -1.0 if metric.higher_is_better else 1.0
    scored.sort(key=lambda item: (math.isnan(item[2].mean), sign * item[2].mean if item[2].n else 0.0))
    best_values = scored[0][1] if scored and scored[0][2].n else []
    comparison = comparison_for([values for _, values, _ in scored], metric.format_diff)
    raw = [
        comparison.p(best_values, values) if i and summary.n else None
        for i, (_, values, summary) in enumerate(scored)
    ]
    rows: list[RankedCell] = []
    for rank, ((cell, values, summary), p) in enumerate(zip(scored, holm(raw), strict=True), start=1):
        if summary.n == 0:
            rows.append(RankedCell(rank, cell, values, summary, None, NO_VALUE))
        elif rank == 1:
            rows.append(RankedCell(rank, cell, values, summary, None, BEST))
        else:
            verdict = UNTESTED if p is None else (TIED if p >= ALPHA else WORSE)
            rows.append(RankedCell(rank, cell, values, summary, p, verdict))
    return Ranking(metric, rows, unranked, comparison)
