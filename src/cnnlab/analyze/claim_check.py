"""The seed's claim checked against a study's cells: each comparison it makes, measured."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from cnnlab.analyze.budget import UNFINISHED
from cnnlab.analyze.cells import Cell, format_value, value_key
from cnnlab.analyze.claim import Claim, ClaimPair, claim_sentence
from cnnlab.analyze.diagnose import Diagnosis
from cnnlab.analyze.ranking import Ranking, rankable
from cnnlab.analyze.wording import difference_text, first_with_value, measured_difference


def check_claim(claim: Claim, cells: Sequence[Cell], ranking: Ranking, diagnoses: Sequence[Diagnosis]) -> str:
    """The claim with reproduced / contradicted / not comparable, and why."""
    metric = ranking.metric
    entries = claim.order if claim.best is None else [claim.best]
    matched: list[Cell | None] = [_match(cells, entry) for entry in entries]
    missing = [_shown(entry) for entry, cell in zip(entries, matched, strict=True) if cell is None]
    if missing:
        return claim_sentence(claim, [], missing, [], None, metric.description)
    found = [cell for cell in matched if cell is not None]
    if claim.best is None:
        pairs_of = list(itertools.pairwise(found))
    else:
        pairs_of = [(found[0], cell) for cell in cells if cell is not found[0]]
    pairs = [_pair(ranking, above, below) for above, below in pairs_of]
    involved = {id(c) for pair in pairs_of for c in pair}
    unfinished_ids = {d.run.id for d in diagnoses if any(f.kind in UNFINISHED for f in d.findings)}
    unfinished = [c.label for c in cells if id(c) in involved and any(r.id in unfinished_ids for r in c.runs)]
    epochs = sorted(
        {
            e
            for c in cells
            if id(c) in involved
            for r in c.runs
            if isinstance(e := r.settings.get("train.epochs"), int)
        }
    )
    differs = None
    if claim.epochs is not None and epochs and epochs != [claim.epochs]:
        differs = f"the seed trained {claim.epochs} epochs, these runs {'/'.join(map(str, epochs))}"
    return claim_sentence(claim, pairs, [], unfinished, differs, metric.description)


def _pair(ranking: Ranking, above: Cell, below: Cell) -> ClaimPair:
    metric = ranking.metric
    kept_above, kept_below = rankable(above.runs) or above.runs, rankable(below.runs) or below.runs
    a = [metric.of(run) for run in kept_above]
    b = [metric.of(run) for run in kept_below]
    if ranking.one_seed:  # each cell's run with a value, not a failed one before it
        first_above, first_below = first_with_value(metric, kept_above), first_with_value(metric, kept_below)
        d, _ = measured_difference(metric, first_above, first_below)
    else:
        d = ranking.comparison.difference(a, b)
    if not metric.higher_is_better:
        d = type(d)(-d.diff, -d.high, -d.low, d.p)
    outcome = (
        "supported"
        if d.has_interval and d.low > 0
        else "contradicted"
        if d.has_interval and d.high < 0
        else "not shown"
    )
    text = difference_text(metric, d, ranking.comparison.short_name if not ranking.one_seed else "")
    return ClaimPair(above.label, below.label, text, outcome)


def _match(cells: Sequence[Cell], entry: Mapping[str, Any]) -> Cell | None:
    for cell in cells:
        run = cell.runs[0]
        if all(value_key(run.settings.get(key)) == value_key(value) for key, value in entry.items()):
            return cell
    return None


def _shown(entry: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={format_value(value)}" for key, value in entry.items())
