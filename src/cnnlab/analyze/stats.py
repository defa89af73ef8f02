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
    """Holm-corrected p-values (statsmodels' ``multipletests``); None stays None and is not counted."""
    from statsmodels.stats.multitest import multipletests

    tested = [p for p in p_values if p is not None]
    if not tested:
        return list(p_values)
    adjusted = iter(float(p) for p in multipletests(tested, method="holm")[1])
    return [None if p is None else next(adjusted) for p in p_values]
