"""valstat.stats.paired: McNemar, Newcombe intervals, Nadeau-Bengio t, P(A > B), spread change."""

import numpy as np
from scipy.special import expit
import pytest
from scipy import stats as sps
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from valstat.errors import ValstatError
from scipy.optimize import brentq

from valstat.stats import corrected_resampled_ttest, crossed_paired_ttest, mcnemar, paired_difference_interval, probability_of_improvement
from valstat.stats.paired import (MIN_SPREAD_PAIRS, independent_difference_interval, paired_spread_change,
                                  variance_ratio_interval)


def pair(b, c, both=10, neither=5):
    """Correctness vectors with b images right only under A and c right only under B."""
    a = np.array([1] * both + [1] * b + [0] * c + [0] * neither, dtype=bool)
    bb = np.array([1] * both + [0] * b + [1] * c + [0] * neither, dtype=bool)
    return a, bb


@pytest.mark.parametrize("b,c", [(0, 0), (1, 0), (5, 1), (3, 9), (12, 12)])
def test_mcnemar_exact_p_by_hand(b, c):
    res = mcnemar(*pair(b, c))
    expected = 1.0 if b + c == 0 else min(1.0, 2 * sps.binom.cdf(min(b, c), b + c, 0.5))
    assert res["exact"] and (res["b"], res["c"]) == (b, c)
    assert res["p_value"] == pytest.approx(expected)


def test_mcnemar_chi_square_with_continuity_correction_at_25_or_more():
    res = mcnemar(*pair(20, 8))
    stat = (abs(20 - 8) - 1) ** 2 / 28
    assert not res["exact"]
    assert res["statistic"] == pytest.approx(stat)
    assert res["p_value"] == pytest.approx(sps.chi2.sf(stat, 1))


def test_mcnemar_bad_input():
    with pytest.raises(ValstatError):
        mcnemar([True, False], [True])
    with pytest.raises(ValstatError):
        mcnemar([], [])
    with pytest.raises(ValstatError):
        mcnemar([2, 0], [1, 0])


def test_newcombe_independent_published_example():
    # Newcombe (1998), Statistics in Medicine 17:873-890, Table II: 56/70 vs 48/80,
    # method 10 (score, no continuity correction): 0.0524 to 0.3339
    low, high = independent_difference_interval(56, 70, 48, 80)
    assert (low, high) == pytest.approx((0.0524, 0.3339), abs=5e-5)


def test_paired_interval_newcombe_published_examples():
    # Newcombe (1998b), Statistics in Medicine 17:2635-2650, Table II, method 10: 0.0569 to 0.3404
    assert paired_difference_interval(36, 12, 2, 0) == pytest.approx((0.0569, 0.3404), abs=5e-5)
    # a concordant epoch pair (AD - BC = 117 > N/2): with phi* the interval is about
    # (-0.212, 0.079) (hand computation with phi* = (117 - 15)/sqrt(21*9*23*7))
    assert paired_difference_interval(20, 1, 3, 6) == pytest.approx((-0.212, 0.079), abs=5e-4)


def test_paired_interval_phi_star_zone_equals_independent():
    # 0 <= AD - BC <= N/2 sets phi* = 0, where method 10 reduces to the unpaired one
    low, high = paired_difference_interval(5, 3, 4, 3)  # AD - BC = 3 <= 7.5
    ref = confint_proportions_2indep(8, 15, 9, 15, method="newcomb", compare="diff")
    assert (low, high) == pytest.approx(ref)


def test_paired_interval_with_zero_correlation_equals_independent():
    # a*d == b*c gives phi = 0, where method 10 for paired data reduces to the unpaired one
    low, high = paired_difference_interval(4, 2, 4, 2)
    ref = confint_proportions_2indep(6, 12, 8, 12, method="newcomb", compare="diff")
    assert (low, high) == pytest.approx(ref)


def test_paired_interval_coverage_by_simulation():
    rng = np.random.default_rng(11)
    # 30 images; true per-image joint distribution: both right .55, 1 only .2, 2 only .1, neither .15
    probs = [0.55, 0.2, 0.1, 0.15]
    truth = 0.2 - 0.1
    hits = 0
    sims = 600
    for counts in rng.multinomial(30, probs, size=sims):
        low, high = paired_difference_interval(*counts)
        hits += low <= truth <= high
    assert 0.91 <= hits / sims <= 0.99


