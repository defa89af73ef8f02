"""The budget caveat: when runs are diagnosed as not finished learning (not converged, step too small,
at chance), a comparison of their configurations holds for this budget and learning rate only."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from cnnlab.analyze.cells import Cell, format_value
from cnnlab.analyze.diagnose import NOT_CONVERGED, NOT_LEARNING, STEP_TOO_LARGE, STEP_TOO_SMALL, Diagnosis
from cnnlab.analyze.wording import listing

# Findings that say a run had not finished learning when it stopped.
UNFINISHED = (STEP_TOO_SMALL, NOT_CONVERGED, NOT_LEARNING, STEP_TOO_LARGE)


def budget_caveat(cells: Sequence[Cell], diagnoses: Sequence[Diagnosis], one_run_each: bool) -> str | None:
    """One sentence naming the configurations whose runs had not finished learning, what the
    diagnoses say, that the comparison holds for this budget and learning rate only, and what to run
    to find out; None when every run finished learning."""
    kinds = {d.run.id: [f.kind for f in d.findings if f.kind in UNFINISHED] for d in diagnoses}
    named, epochs, total = [], set(), Counter()
    for cell in cells:
        found = [(run, kinds.get(run.id) or []) for run in cell.runs]
        hit = [(run, k) for run, k in found if k]
        if not hit:
            continue
        counts: dict[str, int] = {}
        for _, k in hit:
            counts[k[0]] = counts.get(k[0], 0) + 1
            total[k[0]] += 1
        said = ", ".join(
            f"{kind}" + ("" if one_run_each else f" in {n} of {len(cell.runs)} runs")
            for kind, n in counts.items()
        )
        named.append(f"{cell.label} ({said})")
        epochs |= {run.settings.get("train.epochs") for run, _ in hit}
    if not named:
        return None
    shown = [e for e in epochs if isinstance(e, int)]
    budget = f"{'/'.join(str(e) for e in sorted(shown))} epochs" if shown else "this many epochs"
    longer = f" (e.g. -s train.epochs={2 * max(shown)})" if shown else ""
    rates = sorted({format_value(run.settings.get("train.lr")) for cell in cells for run in cell.runs})
    who = listing(named)
    if len(named) == len(cells) > 2 and len(total) == 1:  # every configuration, one finding: say so
        runs = sum(len(cell.runs) for cell in cells)
        kinds_said = ", ".join(f"{kind} in {n} of {runs} runs" for kind, n in total.most_common())
        who = f"all {len(cells)} configurations ({kinds_said})"
    return (
        f"Budget caveat: {who} had not finished learning when they stopped, so every "
        f"comparison involving them holds for this budget ({budget}) and these learning rates "
        f"({', '.join(rates)}) only, not for their settings in general. To find out, train longer{longer} "
        "and follow each run's cure in `cnnlab diagnose RUN`."
    )
