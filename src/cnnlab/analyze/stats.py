"""Seed statistics: mean, standard deviation, t-based 95% confidence interval and Welch's t-test."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95  # confidence level of every interval shown
ALPHA = 0.05  # significance level of every test
TEST_NAME = "Welch's t-test (two-sided, unequal variances)"
MIN_POOLED_GROUPS = 3  # from this many groups with 2+ values on, comparisons pool their variance


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation and confidence interval of ``n`` values (NaN where undefined)."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float

    @property
    def half_width(self) -> float:
        """Half the width of the confidence interval."""
        return (self.ci_high - self.ci_low) / 2


def summarize(values: Sequence[float]) -> Summary:
    """Summary of the finite ``values``; the interval uses Student's t with n − 1 degrees of freedom."""
    data = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    n = len(data)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(data.mean())
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = float(data.std(ddof=1))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's t-test of equal means; None with fewer than 2 values in either.

    Two groups without any spread are equal (p = 1) or certainly different (p = 0)."""
    x = np.asarray([v for v in a if math.isfinite(v)], dtype=float)
    y = np.asarray([v for v in b if math.isfinite(v)], dtype=float)
    if len(x) < 2 or len(y) < 2:
        return None
    if x.std() == 0 and y.std() == 0:
        return 1.0 if x.mean() == y.mean() else 0.0
    return float(stats.ttest_ind(x, y, equal_var=False).pvalue)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-corrected p-values (the step-down method of statsmodels' ``multipletests(method="holm")``,
    which is not called because it runs a full garbage collection on every call: 0.2 s each); None
    stays None and is not counted."""
    tested = np.array([p for p in p_values if p is not None], dtype=float)
    if not tested.size:
        return list(p_values)
    order = np.argsort(tested, kind="stable")
    steps = (tested.size - np.arange(tested.size)) * tested[order]
    adjusted = np.empty_like(tested)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    values = iter(float(p) for p in adjusted)
    return [None if p is None else next(values) for p in p_values]


@dataclass(frozen=True)
class Comparison:
    """How two groups of values are compared: Welch's t-test, or (``pooled_sd`` set) a t-test whose
    variance is pooled over every group of a study, with ``df`` = values − groups degrees of freedom:
    with 2 or 3 seeds per configuration Welch's test has about 1 degree of freedom and cannot tell a
    collapse from noise, while the pooled test uses all seeds of the study."""

    pooled_sd: float | None = None
    df: int = 0

    @property
    def name(self) -> str:
        """The test in words, for the Method section."""
        if self.pooled_sd is None:
            return TEST_NAME
        return (
            f"a two-sided t-test with the seed-to-seed variance pooled over all configurations "
            f"({self.df} degrees of freedom)"
        )

    def p(self, a: Sequence[float], b: Sequence[float]) -> float | None:
        """Two-sided p-value of equal means; None with fewer than 2 values in either group (Welch) or
        none in either (pooled)."""
        if self.pooled_sd is None:
            return welch_p(a, b)
        x = [v for v in a if math.isfinite(v)]
        y = [v for v in b if math.isfinite(v)]
        if not x or not y:
            return None
        diff = float(np.mean(x) - np.mean(y))
        if self.pooled_sd == 0:
            return 1.0 if diff == 0 else 0.0
        t = diff / (self.pooled_sd * math.sqrt(1 / len(x) + 1 / len(y)))
        return float(2 * stats.t.sf(abs(t), self.df))


def comparison_for(groups: Sequence[Sequence[float]]) -> Comparison:
    """The pooled-variance comparison when at least ``MIN_POOLED_GROUPS`` groups have 2 or more finite
    values, else Welch's."""
    finite = [[v for v in group if math.isfinite(v)] for group in groups]
    replicated = [group for group in finite if len(group) >= 2]
    if len(replicated) < MIN_POOLED_GROUPS:
        return Comparison()
    df = sum(len(group) - 1 for group in replicated)
    squares = sum(float(np.var(group, ddof=1)) * (len(group) - 1) for group in replicated)
    return Comparison(math.sqrt(squares / df), df)