def test_paired_interval_coverage_on_concordant_epoch_pairs():
    # consecutive epochs: 60 % right at both, 5 % / 2 % discordant; raw phi covered 0.916 here
    rng = np.random.default_rng(12)
    probs = [0.60, 0.05, 0.02, 0.33]
    sims = 1000
    hits = sum(low <= 0.03 <= high for low, high in
               (paired_difference_interval(*c) for c in rng.multinomial(30, probs, size=sims)))
    assert hits / sims >= 0.95 - 3 * np.sqrt(0.95 * 0.05 / sims)


def test_paired_interval_bad_counts():
    with pytest.raises(ValstatError):
        paired_difference_interval(0, 0, 0, 0)


def test_corrected_resampled_t_by_hand():
    d = np.array([0.0333, 0.0667, -0.0333, 0.1, 0.0333])
    res = corrected_resampled_ttest(d, n_train=400, n_test=30)
    se = np.sqrt((1 / 5 + 30 / 400) * d.var(ddof=1))
    t = d.mean() / se
    assert res["t"] == pytest.approx(t) and res["df"] == 4 and res["se"] == pytest.approx(se)
    assert res["p_value"] == pytest.approx(2 * sps.t.sf(abs(t), 4))
    naive_t = d.mean() / (d.std(ddof=1) / np.sqrt(5))
    assert abs(res["t"]) < abs(naive_t)


def test_corrected_resampled_t_without_spread():
    assert corrected_resampled_ttest([0.1, 0.1], 10, 5)["p_value"] == 0.0
    res = corrected_resampled_ttest([0.0, 0.0], 10, 5)
    assert np.isnan(res["t"]) and res["p_value"] == 1.0
    with pytest.raises(ValstatError):
        corrected_resampled_ttest([0.1], 10, 5)
    with pytest.raises(ValstatError):
        corrected_resampled_ttest([0.1, 0.2], 0, 5)


def test_probability_of_improvement_counts_ties_half():
    a = np.array([0.8, 0.7, 0.9, 0.6, 0.7])
    b = np.array([0.7, 0.7, 0.8, 0.7, 0.6])
    res = probability_of_improvement(a, b)
    assert res["estimate"] == pytest.approx((1 + 0.5 + 1 + 0 + 1) / 5)
    assert 0 <= res["low"] <= res["estimate"] <= res["high"] <= 1
    same = probability_of_improvement(a, a)
    assert same["estimate"] == 0.5 and same["low"] < 0.5 < same["high"]
    with pytest.raises(ValstatError):
        probability_of_improvement(a, b[:3])


def test_probability_of_improvement_interval_is_clopper_pearson_without_ties():
    # without ties the score sum is a binomial count: the interval is statsmodels' exact one
    a = np.array([0.8, 0.9, 0.6, 0.7, 0.9, 0.5, 0.8])
    b = np.array([0.7, 0.8, 0.7, 0.6, 0.8, 0.6, 0.7])
    res = probability_of_improvement(a, b)
    assert (res["low"], res["high"]) == pytest.approx(proportion_confint(5, 7, method="beta"))


def test_probability_of_improvement_never_has_zero_width():
    # every pair agrees: the percentile bootstrap gave [1, 1]; exact lower bound is 0.025**(1/5)
    res = probability_of_improvement([0.8] * 5, [0.7] * 5)
    assert res["estimate"] == 1.0 and res["high"] == 1.0
    assert res["low"] == pytest.approx(0.025 ** (1 / 5))


@pytest.mark.parametrize("pairs", [5, 10, 20])
def test_probability_of_improvement_coverage_by_simulation(pairs):
    # paired runs share a seed effect; each arm scores Binomial(30, p)/30; truth from 2e5 pairs
    rng = np.random.default_rng(pairs)

    def draw(m):
        base = rng.normal(0.7, 0.05, m)
        return rng.binomial(30, base + 0.05) / 30, rng.binomial(30, base) / 30

    a, b = draw(200_000)
    truth = np.mean((a > b) + 0.5 * (a == b))
    sims = 400
    hits = sum(res["low"] <= truth <= res["high"]
               for res in (probability_of_improvement(*draw(pairs)) for _ in range(sims)))
    # 0.95 coverage: the binomial sd of the estimate over 400 is 0.011, 3 sd below is 0.917
    assert hits / sims >= 0.917


# --------------------------------------------------------------------------- spread change

