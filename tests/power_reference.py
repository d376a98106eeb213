"""Power of valstat's noise tests computed independently of valstat (scipy only), for tests:
the smallest drop in images each test detects with 80 % power, by exact enumeration."""

from __future__ import annotations

import functools

import numpy as np
from scipy import stats as sps


@functools.lru_cache(maxsize=8)
def _fisher_rejects(n: int, alpha: float) -> np.ndarray:
    """(n + 1, n + 1) booleans: scipy's two-sided Fisher test of k1/n vs k2/n rejects."""
    return np.array([[sps.fisher_exact([[a, n - a], [b, n - b]]).pvalue < alpha for b in range(n + 1)]
                     for a in range(n + 1)])


def fisher_drop_reference(n: int, p: float, alpha: float = 0.05, power: float = 0.8):
    """Smallest j: P(Fisher rejects), K1 ~ Bin(n, p), K2 ~ Bin(n, p - j/n), reaches `power`."""
    k = np.arange(n + 1)
    for j in range(1, int(np.floor(p * n + 1e-9)) + 1):
        if sps.binom.pmf(k, n, p) @ _fisher_rejects(n, alpha) @ sps.binom.pmf(k, n, p - j / n) >= power:
            return j
    return None


def midp(b: int, c: int) -> float:
    """Mid-p McNemar, the doubled one-sided mid-p: 2·(P(X < m) + ½·P(X = m)), X ~ Bin(b + c, ½),
    m = min(b, c), at most 1 (1 when b = c)."""
    d, m = b + c, min(b, c)
    if d == 0:
        return 1.0
    return min(1.0, 2 * (sps.binom.cdf(m - 1, d, 0.5) + 0.5 * sps.binom.pmf(m, d, 0.5)))


def mcnemar_drop_reference(n: int, churn: float, alpha: float = 0.05, power: float = 0.8):
    """Smallest j: P(mid-p McNemar rejects) reaches `power` when each image is lost with
    probability churn + j/n and gained with probability churn (trinomial over n images)."""
    cells = [(b, c) for b in range(n + 1) for c in range(n + 1 - b)]
    rejects = [(b, c) for b, c in cells if b + c and midp(b, c) < alpha]
    for j in range(1, int(np.floor((1 - 2 * churn) * n + 1e-9)) + 1):
        probs = [churn + j / n, churn, 1 - 2 * churn - j / n]
        got = sum(sps.multinomial.pmf([b, c, n - b - c], n, probs) for b, c in rejects)
        if got >= power:
            return j
    return None
