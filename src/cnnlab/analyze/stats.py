"""Seed statistics: mean, standard deviation, t-based 95% confidence interval, Holm's correction and
the one test a study compares configurations by: a t-test with the variance pooled over the
configurations when Hartley's F-max test finds no difference between their variances, else Welch's
t-test (see `comparison_for`)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

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


POOLED_NAME = "a pooled-variance t-test"
WELCH_NAME = "Welch's t-test"


@dataclass(frozen=True)
class Difference:
    """The difference of two group means with its confidence interval and two-sided p-value (NaN
    where a group has too few values for the test)."""

    diff: float
    low: float
    high: float
    p: float | None

    @property
    def has_interval(self) -> bool:
        """Whether the interval is defined."""
        return math.isfinite(self.low) and math.isfinite(self.high)

    @property
    def excludes_zero(self) -> bool:
        """The interval lies wholly above or wholly below zero."""
        return self.has_interval and (self.low > 0 or self.high < 0)


@dataclass(frozen=True)
class Comparison:
    """How two groups of values are compared, chosen once per study (see `comparison_for`): Welch's
    t-test, or (``pooled_sd`` set) a t-test whose variance is pooled over every group, with ``df`` =
    values − groups degrees of freedom. Pooling uses every seed of the study (with 2 or 3 seeds a
    configuration's own Welch test has about 1 degree of freedom) but is only right when the
    configurations scatter alike; ``reason`` says why this test was chosen."""

    pooled_sd: float | None = None
    df: int = 0
    reason: str = ""

    @property
    def pooled(self) -> bool:
        """Whether the variance is pooled."""
        return self.pooled_sd is not None

    @property
    def short_name(self) -> str:
        """``Welch's t-test`` or ``a pooled-variance t-test``."""
        return POOLED_NAME if self.pooled else WELCH_NAME

    @property
    def name(self) -> str:
        """The test in words with the reason it was chosen, for the Method section."""
        if self.pooled_sd is None:
            text = TEST_NAME
        else:
            text = (
                f"a two-sided t-test with the seed-to-seed variance pooled over all configurations "
                f"({self.df} degrees of freedom)"
            )
        return text + (f", {self.reason}" if self.reason else "")

    def p(self, a: Sequence[float], b: Sequence[float]) -> float | None:
        """Two-sided p-value of equal means; None with fewer than 2 values in either group (Welch) or
        none in either (pooled)."""
        return self.difference(a, b).p

    def difference(self, a: Sequence[float], b: Sequence[float]) -> Difference:
        """Mean of ``a`` minus mean of ``b`` with its CONFIDENCE interval and p-value by this test."""
        x = np.asarray([v for v in a if math.isfinite(v)], dtype=float)
        y = np.asarray([v for v in b if math.isfinite(v)], dtype=float)
        if not len(x) or not len(y):
            return Difference(math.nan, math.nan, math.nan, None)
        diff = float(x.mean() - y.mean())
        if self.pooled_sd is not None:
            se, df = self.pooled_sd * math.sqrt(1 / len(x) + 1 / len(y)), float(self.df)
        elif len(x) >= 2 and len(y) >= 2:
            vx, vy = float(x.var(ddof=1)) / len(x), float(y.var(ddof=1)) / len(y)
            se = math.sqrt(vx + vy)
            df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1)) if se > 0 else math.inf
        else:
            return Difference(diff, math.nan, math.nan, None)
        if se == 0:
            return Difference(diff, diff, diff, 1.0 if diff == 0 else 0.0)
        half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df)) * se
        p = float(2 * stats.t.sf(abs(diff) / se, df))
        return Difference(diff, diff - half, diff + half, p)


@cache
def hartley_critical(groups: int, df: int, alpha: float = ALPHA) -> float:
    """The critical value of Hartley's F-max test (largest over smallest of ``groups`` sample variances,
    each with ``df`` degrees of freedom) at level ``alpha``: P(F-max ≤ c) = k ∫ f(x) (F(cx) − F(x))^(k−1)
    dx over the χ²(df) density f and distribution F, solved for c (matches Hartley's tables: 39.0
    for 2 groups with 2 df, 142 for 4)."""
    from scipy import integrate, optimize

    def below(c: float) -> float:
        def inner(x: float) -> float:
            return stats.chi2.pdf(x, df) * (stats.chi2.cdf(c * x, df) - stats.chi2.cdf(x, df)) ** (groups - 1)

        with warnings.catch_warnings():  # 1 degree of freedom: the density is singular at 0
            warnings.simplefilter("ignore", integrate.IntegrationWarning)
            return groups * integrate.quad(inner, 0, math.inf, limit=200)[0] - (1 - alpha)

    return float(optimize.brentq(below, 1.0 + 1e-9, 1e9))


def comparison_for(
    groups: Sequence[Sequence[float]], spread: Callable[[float], str] = lambda sd: f"{sd:.3g}"
) -> Comparison:
    """The test two configurations are compared by: the pooled-variance t-test when at least
    ``MIN_POOLED_GROUPS`` groups have 2 or more finite values and Hartley's F-max test finds no
    difference between their variances; Welch's t-test when it does (pooling would lend the calm
    configurations' spread to the noisy ones) or too few groups are replicated. ``spread`` writes a
    standard deviation for the reason given."""
    finite = [[v for v in group if math.isfinite(v)] for group in groups]
    replicated = [group for group in finite if len(group) >= 2]
    if len(replicated) < MIN_POOLED_GROUPS:
        return Comparison(
            reason=f"since fewer than {MIN_POOLED_GROUPS} configurations have 2 or more seeds to pool"
        )
    sds = [float(np.std(group, ddof=1)) for group in replicated]
    low, high = min(sds), max(sds)
    ratio = high / low if low > 0 else (math.inf if high > 0 else 1.0)
    df_each = min(len(group) for group in replicated) - 1
    critical = hartley_critical(len(replicated), df_each)
    between = f"sd {spread(low)} to {spread(high)}"
    test = (
        f"the critical value {critical:.3g} of Hartley's F-max test (α = {ALPHA}) for {len(replicated)} "
        f"configurations with {df_each} degree{'s' if df_each > 1 else ''} of freedom each"
    )
    if ratio**2 > critical:
        fmax = "infinite" if math.isinf(ratio) else f"{ratio**2:.3g}"
        return Comparison(
            reason=f"because the configurations' variances differ: {between}, F-max {fmax} against {test}",
        )
    df = sum(len(group) - 1 for group in replicated)
    squares = sum(float(np.var(group, ddof=1)) * (len(group) - 1) for group in replicated)
    return Comparison(
        math.sqrt(squares / df),
        df,
        reason=f"because the configurations' variances do not differ significantly: {between}, F-max "
        f"{ratio**2:.3g} against {test}",
    )