def _hc4_slope_p(x, y, lam):
    """Two-sided p of H0: Var(x) = lam·Var(y): the slope of v = x - sqrt(lam)·y on
    u = x + sqrt(lam)·y is zero, its standard error the HC4 sandwich written out in matrices
    (Cribari-Neto 2004), t on n - 2 df."""
    u, v = x + np.sqrt(lam) * y, x - np.sqrt(lam) * y
    design = np.column_stack([np.ones_like(u), u])
    bread = np.linalg.inv(design.T @ design)
    coef = bread @ design.T @ v
    resid = v - design @ coef
    hat = np.diag(design @ bread @ design.T)
    delta = np.minimum(4, len(u) * hat / design.shape[1])
    meat = design.T @ np.diag(resid**2 / (1 - hat) ** delta) @ design
    t = coef[1] / np.sqrt((bread @ meat @ bread)[1, 1])
    return 2 * sps.t.sf(abs(t), len(u) - 2)


@pytest.mark.parametrize("n,rho,scale", [(5, 0.2, 1.0), (10, 0.8, 2.0), (20, -0.3, 0.5), (40, 0.6, 1.3)])
def test_variance_ratio_interval_inverts_the_hc4_pitman_morgan_test(n, rho, scale):
    rng = np.random.default_rng(n)
    z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], n)
    x, y = scale * z[:, 0], z[:, 1]
    res = variance_ratio_interval(x, y, 0.95)
    # the ends are where the test's p-value crosses 0.05 (brentq on the test written above)
    estimate = x.var(ddof=1) / y.var(ddof=1)
    low = brentq(lambda lam: _hc4_slope_p(x, y, lam) - 0.05, estimate * 1e-4, estimate)
    high = brentq(lambda lam: _hc4_slope_p(x, y, lam) - 0.05, estimate, estimate * 1e4)
    assert res["estimate"] == pytest.approx(estimate)
    assert (res["low"], res["high"]) == pytest.approx((low, high), rel=1e-6)
    assert (res["sd_low"], res["sd_ratio"], res["sd_high"]) == pytest.approx(np.sqrt((low, estimate, high)))
    assert res["sd_x"] == pytest.approx(np.std(x, ddof=1)) and res["sd_y"] == pytest.approx(np.std(y, ddof=1))
    assert _hc4_slope_p(x, y, estimate) == pytest.approx(1.0)   # the estimate is accepted
    assert res["n"] == n and res["method"] == "pitman-morgan hc4"


def test_variance_ratio_interval_keeps_coverage_with_heavy_tails():
    """Pairs whose spread comes from rare bad runs (accuracy near 1 on 10 images): the normal
    Pitman-Morgan interval covers about 0.87 here, the HC4 one at least 0.92."""
    rng = np.random.default_rng(11)

    def draw(pairs):
        seed = rng.normal(0, 0.25, pairs)
        images = rng.normal(0, 1.5, (pairs, 10))
        a = np.mean(rng.random((pairs, 10)) < expit(3.5 + seed[:, None] + images), axis=1)
        b = np.mean(rng.random((pairs, 10)) < expit(3.8 + 2.5 * seed[:, None] + images), axis=1)
        return a, b

    big_a, big_b = draw(400_000)
    truth = big_b.var() / big_a.var()
    sims = hits = 0
    while sims < 600:
        a, b = draw(20)
        if np.ptp(a) and np.ptp(b):
            res = variance_ratio_interval(b, a)
            sims, hits = sims + 1, hits + (res["low"] <= truth <= res["high"])
    # 3 binomial sd (0.009 at 600) below 0.95 is 0.923
    assert hits / sims >= 0.923


def test_variance_ratio_interval_is_open_when_the_test_cannot_bound_it():
    res = variance_ratio_interval([1.0, 2.0, 3.0], [3.0, 1.0, 2.5])
    assert res["low"] < res["estimate"] < res["high"]
    assert res["high"] / res["low"] > 1e5          # 3 pairs, 1 df: nearly nothing is excluded


def test_variance_ratio_interval_is_symmetric_in_its_arguments():
    rng = np.random.default_rng(3)
    x, y = rng.normal(0, 2, 12), rng.normal(0, 1, 12)
    forward, backward = variance_ratio_interval(x, y), variance_ratio_interval(y, x)
    assert forward["low"] == pytest.approx(1 / backward["high"])
    assert forward["high"] == pytest.approx(1 / backward["low"])


def test_variance_ratio_interval_bad_input():
    with pytest.raises(ValstatError, match="same length"):
        variance_ratio_interval([1, 2, 3, 4], [1, 2, 3])
    with pytest.raises(ValstatError, match="at least 3"):
        variance_ratio_interval([1, 2], [2, 1])
    with pytest.raises(ValstatError, match="constant"):
        variance_ratio_interval([0.5, 0.5, 0.5], [0.1, 0.2, 0.4])
    with pytest.raises(ValstatError, match="level"):
        variance_ratio_interval([1, 2, 3], [3, 1, 2], level=1.5)


