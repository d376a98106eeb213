"""Paired comparisons: McNemar on shared images, Nadeau-Bengio t across folds, a crossed t on one
shared split's per-image differences, P(A > B), and the paired change in run-to-run spread (collapsed share, Pitman-Morgan ratio of standard deviations)."""

from __future__ import annotations

import numpy as np
from scipy import stats as sps
from scipy.optimize import brentq
from statsmodels.stats.contingency_tables import mcnemar as _sm_mcnemar
from statsmodels.stats.proportion import confint_proportions_2indep

from valstat.errors import ValstatError
from valstat.stats._checks import as_1d, as_paired_bool, check_level, check_positive_int
from valstat.stats.intervals import binomial_interval, crossed_mean_interval

# Below this many discordant images McNemar uses the exact binomial form.
EXACT_BELOW = 25
# Below this many pairs in which both runs learned, their spread ratio is not estimated.
MIN_SPREAD_PAIRS = 5


def mcnemar_exact_p(b, c):
    """Exact two-sided McNemar p-value, vectorised: min(1, 2·BinomCDF(min(b,c); b+c, ½)).

    b, c: discordant counts (arrays of the same shape). Where b + c = 0 the p-value is 1.
    """
    b = np.asarray(b, dtype=float)
    c = np.asarray(c, dtype=float)
    p = np.minimum(1.0, 2.0 * sps.binom.cdf(np.minimum(b, c), b + c, 0.5))
    return np.where(b + c == 0, 1.0, p)


def mcnemar_midp_p(b, c):
    """Mid-p McNemar p-value (Fagerland, Lydersen & Laake 2013), vectorised:
    min(1, 2·[BinomCDF(m; b+c, ½) - ½·BinomPMF(m; b+c, ½)]), m = min(b, c); 1 where b + c = 0.

    valstat's test of one epoch-to-epoch move with per-image predictions. Its size given the
    discordant count can pass alpha (0.077 at 16 discordant images), but over the designs of
    the calibration table it stays below (size of a move with no real change there); it has
    more power than the exact test (a 15-point drop on 30 images: 0.47 against 0.29).
    """
    b = np.asarray(b, dtype=float)
    c = np.asarray(c, dtype=float)
    m, d = np.minimum(b, c), b + c
    p = np.minimum(1.0, 2.0 * (sps.binom.cdf(m, d, 0.5) - 0.5 * sps.binom.pmf(m, d, 0.5)))
    return np.where(d == 0, 1.0, p)


def mcnemar(a_correct, b_correct) -> dict:
    """McNemar test for two classifiers scored on the same images.

    a_correct, b_correct: shape (images,), booleans (image classified correctly).
    b = images A gets right and B wrong; c = images A gets wrong and B right.
    Exact binomial form when b + c < 25, else chi-square with continuity correction
    (statsmodels ``contingency_tables.mcnemar``), for two arms on the same images. A single
    epoch-to-epoch move is tested with the mid-p form instead (mcnemar_midp_p); the largest
    of all moves, picked by scanning, with this exact form and a Bonferroni adjustment.
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
    intervals of p1 and p2 with Newcombe's continuity-corrected correlation phi*: with
    A, B, C, D = n11, n10, n01, n00, N = n and margins e, f, g, h,
    phi* = (AD - BC - N/2)/sqrt(efgh) when AD - BC > N/2, 0 when 0 <= AD - BC <= N/2,
    (AD - BC)/sqrt(efgh) when AD - BC < 0, and 0 when a margin is empty.
    Returns (low, high) as fractions.
    """
    counts = np.array([n11, n10, n01, n00], dtype=float)
    if np.any(counts < 0) or counts.sum() <= 0:
        raise ValstatError("paired counts must be non-negative with at least one image")
    n = counts.sum()
    p1, p2 = (n11 + n10) / n, (n11 + n01) / n
    l1, u1 = binomial_interval(n11 + n10, n, level, "wilson")
    l2, u2 = binomial_interval(n11 + n01, n, level, "wilson")
    margins = (n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00)
    cross = float(n11 * n00 - n10 * n01)
    if cross >= 0:
        cross = max(0.0, cross - n / 2)
    phi = 0.0 if margins == 0 else cross / np.sqrt(margins)
    delta = np.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    eps = np.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    diff = p1 - p2
    return float(max(-1.0, diff - delta)), float(min(1.0, diff + eps))


