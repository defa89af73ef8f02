"""How a comparison is written: a difference with its interval and what the interval allows one to
say, never a bare ``>`` or ``≈``; configurations at chance and ties said to be so."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from scipy import stats as scipy_stats

from cnnlab.analyze.diagnose import chance_margin, split_size
from cnnlab.analyze.factors import EVALUATION_KEYS
from cnnlab.analyze.metrics import Metric
from cnnlab.analyze.rundata import RunData
from cnnlab.analyze.stats import CONFIDENCE, Difference
from cnnlab.data.facts import common_chance

APART, TIED, CANNOT_TELL = "apart", "tied", "cannot tell"
UNKNOWN_SPLIT = "the size of the split it is measured on is unknown"


def chance_level(runs: Iterable[RunData]) -> float | None:
    """The accuracy of guessing, 1 / the class count, that the runs share (each run's own count,
    as it stored it or its built-in dataset has it); None when one is unknown or they differ."""
    return common_chance([run.facts for run in runs])


def at_chance(metric: Metric, value: float, chance: float | None) -> bool:
    """An accuracy within the diagnosis' margin above ``chance`` (`chance_margin`: 5 points, or half of
    chance where that is less): nothing learned. False when chance is unknown."""
    return (chance is not None and metric.higher_is_better and math.isfinite(value)
            and value <= chance + chance_margin(chance))


def chance_words(chance: float) -> str:
    """``chance (10.00% for 10 classes; within 5 points of it)``; ``0.5 points`` for 100 classes."""
    margin = f"within {100 * chance_margin(chance):.3g} points of it"
    return f"chance ({100 * chance:.2f}% for {round(1 / chance)} classes; {margin})"


def direction(metric: Metric, diff: float) -> str:
    """``higher`` or ``lower`` for a difference ``diff``, with ``(so worse)``/``(so better)`` for a
    metric where lower is better."""
    word = "higher" if diff > 0 else "lower"
    return word if metric.higher_is_better else f"{word} (so {'worse' if diff > 0 else 'better'})"


def interval_text(metric: Metric, d: Difference) -> str:
    """``95% CI −5.31 to +6.40``."""
    low, high = metric.format_signed(d.low, unit=False), metric.format_signed(d.high, unit=False)
    return f"{CONFIDENCE:.0%} CI {low} to {high}"


def verdict(d: Difference) -> str:
    """APART when the interval excludes zero, TIED when the means are equal, else CANNOT_TELL."""
    if d.diff == 0:
        return TIED
    return APART if d.excludes_zero else CANNOT_TELL


def difference_text(metric: Metric, d: Difference, extra: str = "", missing: str = "too few values") -> str:
    """``difference −0.53 points (95% CI −6.40 to +5.31; p = 0.81)``; ``extra`` goes inside the brackets,
    ``missing`` says why there is no interval when there is none."""
    inside = [interval_text(metric, d)] if d.has_interval else [f"no interval: {missing}"]
    if extra:
        inside.append(extra)
    return f"difference {metric.format_signed(d.diff)} ({'; '.join(inside)})"


def measured_difference(metric: Metric, a: RunData, b: RunData) -> tuple[Difference, int | None]:
    """Run ``a``'s value minus run ``b``'s, with the interval of measuring two accuracies on the
    split's images (two proportions, normal approximation): what one run per configuration can say.
    Run-to-run (training) noise is not in it. The split's size is the one the run stored when it
    trained, else read off its values (see `split_size`). Returns the split's size too (None when
    unknown, and then no interval)."""
    va, vb = metric.of(a), metric.of(b)
    diff = va - vb
    if not metric.higher_is_better:
        return Difference(diff, math.nan, math.nan, None), None
    split = next((name for name in ("val", "train") if metric.column.startswith(name)), None)
    sizes = [_split_size(run, metric, split) for run in (a, b)]
    if sizes[0] is None and sizes[1] is None:
        return Difference(diff, math.nan, math.nan, None), None
    if evaluation_key(a) == evaluation_key(
        b
    ):  # as many images: a run whose values cannot tell takes the other's
        sizes = [sizes[0] or sizes[1], sizes[1] or sizes[0]]
    if None in sizes:
        return Difference(diff, math.nan, math.nan, None), None
    na, nb = sizes
    se = math.sqrt(va * (1 - va) / na + vb * (1 - vb) / nb)  # type: ignore[operator]
    if se == 0:
        return Difference(diff, diff, diff, None), na
    half = float(scipy_stats.norm.ppf(0.5 + CONFIDENCE / 2)) * se
    return Difference(diff, diff - half, diff + half, None), na


def _split_size(run: RunData, metric: Metric, split: str | None) -> int | None:
    facts = run.facts
    size = facts.size(split) if split else None
    if size and facts.stored:
        return size  # exact, even where the values cannot tell (fewer than two distinct ones)
    return split_size(run.series(metric.column), size)


def first_with_value(metric: Metric, runs: Sequence[RunData]) -> RunData:
    """The first of ``runs`` with a finite value of ``metric`` (the first run when none has one)."""
    return next((run for run in runs if math.isfinite(metric.of(run))), runs[0])


def evaluation_key(run: RunData) -> tuple[str, ...]:
    """The settings that decide how many images a run is scored on."""
    return tuple(str(run.settings.get(key)) for key in EVALUATION_KEYS)


def listing(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def measured_verdict(metric: Metric, d: Difference) -> str:
    """What one run per configuration allows one to say of a measured difference (`measured_difference`):
    tied, not tested (no interval), higher/lower on these images, or cannot be told apart."""
    if d.diff == 0:
        return "tied (the same value)"
    if not d.has_interval:
        return "not tested"
    if verdict(d) == APART:
        return f"{direction(metric, d.diff)} on these images"
    return "cannot be told apart on these images"