def _flags(both, b_only, a_only, neither):
    """Collapsed flags of arms A and B over pairs with the given 2x2 counts."""
    ca = np.array([1] * both + [0] * b_only + [1] * a_only + [0] * neither, dtype=bool)
    cb = np.array([1] * both + [1] * b_only + [0] * a_only + [0] * neither, dtype=bool)
    return ca, cb


def test_spread_change_collapsed_share_is_newcombes_paired_interval():
    # the 2x2 table over pairs of Newcombe (1998b) Table II, B's collapse as the first
    # proportion: (36, 12, 2, 0) -> difference 0.2, 95% interval 0.0569 to 0.3404
    ca, cb = _flags(36, 12, 2, 0)
    rng = np.random.default_rng(4)
    a, b = rng.uniform(0.3, 0.9, 50), rng.uniform(0.3, 0.9, 50)
    res = paired_spread_change(a, b, ca, cb)
    collapsed = res["collapsed"]
    assert (collapsed["a"], collapsed["b"], collapsed["both"]) == (38, 48, 36)
    assert collapsed["difference"] == pytest.approx(0.2)
    assert (collapsed["low"], collapsed["high"]) == pytest.approx((0.0569, 0.3404), abs=5e-5)
    assert res["learned_pairs"] == 0 and res["sd"] is None and res["sd_missing"] == "too_few_pairs"


def test_spread_change_ratio_uses_only_pairs_where_both_learned():
    rng = np.random.default_rng(5)
    a, b = rng.uniform(0.5, 0.9, 12), rng.uniform(0.4, 1.0, 12)
    ca, cb = _flags(1, 2, 1, 8)
    a[ca], b[cb] = 0.1, 0.1                         # collapsed runs at chance
    res = paired_spread_change(a, b, ca, cb)
    learned = ~ca & ~cb
    assert res["learned_pairs"] == 8 and res["sd_missing"] is None
    sd = res["sd"]
    assert sd["sd_a"] == pytest.approx(np.std(a[learned], ddof=1))
    assert sd["sd_b"] == pytest.approx(np.std(b[learned], ddof=1))
    assert sd["sd_ratio"] == pytest.approx(sd["sd_b"] / sd["sd_a"])
    assert sd["n"] == 8 and sd["sd_low"] < sd["sd_ratio"] < sd["sd_high"]


def test_spread_change_without_collapse_flags_uses_every_pair():
    rng = np.random.default_rng(6)
    a, b = rng.uniform(0.5, 0.9, 6), rng.uniform(0.4, 1.0, 6)
    res = paired_spread_change(a, b)
    assert res["collapsed"] is None and res["learned_pairs"] == 6 and res["sd"]["n"] == 6


def test_spread_change_says_why_there_is_no_ratio():
    a = np.array([0.5, 0.6, 0.7, 0.8, 0.6, 0.5])
    ca, cb = _flags(0, 1, 1, 4)                     # 4 learned pairs: fewer than MIN_SPREAD_PAIRS
    assert MIN_SPREAD_PAIRS == 5
    assert paired_spread_change(a, a[::-1], ca, cb)["sd_missing"] == "too_few_pairs"
    same = paired_spread_change(a, np.full(6, 0.9), np.zeros(6, bool), np.zeros(6, bool))
    assert same["sd"] is None and same["sd_missing"] == "constant" and same["learned_pairs"] == 6


def test_spread_change_bad_input():
    with pytest.raises(ValstatError, match="same length"):
        paired_spread_change([0.5, 0.6], [0.5])
    with pytest.raises(ValstatError, match="one entry per pair"):
        paired_spread_change([0.5, 0.6, 0.7], [0.5, 0.6, 0.8], [True, False], [False, False])
    with pytest.raises(ValstatError, match="booleans"):
        paired_spread_change([0.5, 0.6], [0.5, 0.7], [2, 0], [0, 0])
    with pytest.raises(ValstatError, match="both arms, or of neither"):
        paired_spread_change([0.5, 0.6], [0.5, 0.7], [True, False])


def test_crossed_paired_t_without_spread_and_on_a_bad_table():
    # every pair lost the same one image of four: no spread, a non-zero mean
    same = np.array([[1.0, 0, 0, 0], [1.0, 0, 0, 0]])
    res = crossed_paired_ttest(same)
    assert res["mean"] == 0.25 and res["se"] > 0      # the images differ, so the se is not 0
    assert crossed_paired_ttest(np.zeros((3, 4)))["p_value"] == 1.0
    with pytest.raises(ValstatError):
        crossed_paired_ttest(np.zeros((1, 4)))       # one pair: no seed part to estimate
