"""Korn & Graubard's (1998) interval for a mean accuracy, computed independently of valstat
(statsmodels' Clopper-Pearson with a fractional count), for tests."""

from __future__ import annotations

import numpy as np
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint


def korn_graubard(estimate: float, se: float, df: float, scored: float, level: float = 0.95):
    """Clopper-Pearson on estimate·n of n, n = min(scored, estimate(1 - estimate)/se²)
    (scored where that is undefined) times (z/t_df)²."""
    n = scored
    if se > 0 and 0 < estimate < 1:
        n = min(scored, estimate * (1 - estimate) / se ** 2)
    if np.isfinite(df):
        n *= (sps.norm.ppf((1 + level) / 2) / sps.t.ppf((1 + level) / 2, df)) ** 2
    low, high = proportion_confint(estimate * n, n, alpha=1 - level, method="beta")
    return float(low), float(high)
