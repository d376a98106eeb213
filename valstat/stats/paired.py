"""Paired comparisons: McNemar on shared images, Nadeau-Bengio t across folds, P(A > B)."""

from __future__ import annotations

import numpy as np
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar as _sm_mcnemar
from statsmodels.stats.proportion import confint_proportions_2indep

from valstat.errors import UserError
from valstat.stats._checks import as_1d, as_paired_bool, check_level, check_positive_int
from valstat.stats.intervals import binomial_interval

# Below this many discordant images McNemar uses the exact binomial form.
EXACT_BELOW = 25


def mcnemar_exact_p(b, c):
    """Exact two-sided McNemar p-value, vectorised: min(1, 2·BinomCDF(min(b,c); b+c, ½)).

    b, c: discordant counts (arrays of the same shape). Where b + c = 0 the p-value is 1.
    """
    b = np.asarray(b, dtype=float)
    c = np.asarray(c, dtype=float)
    p = np.minimum(1.0, 2.0 * sps.binom.cdf(np.minimum(b, c), b + c, 0.5))
    return np.where(b + c == 0, 1.0, p)


def mcnemar(a_correct, b_correct) -> dict:
    """McNemar test for two classifiers scored on the same images.

    a_correct, b_correct: shape (images,), booleans (image classified correctly).
    b = images A gets right and B wrong; c = images A gets wrong and B right.
    Exact binomial form when b + c < 25, else chi-square with continuity correction
    (statsmodels ``contingency_tables.mcnemar``).
    Returns dict: b, c, statistic, p_value, exact.
    """
    a, b_arr = as_paired_bool(a_correct, b_correct, ("a_correct", "b_correct"))
    b = int(np.sum(a & ~b_arr))
    c = int(np.sum(~a & b_arr))
    exact = b + c < EXACT_BELOW
    table = [[int(np.sum(a & b_arr)), b], [c, int(np.sum(~a & ~b_arr))]]
    res = _sm_mcnemar(table, exact=exact, correction=True)
    p_value = 1.0 if b + c == 0 else float(res.pvalue)
    return {"b": b, "c": c, "statistic": float(res.statistic), "p_value": p_value, "exact": bool(exact)}


def independent_difference_interval(k1, n1, k2, n2, level: float = 0.95) -> tuple[float, float]:
    """Newcombe hybrid score interval for k1/n1 - k2/n2 (independent binomials).

    statsmodels ``confint_proportions_2indep(method="newcomb")`` (Newcombe 1998, method 10).
    Returns (low, high) as fractions.
    """
    level = check_level(level)
    low, high = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff", alpha=1 - level)
    return float(low), float(high)


def paired_difference_interval(n11, n10, n01, n00, level: float = 0.95) -> tuple[float, float]:
    """Newcombe's score interval for a difference of paired proportions (1998b, method 10).

    Counts of images: n11 right under both, n10 right under 1 only, n01 right under 2 only,
    n00 wrong under both. Interval for p1 - p2 = (n10 - n01)/n, built from the Wilson
    intervals of p1 and p2 with the phi correlation of the 2x2 table (phi = 0 when a
    margin is empty). Returns (low, high) as fractions.
    """
    counts = np.array([n11, n10, n01, n00], dtype=float)
    if np.any(counts < 0) or counts.sum() <= 0:
        raise UserError("paired counts must be non-negative with at least one image")
    n = counts.sum()
    p1, p2 = (n11 + n10) / n, (n11 + n01) / n
    l1, u1 = binomial_interval(n11 + n10, n, level, "wilson")
    l2, u2 = binomial_interval(n11 + n01, n, level, "wilson")
    margins = (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)
    phi = 0.0 if margins == 0 else (n11 * n00 - n10 * n01) / np.sqrt(margins)
    delta = np.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    eps = np.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    diff = p1 - p2
    return float(max(-1.0, diff - delta)), float(min(1.0, diff + eps))


def corrected_resampled_ttest(differences, n_train, n_test) -> dict:
    """Nadeau & Bengio (2003) corrected resampled t-test across J folds/resamples.

    differences: shape (J,), score of A minus score of B per fold (same folds for both).
    n_train, n_test: images used for training and for testing in each fold.
    t = mean / sqrt((1/J + n_test/n_train) · s²), s² the ddof=1 variance, df = J - 1,
    two-sided p. When s² = 0, t is ±inf (p = 0) for a non-zero mean, NaN (p = 1) otherwise.
    Returns dict: t, df, p_value, mean, se.
    """
    d = as_1d(differences, "differences", min_len=2)
    n_train = check_positive_int(n_train, "n_train")
    n_test = check_positive_int(n_test, "n_test")
    J = d.size
    mean = float(d.mean())
    se = float(np.sqrt((1.0 / J + n_test / n_train) * d.var(ddof=1)))
    if se == 0:
        t = np.nan if mean == 0 else float(np.copysign(np.inf, mean))
        p = 1.0 if mean == 0 else 0.0
    else:
        t = mean / se
        p = float(2 * sps.t.sf(abs(t), J - 1))
    return {"t": float(t), "df": J - 1, "p_value": p, "mean": mean, "se": se}


def probability_of_improvement(a, b, n_boot: int = 10000, seed: int = 0, level: float = 0.95) -> dict:
    """P(A > B) over paired runs, ties counted one half, with a percentile bootstrap interval.

    a, b: shape (runs,), per-run scores of A and B, paired by position (same seed/fold).
    estimate = mean of 1[a > b] + ½·1[a = b]; the interval resamples pairs.
    Returns dict: estimate, low, high, n, level.
    """
    level = check_level(level)
    a = as_1d(a, "a")
    b = as_1d(b, "b")
    if a.size != b.size:
        raise UserError(f"a and b must be paired (same length), got {a.size} and {b.size}")
    n_boot = check_positive_int(n_boot, "n_boot")
    score = (a > b) + 0.5 * (a == b)
    idx = np.random.default_rng(seed).integers(0, score.size, size=(n_boot, score.size))
    boot = score[idx].mean(axis=1)
    low, high = np.percentile(boot, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return {"estimate": float(score.mean()), "low": float(low), "high": float(high), "n": int(a.size), "level": level}