def _two_sided_t(mean: float, se: float, df: float) -> dict:
    """{t, p_value} of mean/se on df degrees of freedom; with se = 0, t is ±inf (p = 0) for a
    non-zero mean, NaN (p = 1) otherwise."""
    if se == 0:
        return {"t": np.nan if mean == 0 else float(np.copysign(np.inf, mean)),
                "p_value": 1.0 if mean == 0 else 0.0}
    t = mean / se
    return {"t": float(t), "p_value": float(2 * sps.t.sf(abs(t), df))}


def corrected_resampled_ttest(differences, n_train, n_test) -> dict:
    """Nadeau & Bengio (2003) corrected resampled t-test across J folds/resamples.

    differences: shape (J,), score of A minus score of B per fold (same folds for both).
    n_train, n_test: images used for training and for testing in each fold.
    t = mean / sqrt((1/J + n_test/n_train) · s²), s² the ddof=1 variance, df = J - 1,
    two-sided p. The n_test/n_train term is justified when each resample draws its own
    split; where folds are shared across seeds it is only approximate (the report says so). When s² = 0, t is ±inf (p = 0) for a non-zero mean, NaN (p = 1) otherwise.
    Returns dict: t, df, p_value, mean, se.
    """
    d = as_1d(differences, "differences", min_len=2)
    n_train = check_positive_int(n_train, "n_train")
    n_test = check_positive_int(n_test, "n_test")
    J = d.size
    mean = float(d.mean())
    se = float(np.sqrt((1.0 / J + n_test / n_train) * d.var(ddof=1)))
    return {**_two_sided_t(mean, se, J - 1), "df": J - 1, "mean": mean, "se": se}


def crossed_paired_ttest(differences) -> dict:
    """t-test of A = B where every pair scored the same validation images (one shared split).

    differences: shape (pairs, images), correct_a - correct_b per pair (seed) and image, in
    {-1, 0, 1}; the same images in the same column order for every pair. The arms may find
    different images hard (an arm x image interaction), which more seeds never average out, so
    the seeds alone are not the sample: the mean difference's standard error comes from the
    two-way crossed ANOVA of the table (crossed_mean_interval: seed, image and residual parts,
    Satterthwaite df), and the test holds for new seeds on new images. When the se is 0, t is
    ±inf (p = 0) for a non-zero mean, NaN (p = 1) otherwise.
    Returns dict: t, df (float), p_value, mean, se.
    """
    d = np.asarray(differences, dtype=float)
    crossed = crossed_mean_interval(d)
    mean, se, df = crossed["estimate"], crossed["se"], crossed["df"]
    return {**_two_sided_t(mean, se, df), "df": float(df), "mean": float(mean), "se": float(se)}


