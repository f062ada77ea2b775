"""Seed noise, stated: 95% confidence intervals for an effect (paired differences) and for the gap between two rows.

An interval needs a spread, so it needs at least two values: an effect measured on one pair, or a row with one
finished seed, has no interval, and nothing is called beyond noise on its strength. A trivial baseline (copy-last-frame,
the blank frame) is exact on its test set: its noise is zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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
