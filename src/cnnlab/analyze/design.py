"""The design of a study, decided once from its cells: a replicated grid, an unreplicated grid, a
union of one-factor grids around a base cell, a sampled search, a single configuration, or runs
that are not comparable. Each design has its own analysis (see `cnnlab.analyze.study`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from cnnlab.analyze.cells import Cell
from cnnlab.analyze.factors import Factor, evaluation_differs, level_ident
from cnnlab.analyze.metrics import Metric
from cnnlab.analyze.ranking import rankable
from cnnlab.analyze.rundata import RunData

REPLICATED_GRID = "replicated grid"
UNREPLICATED_GRID = "unreplicated grid"
ONE_FACTOR = "one factor at a time"
SAMPLED = "sampled search"
SINGLE = "one configuration"
NOT_COMPARABLE = "not comparable"
NO_VALUES = "no values"
MAX_GRID_LEVELS = 12  # a factor with more levels than this is sampled, not a grid axis


@dataclass(frozen=True)
class Arm:
    """One factor of a one-factor-at-a-time design: the base cell, then the cells that change only
    this factor, in level order."""

    factor: Factor
    cells: list[Cell]


@dataclass(frozen=True)
class Design:
    """What kind of study the cells form, with what each kind's analysis needs."""

    kind: str
    factors: list[Factor]
    cells: list[Cell]
    scored: list[RunData]  # rankable runs with a finite value of the metric
    runs: list[RunData] = field(default_factory=list)  # every run, failed ones included
    base: Cell | None = None  # ONE_FACTOR: the cell every other differs from in one factor
    arms: list[Arm] = field(default_factory=list)  # ONE_FACTOR
    evaluation: dict[str, list[str]] = field(default_factory=dict)  # NOT_COMPARABLE: differing keys

    @property
    def replicated(self) -> bool:
        """Some configuration has two or more runs with a value."""
        return any(n >= 2 for n in self.values_per_cell)

    @property
    def values_per_cell(self) -> list[int]:
        """The number of runs with a value in each cell."""
        scored = {run.id for run in self.scored}
        return [sum(run.id in scored for run in cell.runs) for cell in self.cells]

    def cell_of(self, factor: Factor, level: tuple) -> list[Cell]:
        """The cells where ``factor`` is at ``level``."""
        return [c for c in self.cells if level_ident(factor.level_of(c.runs[0])) == level_ident(level)]


def classify(
    runs: Sequence[RunData], cells: Sequence[Cell], factors: Sequence[Factor], metric: Metric
) -> Design:
    """The design of ``cells`` (all runs grouped by the varying settings) over ``factors``."""
    scored = [run for run in rankable(runs) if math.isfinite(metric.of(run))]
    design = Design(NO_VALUES, list(factors), list(cells), scored, list(runs))
    if not scored:
        return design
    differing = evaluation_differs(runs)
    if differing:
        return _with(design, kind=NOT_COMPARABLE, evaluation=differing)
    if not factors:
        return _with(design, kind=SINGLE)
    full = math.prod(len(f.levels) for f in factors)
    if all(len(f.levels) <= MAX_GRID_LEVELS for f in factors) and full <= len(cells):
        replicated = any(n >= 2 for n in design.values_per_cell)
        return _with(design, kind=REPLICATED_GRID if replicated else UNREPLICATED_GRID)
    base = _base_cell(cells, factors)
    if base is not None and len(factors) > 1:
        return _with(design, kind=ONE_FACTOR, base=base, arms=_arms(cells, factors, base))
    return _with(design, kind=SAMPLED)


def _differs(a: Cell, b: Cell, factor: Factor) -> bool:
    return level_ident(factor.level_of(a.runs[0])) != level_ident(factor.level_of(b.runs[0]))


def _base_cell(cells: Sequence[Cell], factors: Sequence[Factor]) -> Cell | None:
    """The cell from which every other cell differs in exactly one factor, if there is one."""
    for candidate in cells:
        if all(
            sum(_differs(candidate, cell, f) for f in factors) == 1 for cell in cells if cell is not candidate
        ):
            return candidate
    return None


def _arms(cells: Sequence[Cell], factors: Sequence[Factor], base: Cell) -> list[Arm]:
    arms = []
    for factor in factors:
        moved = [cell for cell in cells if cell is not base and _differs(base, cell, factor)]
        order = [level_ident(level) for level in factor.levels]
        ordered = sorted([base, *moved], key=lambda c: order.index(level_ident(factor.level_of(c.runs[0]))))
        arms.append(Arm(factor, ordered))
    return arms


def _with(design: Design, **changes: object) -> Design:
    from dataclasses import replace

    return replace(design, **changes)  # type: ignore[arg-type]
