"""Seed noise, stated: 95% confidence intervals for an effect (paired differences) and for the gap between two rows,
and the test of whether an effect differs between the levels of another axis (an interaction).

An interval needs a spread, so it needs at least two values: an effect measured on one pair, or a row with one
finished seed, has no interval, and nothing is called beyond noise on its strength. A trivial baseline (copy-last-frame,
the blank frame) is exact on its test set: its noise is zero.

:func:`levels_differ` compares the mean of several groups of values (an effect's paired differences, grouped by the
level of another axis) without assuming they share a variance: for two groups Welch's t interval of the difference of
their means (:func:`gap_interval`), for three or more Welch's heteroscedastic one-way test (Welch 1951), each at
:data:`CONFIDENCE`. Every group needs two values or more: with one value in a group its spread is unknown, and the
test is not made (``testable`` False) rather than made on no noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def t_quantile(dof: float) -> float:
    """The two-sided Student-t quantile for :data:`CONFIDENCE` at ``dof`` degrees of freedom."""
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, dof))


def mean_interval(samples: Sequence[float]) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``samples`` and its t interval; low and high are NaN for fewer than 2."""
    values = np.asarray(samples, dtype=float)
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = t_quantile(len(values) - 1) * float(values.std(ddof=1)) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def gap_interval(
    mean_a: float, std_a: float, n_a: int, mean_b: float, std_b: float, n_b: int
) -> tuple[float, float, float]:
    """``(a - b, low, high)``: Welch's interval for the difference of two means from their sample standard
    deviations and counts. A side with ``std`` 0 (an exact baseline) adds no noise; NaN bounds when a side with
    noise has fewer than 2 values."""
    gap = mean_a - mean_b
    parts = [(std, n) for std, n in ((std_a, n_a), (std_b, n_b)) if not (std == 0 and n >= 1)]
    if any(n < 2 or not math.isfinite(std) for std, n in parts):
        return gap, math.nan, math.nan
    if not parts:
        return gap, gap, gap
    variances = [std**2 / n for std, n in parts]
    se = math.sqrt(sum(variances))
    if se == 0:
        return gap, gap, gap
    dof = se**4 / sum(v**2 / (n - 1) for v, (_, n) in zip(variances, parts, strict=True))
    half = t_quantile(dof) * se
    return gap, gap - half, gap + half


def excludes_zero(low: float, high: float) -> bool:
    """Whether an interval lies wholly on one side of zero (False for a missing interval)."""
    return math.isfinite(low) and math.isfinite(high) and (low > 0 or high < 0)


NEGLIGIBLE = 1e-9
"""Relative size below which a difference between exact (noise-free) groups is float rounding, not a difference."""


@dataclass(frozen=True)
class LevelsTest:
    """Whether the means of several groups differ beyond noise (:func:`levels_differ`)."""

    test: str  # "welch t" (two groups), "welch anova" (three or more), "" when not testable
    testable: bool  # every group has two values or more
    differs: bool  # testable, and the groups' means differ beyond noise at CONFIDENCE
    difference: float = math.nan  # two groups: the second group's mean minus the first's
    low: float = math.nan  # two groups: Welch's interval of the difference
    high: float = math.nan
    statistic: float = math.nan  # t (two groups) or F (three or more)
    dof: float = math.nan  # Welch's degrees of freedom (the denominator's, for F)
    p: float = math.nan  # two-sided p-value


def levels_differ(groups: Sequence[Sequence[float]]) -> LevelsTest:
    """Whether the means of ``groups`` (two or more, each two values or more) differ beyond noise, their variances not
    assumed equal.

    Two groups: Welch's t interval of ``mean(groups[1]) - mean(groups[0])`` (:func:`gap_interval`); they differ when it
    excludes zero. Three or more: Welch's one-way test, F = [sum w_i (m_i - m)^2 / (k - 1)] / [1 + 2 (k - 2) / (k^2 - 1)
    sum h_i], with w_i = n_i / s_i^2, m = sum w_i m_i / sum w_i, h_i = (1 - w_i / sum w_i)^2 / (n_i - 1), on k - 1 and
    (k^2 - 1) / (3 sum h_i) degrees of freedom; they differ when p < 1 - CONFIDENCE. Groups without any spread (exact
    values) differ when their means do, beyond float rounding (:data:`NEGLIGIBLE`)."""
    values = [np.asarray(group, dtype=float) for group in groups]
    if len(values) < 2 or any(len(group) < 2 for group in values):
        return LevelsTest("", testable=False, differs=False)
    means = np.array([group.mean() for group in values])
    stds = np.array([group.std(ddof=1) for group in values])
    counts = np.array([len(group) for group in values], dtype=float)
    scale = max(1.0, float(np.abs(means).max()))
    negligible = NEGLIGIBLE * scale
    if len(values) == 2:
        gap, low, high = gap_interval(
            float(means[1]), float(stds[1]), len(values[1]), float(means[0]), float(stds[0]), len(values[0])
        )
        se = math.sqrt(float((stds**2 / counts).sum()))
        if se <= negligible:
            differs = abs(gap) > negligible
            return LevelsTest("welch t", True, differs, gap, gap, gap, p=0.0 if differs else 1.0)
        dof = se**4 / float(((stds**2 / counts) ** 2 / (counts - 1)).sum())
        statistic = float(gap / se)
        p = float(2 * stats.t.sf(abs(statistic), dof))
        return LevelsTest("welch t", True, excludes_zero(low, high), gap, low, high, statistic, dof, p)
    k = len(values)
    if float((stds**2 / counts).max()) <= negligible**2:
        differs = float(means.max() - means.min()) > negligible
        return LevelsTest("welch anova", True, differs, p=0.0 if differs else 1.0)
    variances = np.maximum(stds**2, negligible**2)  # a group without spread weighs as a very precise one
    weights = counts / variances
    grand = float((weights * means).sum() / weights.sum())
    shares = (1 - weights / weights.sum()) ** 2 / (counts - 1)
    numerator = float((weights * (means - grand) ** 2).sum()) / (k - 1)
    statistic = float(numerator / (1 + 2 * (k - 2) / (k**2 - 1) * float(shares.sum())))
    dof = (k**2 - 1) / (3 * float(shares.sum()))
    p = float(stats.f.sf(statistic, k - 1, dof))
    return LevelsTest("welch anova", True, p < 1 - CONFIDENCE, statistic=statistic, dof=dof, p=p)