def score_interval(k, n, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson (beta-quantile) interval for a mean of n scores in [0, 1] summing to k.

    k may be fractional (wins + ties/2): low = Beta(k, n - k + 1) quantile at (1 - level)/2
    (0 at k = 0), high = Beta(k + 1, n - k) quantile at (1 + level)/2 (1 at k = n). A score in
    [0, 1] with mean theta has variance at most theta(1 - theta), the binomial one, so the
    interval is conservative with ties; it never has zero width.
    """
    level = check_level(level)
    alpha = 1 - level
    low = 0.0 if k <= 0 else float(sps.beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k >= n else float(sps.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def probability_of_improvement(a, b, level: float = 0.95) -> dict:
    """P(A > B) over paired runs, ties counted one half, with a Clopper-Pearson-type interval.

    a, b: shape (runs,), per-run scores of A and B, paired by position (same seed/fold).
    estimate = mean of s = 1[a > b] + ½·1[a = b]; the interval is score_interval on the
    sum of s over the n pairs (pairs are the independent units). Simulated coverage at
    5-20 pairs is in benchmarks/RESULTS.md (calibration); a percentile bootstrap
    under-covers there and has zero width when every pair agrees.
    Returns dict: estimate, low, high, n, level, method ("clopper-pearson on wins + ties/2").
    """
    level = check_level(level)
    a = as_1d(a, "a")
    b = as_1d(b, "b")
    if a.size != b.size:
        raise ValstatError(f"a and b must be paired (same length), got {a.size} and {b.size}")
    score = (a > b) + 0.5 * (a == b)
    low, high = score_interval(float(score.sum()), score.size, level)
    return {"estimate": float(score.mean()), "low": low, "high": high, "n": int(a.size), "level": level,
            "method": "clopper-pearson on wins + ties/2"}


def _hc4_slope_t(v, u):
    """t of the least-squares slope of v on u (with intercept) over the last axis, on the HC4
    heteroscedasticity-consistent standard error (Cribari-Neto 2004: residual² /
    (1 - h)^min(4, n·h/2), h the leverage); 0 where the slope is 0. v, u: shape (..., n)."""
    n = u.shape[-1]
    uc = u - u.mean(axis=-1, keepdims=True)
    vc = v - v.mean(axis=-1, keepdims=True)
    sxx = np.sum(uc * uc, axis=-1, keepdims=True)
    slope = np.sum(uc * vc, axis=-1, keepdims=True) / sxx
    leverage = 1 / n + uc * uc / sxx
    weight = (vc - slope * uc) ** 2 / (1 - leverage) ** np.minimum(4.0, n * leverage / 2)
    se = np.sqrt(np.sum(uc * uc * weight, axis=-1)) / sxx[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(slope[..., 0] == 0, 0.0, slope[..., 0] / se)


#: The variance-ratio interval searches log(ratio / estimate) within +-RATIO_SPAN; an end
#: still accepted there is open (0 or infinity).
RATIO_SPAN, RATIO_GRID = 12.0, 481


def variance_ratio_interval(x, y, level: float = 0.95) -> dict:
    """Interval for Var(x) / Var(y) of paired samples: the Pitman-Morgan test made robust.

    x, y: shape (pairs,), paired by position (e.g. final accuracies of two arms on the same
    seed and split); at least 3 pairs, neither constant. Var(x) = lambda·Var(y) exactly when
    u = x + sqrt(lambda)·y and v = x - sqrt(lambda)·y are uncorrelated (Pitman 1939, Morgan
    1939). Pitman and Morgan test that correlation as if (x, y) were bivariate normal; with
    heavy tails, as accuracies near 1 on few images have, that test rejects too often
    (Wilcox 2015): coverage 0.86-0.89 in valstat's calibration near accuracy 1. Here the slope of
    v on u is tested with the HC4 standard error against t on n - 2 df, and the interval is
    every lambda the test accepts (the hull of a grid over log lambda, ends found by brentq).
    It always holds the estimate F = s_x²/s_y² and is the same for (y, x) with 1/lambda.
    Returns dict: estimate (F), low, high (variance ratio; 0 / inf when the test cannot bound
    it), sd_ratio, sd_low, sd_high (their square roots, the ratio of standard deviations),
    sd_x, sd_y (ddof=1, units of x and y), r (correlation of x and y), n, level, method
    ("pitman-morgan hc4").
    """
    level = check_level(level)
    x = as_1d(x, "x", min_len=3)
    y = as_1d(y, "y", min_len=3)
    if x.size != y.size:
        raise ValstatError(f"x and y must be paired (same length), got {x.size} and {y.size}")
    sx, sy = float(x.var(ddof=1)), float(y.var(ddof=1))
    if sx == 0 or sy == 0:
        raise ValstatError("a variance ratio needs both samples to vary (one is constant)")
    n = x.size
    f = sx / sy
    crit = float(sps.t.ppf((1 + level) / 2, n - 2))

    def excess(log_shift):
        root = np.sqrt(f * np.exp(np.asarray(log_shift, dtype=float)))[..., None]
        return np.abs(_hc4_slope_t(x - root * y, x + root * y)) - crit

    grid = np.linspace(-RATIO_SPAN, RATIO_SPAN, RATIO_GRID)
    accepted = np.flatnonzero(excess(grid) <= 0)
    first, last = accepted[0], accepted[-1]
    low = 0.0 if first == 0 else f * np.exp(brentq(excess, grid[first - 1], grid[first]))
    high = np.inf if last == grid.size - 1 else f * np.exp(brentq(excess, grid[last], grid[last + 1]))
    r = float(np.clip(np.corrcoef(x, y)[0, 1], -1.0, 1.0))
    return {"estimate": f, "low": float(low), "high": float(high), "sd_ratio": float(np.sqrt(f)),
            "sd_low": float(np.sqrt(low)), "sd_high": float(np.sqrt(high)),
            "sd_x": float(np.sqrt(sx)), "sd_y": float(np.sqrt(sy)), "r": r, "n": int(n), "level": level,
            "method": "pitman-morgan hc4"}


def paired_spread_change(a, b, collapsed_a=None, collapsed_b=None, level: float = 0.95) -> dict:
    """How arm B changed arm A's run-to-run spread, over runs paired on seed and split.

    a, b: shape (pairs,), final accuracies (fractions) of A and B, paired by position.
    collapsed_a, collapsed_b: shape (pairs,), booleans (the run ended predicting one class for
    every image), or None when that is unknown (no per-image predictions).
    Spread is split in two honest parts, since no single spread interval stays calibrated when
    some runs collapse: (1) the share of runs that collapsed, B minus A, with Newcombe's paired
    interval over the 2x2 table of pairs (paired_difference_interval); (2) among pairs in which
    both runs learned (neither collapsed; every pair when collapse is unknown), the ratio of
    standard deviations of final accuracy sd_B / sd_A with the robust Pitman-Morgan interval
    (variance_ratio_interval), given only from MIN_SPREAD_PAIRS such pairs on and when both arms
    vary. Simulated coverage of both intervals (10 and 20 pairs, with and without collapse, own
    and shared splits) is in benchmarks/RESULTS.md (calibration). Returns dict: pairs, level, collapsed (None when unknown, else {a, b, both, difference
    (fraction of pairs), low, high, method}), learned_pairs, sd (None, else
    variance_ratio_interval(b, a) over the learned pairs, its sd_x and sd_y named sd_b and
    sd_a), sd_missing (None, "too_few_pairs" or "constant").
    """
    level = check_level(level)
    a = as_1d(a, "a")
    b = as_1d(b, "b")
    if a.size != b.size:
        raise ValstatError(f"a and b must be paired (same length), got {a.size} and {b.size}")
    out = {"pairs": int(a.size), "level": level, "collapsed": None, "learned_pairs": int(a.size),
           "sd": None, "sd_missing": None}
    learned = np.ones(a.size, dtype=bool)
    if (collapsed_a is None) != (collapsed_b is None):
        raise ValstatError("give the collapsed flags of both arms, or of neither (collapse unknown)")
    if collapsed_a is not None:
        ca, cb = as_paired_bool(collapsed_a, collapsed_b, ("collapsed_a", "collapsed_b"))
        if ca.size != a.size:
            raise ValstatError(f"collapsed flags must have one entry per pair ({a.size}), got {ca.size}")
        low, high = paired_difference_interval(int(np.sum(cb & ca)), int(np.sum(cb & ~ca)),
                                               int(np.sum(~cb & ca)), int(np.sum(~cb & ~ca)), level)
        out["collapsed"] = {"a": int(ca.sum()), "b": int(cb.sum()), "both": int(np.sum(ca & cb)),
                            "difference": float(cb.mean() - ca.mean()), "low": low, "high": high,
                            "method": "newcombe paired (method 10)"}
        learned = ~ca & ~cb
        out["learned_pairs"] = int(learned.sum())
    if out["learned_pairs"] < MIN_SPREAD_PAIRS:
        out["sd_missing"] = "too_few_pairs"
    elif np.ptp(a[learned]) == 0 or np.ptp(b[learned]) == 0:
        out["sd_missing"] = "constant"
    else:
        ratio = variance_ratio_interval(b[learned], a[learned], level)
        sd_b, sd_a = ratio.pop("sd_x"), ratio.pop("sd_y")
        out["sd"] = {"sd_a": sd_a, "sd_b": sd_b, **ratio}
    return out
