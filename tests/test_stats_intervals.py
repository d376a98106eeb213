"""valstat.stats.intervals against published values, scipy/statsmodels, and hand formulas."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from valstat.errors import ValstatError
from valstat.stats import (binomial_interval, collapse_mean_interval, crossed_mean_interval, effective_size_bounds,
                           shared_image_covariance,
                           mean_interval)


Z95 = 1.959963984540054  # Phi^-1(0.975)
METHODS = ["wilson", "clopper-pearson", "jeffreys", "agresti-coull", "wald"]


def wilson_by_hand(k, n, z=Z95):
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return centre - half, centre + half


def test_clopper_pearson_matches_scipy_documentation():
    # SciPy docs, scipy.stats.binomtest(...).proportion_ci(): 7 of 50 at 95% -> (0.058192, 0.267396)
    low, high = binomial_interval(7, 50, method="clopper-pearson")
    assert low == pytest.approx(0.058192, abs=1e-6)
    assert high == pytest.approx(0.267396, abs=1e-6)


@pytest.mark.parametrize("k,n", [(0, 30), (1, 30), (24, 30), (30, 30), (7, 50)])
def test_wilson_matches_formula(k, n):
    assert binomial_interval(k, n) == pytest.approx(wilson_by_hand(k, n), abs=1e-12)


def test_wilson_at_24_of_30_is_about_63_to_90_percent():
    # GUIDE §1: "A 95% interval for one model's accuracy at 24/30 is about 63%-90% (Wilson)"
    low, high = binomial_interval(24, 30)
    assert low == pytest.approx(0.63, abs=0.01) and high == pytest.approx(0.90, abs=0.01)


@pytest.mark.parametrize("k", [0, 1, 5, 29, 30])
def test_jeffreys_is_beta_quantiles_clamped(k):
    n = 30
    low, high = binomial_interval(k, n, method="jeffreys")
    exp_low = 0.0 if k == 0 else sps.beta.ppf(0.025, k + 0.5, n - k + 0.5)
    exp_high = 1.0 if k == n else sps.beta.ppf(0.975, k + 0.5, n - k + 0.5)
    assert (low, high) == pytest.approx((exp_low, exp_high), abs=1e-10)


@pytest.mark.parametrize("k,n", [(0, 30), (3, 30), (24, 30), (30, 30)])
def test_agresti_coull_and_wald_by_hand(k, n):
    n_t = n + Z95**2
    p_t = (k + Z95**2 / 2) / n_t
    half = Z95 * np.sqrt(p_t * (1 - p_t) / n_t)
    expected = (max(0.0, p_t - half), min(1.0, p_t + half))
    assert binomial_interval(k, n, method="agresti-coull") == pytest.approx(expected, abs=1e-12)
    p = k / n
    half = Z95 * np.sqrt(p * (1 - p) / n)
    assert binomial_interval(k, n, method="wald") == pytest.approx((max(0, p - half), min(1, p + half)), abs=1e-12)


def test_wald_has_zero_width_at_k_equals_n():
    assert binomial_interval(30, 30, method="wald") == (1.0, 1.0)


def test_vectorised_over_k():
    k = np.arange(31)
    low, high = binomial_interval(k, 30, level=0.9)
    assert low.shape == high.shape == (31,)
    for i in (0, 13, 30):
        assert (low[i], high[i]) == pytest.approx(wilson_by_hand(i, 30, sps.norm.ppf(0.95)), abs=1e-12)


def test_method_names_accept_underscores():
    assert binomial_interval(3, 10, method="clopper_pearson") == binomial_interval(3, 10, method="clopper-pearson")


@pytest.mark.parametrize("kwargs", [dict(k=31, n=30), dict(k=-1, n=30), dict(k=1, n=0), dict(k=1.5, n=30),
                                    dict(k=1, n=30, level=1.0), dict(k=1, n=30, level=0),
                                    dict(k=1, n=30, method="bogus"), dict(k=[], n=30)])
def test_bad_input_is_a_user_error(kwargs):
    with pytest.raises(ValstatError):
        binomial_interval(**kwargs)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 400), frac=st.floats(0, 1), method=st.sampled_from(METHODS),
       level=st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_interval_properties(n, frac, method, level):
    k = int(round(frac * n))
    low, high = binomial_interval(k, n, level, method)
    assert 0.0 <= low <= high <= 1.0
    # holds for all five: Wald is symmetric about k/n, Agresti-Coull contains Wilson, which
    # contains k/n; Clopper-Pearson and clamped Jeffreys contain it by construction.
    assert low - 1e-12 <= k / n <= high + 1e-12
    low2, high2 = binomial_interval(2 * k, 2 * n, level, method)
    assert high2 - low2 <= high - low + 1e-12  # narrower (never wider) with twice the images


def test_mean_interval_t_matches_scipy():
    values = np.array([0.7, 0.733, 0.8, 0.633, 0.767, 0.7])
    res = mean_interval(values, level=0.9)
    low, high = sps.t.interval(0.9, values.size - 1, loc=values.mean(), scale=sps.sem(values))
    assert (res["low"], res["high"]) == pytest.approx((low, high))
    assert res["sd"] == pytest.approx(values.std(ddof=1))
    half = sps.t.ppf(0.95, 5) * values.std(ddof=1) * np.sqrt(1 + 1 / 6)
    assert (res["pi_low"], res["pi_high"]) == pytest.approx((values.mean() - half, values.mean() + half))
    assert res["method"] == "t" and res["n"] == 6 and res["note"] == "" and res["n_units"] is None


def test_bca_equals_scipy_bootstrap():
    values = np.random.default_rng(3).gamma(2.0, size=40)
    res = mean_interval(values, method="bca", n_boot=2000, seed=5)
    ref = sps.bootstrap((values,), np.mean, n_resamples=2000, method="BCa", rng=np.random.default_rng(5))
    assert (res["low"], res["high"]) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))
    assert res["method"] == "bca"


def test_percentile_close_to_scipy_percentile():
    values = np.random.default_rng(4).normal(0.7, 0.05, size=60)
    res = mean_interval(values, method="percentile", n_boot=10000)
    ref = sps.bootstrap((values,), np.mean, n_resamples=10000, method="percentile", rng=np.random.default_rng(9))
    assert res["low"] == pytest.approx(ref.confidence_interval.low, abs=0.002)
    assert res["high"] == pytest.approx(ref.confidence_interval.high, abs=0.002)


def test_bca_on_constant_data_falls_back_and_says_so():
    res = mean_interval(np.full(10, 1.0), method="bca")
    assert res["method"] == "percentile" and "fell back" in res["note"]
    assert res["low"] == res["high"] == 1.0


def test_units_t_uses_unit_means():
    values = np.array([0.6, 0.7, 0.8, 0.9, 0.5, 0.55])
    units = np.array([1, 1, 2, 2, 3, 3])
    res = mean_interval(values, units=units)
    means = np.array([0.65, 0.85, 0.525])
    low, high = sps.t.interval(0.95, 2, loc=means.mean(), scale=sps.sem(means))
    assert (res["estimate"], res["low"], res["high"]) == pytest.approx((means.mean(), low, high))
    assert res["n_units"] == 3 and res["n"] == 6


def test_hierarchical_bca_with_singleton_units_matches_plain_bca():
    values = np.random.default_rng(6).normal(size=50)
    plain = mean_interval(values, method="bca", n_boot=4000)
    nested = mean_interval(values, method="bca", units=np.arange(50), n_boot=4000)
    assert (nested["low"], nested["high"]) == pytest.approx((plain["low"], plain["high"]), abs=0.02)


def test_hierarchical_bootstrap_respects_clustering():
    rng = np.random.default_rng(7)
    units = np.repeat(np.arange(8), 10)
    values = rng.normal(0, 1, 8)[units] + rng.normal(0, 0.1, units.size)
    naive = mean_interval(values, method="percentile")
    nested = mean_interval(values, method="percentile", units=units)
    t_units = mean_interval(values, method="t", units=units)
    assert nested["high"] - nested["low"] > 2 * (naive["high"] - naive["low"])
    assert nested["high"] - nested["low"] == pytest.approx(t_units["high"] - t_units["low"], rel=0.35)


def test_unbalanced_units_run():
    values = np.array([0.5, 0.6, 0.7, 0.8, 0.9, 0.4, 0.45])
    res = mean_interval(values, method="bca", units=[1, 1, 1, 2, 2, 3, 3], n_boot=500)
    assert res["low"] <= res["estimate"] <= res["high"]


def test_single_value_has_no_interval():
    res = mean_interval([0.8])
    assert np.isnan(res["low"]) and np.isnan(res["sd"]) and "no interval" in res["note"]


@pytest.mark.parametrize("kwargs", [dict(values=[]), dict(values=[1, np.nan]), dict(values=[1, 2], method="x"),
                                    dict(values=[1, 2], level=2), dict(values=[1, 2], units=[1]),
                                    dict(values=[1, 2], n_boot=0)])
def test_mean_interval_bad_input(kwargs):
    with pytest.raises(ValstatError):
        mean_interval(**kwargs)


def test_crossed_mean_interval_from_statsmodels_anova():
    # mean squares from statsmodels' two-way ANOVA; Var(mean) = (MS_r + MS_c - MS_e)/(RC),
    # Satterthwaite df on the three mean squares
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    rng = np.random.default_rng(4)
    table = 0.7 + rng.normal(0, 0.05, (4, 1)) + rng.normal(0, 0.03, (1, 6)) + rng.normal(0, 0.02, (4, 6))
    frame = pd.DataFrame({"y": table.ravel(), "r": np.repeat(np.arange(4), 6), "c": np.tile(np.arange(6), 4)})
    aov = anova_lm(smf.ols("y ~ C(r) + C(c)", frame).fit())
    ms = aov["mean_sq"].to_numpy()
    dfs = aov["df"].to_numpy()
    var = (ms[0] + ms[1] - ms[2]) / 24
    df = (ms[0] + ms[1] - ms[2]) ** 2 / (ms[0] ** 2 / dfs[0] + ms[1] ** 2 / dfs[1] + ms[2] ** 2 / dfs[2])
    half = sps.t.ppf(0.975, df) * np.sqrt(var)
    res = crossed_mean_interval(table)
    assert (res["low"], res["high"], res["df"]) == pytest.approx((table.mean() - half, table.mean() + half, df))
    # one new run (new row and column level, one cell): s_r (1 + 1/R) + s_c (1 + 1/C) + s_e (1 + 1/RC)
    s_r, s_c, s_e = (ms[0] - ms[2]) / 6, (ms[1] - ms[2]) / 4, ms[2]
    assert min(s_r, s_c) > 0
    coef = np.array([(1 + 1 / 4) / 6, (1 + 1 / 6) / 4, 1 + 1 / 24 - (1 + 1 / 4) / 6 - (1 + 1 / 6) / 4])
    new = s_r * (1 + 1 / 4) + s_c * (1 + 1 / 6) + s_e * (1 + 1 / 24)
    assert coef @ ms == pytest.approx(new)
    df_new = new**2 / np.sum((coef * ms) ** 2 / dfs)
    assert res["pi_high"] - res["estimate"] == pytest.approx(sps.t.ppf(0.975, df_new) * np.sqrt(new))


def test_crossed_mean_interval_bad_input():
    with pytest.raises(ValstatError):
        crossed_mean_interval(np.ones((1, 5)))
    with pytest.raises(ValstatError):
        crossed_mean_interval([[0.5, np.nan], [0.4, 0.3]])
    with pytest.raises(ValstatError):
        crossed_mean_interval(np.ones((2, 2)), new_run_columns=0)


def test_collapse_mean_interval_by_hand():
    # 9 learned runs and 1 that predicts one class (a third of the images): each side's 2.5%
    # split into 1.25% for the collapse chance (Clopper-Pearson) and 1.25% for the learned mean (t)
    learned = np.array([0.70, 0.80, 0.73, 0.77, 0.83, 0.67, 0.77, 0.73, 0.80])
    values = np.r_[learned, 1 / 3]
    flags = np.r_[np.zeros(9, bool), True]
    res = collapse_mean_interval(values, flags, (0.3, 0.4))
    p_low = sps.beta.ppf(0.0125, 1, 10)
    p_high = sps.beta.ppf(0.9875, 2, 9)
    half = sps.t.ppf(0.9875, 8) * learned.std(ddof=1) / np.sqrt(9)
    l_low, l_high = learned.mean() - half, learned.mean() + half
    low = min((1 - p) * l_low + p * 0.3 for p in (p_low, p_high))
    high = max((1 - p) * l_high + p * 0.4 for p in (p_low, p_high))
    assert (res["low"], res["high"]) == pytest.approx((low, high))
    assert (res["collapse_low"], res["collapse_high"]) == pytest.approx((p_low, p_high))
    assert res["estimate"] == pytest.approx(values.mean()) and res["method"] == "collapse-mixture"
    assert res["sd"] == pytest.approx(values.std(ddof=1))
    # one new run: the hull of the share range and the learned runs' t prediction interval
    pi_half = sps.t.ppf(0.975, 8) * learned.std(ddof=1) * np.sqrt(1 + 1 / 9)
    assert (res["pi_low"], res["pi_high"]) == pytest.approx(
        (min(0.3, learned.mean() - pi_half), max(0.4, min(1.0, learned.mean() + pi_half))))


def test_collapse_mean_interval_without_collapsed_runs_still_allows_the_mode():
    values = np.array([0.70, 0.80, 0.73, 0.77, 0.83, 0.67, 0.77, 0.73, 0.80, 0.76])
    res = collapse_mean_interval(values, np.zeros(10, bool), (1 / 3, 1 / 3))
    # exact: 0 of 10 bounds the collapse chance by 1 - 0.0125^(1/10), about 35 %
    assert res["collapse_high"] == pytest.approx(1 - 0.0125 ** 0.1) and res["collapse_low"] == 0
    half = sps.t.ppf(0.9875, 9) * values.std(ddof=1) / np.sqrt(10)
    assert res["high"] == pytest.approx(values.mean() + half)
    assert res["low"] == pytest.approx((0.0125 ** 0.1) * (values.mean() - half) + (1 - 0.0125 ** 0.1) / 3)
    assert res["low"] < mean_interval(values)["low"]


def test_collapse_mean_interval_with_one_learned_run_bounds_it_by_zero_and_one():
    res = collapse_mean_interval([0.9, 0.25, 0.25], [False, True, True], (0.25, 0.25))
    assert res["learned_low"] == 0 and res["learned_high"] == 1 and res["note"]


def test_collapse_mean_interval_when_every_run_collapsed_is_not_zero_width():
    # 10 runs all scoring exactly 1/3 (collapsed): a t interval would be 1/3..1/3
    values, flags = np.full(10, 1 / 3), np.ones(10, bool)
    res = collapse_mean_interval(values, flags, (1 / 3, 1 / 3))
    p_low = sps.beta.ppf(0.0125, 10, 1)  # one-sided Clopper-Pearson lower bound on 10 of 10 collapsing
    assert res["low"] == pytest.approx(p_low / 3) and res["high"] == pytest.approx(1 - p_low + p_low / 3)
    assert (res["pi_low"], res["pi_high"]) == (0.0, 1.0) and res["note"]


def test_collapse_mean_interval_with_seeds_as_units():
    # 3 seeds x 2 folds; seed 0 both folds collapsed, seed 1 one fold, seed 2 none
    values = np.array([0.25, 0.25, 0.25, 0.70, 0.80, 0.60])
    flags = np.array([True, True, True, False, False, False])
    units = np.array([0, 0, 1, 1, 2, 2])
    res = collapse_mean_interval(values, flags, (0.25, 0.25), units=units)
    # P(all of a seed collapsed) <= collapse chance <= P(any of a seed collapsed), over 3 seeds
    p_low, p_high = sps.beta.ppf(0.0125, 1, 3), sps.beta.ppf(0.9875, 3, 1)
    seed_learned = np.array([0.70, 0.70])  # seeds 1 and 2: means of their learned runs
    half = 0.0  # the t bound over two equal seed means has zero width
    low = min((1 - p) * (seed_learned.mean() - half) + p * 0.25 for p in (p_low, p_high))
    high = max((1 - p) * (seed_learned.mean() + half) + p * 0.25 for p in (p_low, p_high))
    assert (res["low"], res["high"]) == pytest.approx((low, high))
    assert (res["collapse_low"], res["collapse_high"]) == pytest.approx((p_low, p_high))
    assert res["estimate"] == pytest.approx(np.mean([0.25, (0.25 + 0.70) / 2, 0.70]))  # mean of seed means
    assert res["n_units"] == 3 and res["note"] == ""
    # learned runs in one seed only: their mean is bounded by [0, 1], and so is a new run
    one = collapse_mean_interval(values, flags, (0.25, 0.25), units=np.array([0, 0, 1, 1, 1, 1]))
    assert (one["learned_low"], one["learned_high"], one["pi_low"], one["pi_high"]) == (0, 1, 0, 1)
    assert "seeds" in one["note"]


def test_collapse_mean_interval_on_one_shared_split_bounds_the_learned_mean_by_their_crossed_table():
    from interval_reference import korn_graubard

    # 4 seeds on one split of 12 images, one collapsed (right on the 4 images of class 0)
    rng = np.random.default_rng(2)
    learned = (rng.random((3, 12)) < 0.75).astype(float)
    collapsed = (np.arange(12) % 3 == 0).astype(float)
    values = np.r_[learned.mean(axis=1), collapsed.mean()]
    flags = np.array([False, False, False, True])
    res = collapse_mean_interval(values, flags, (1 / 3, 1 / 3), scored=48, learned_table=learned)
    # the learned side: crossed interval (seeds x images) at 1 - 0.05/4 on their 36 images,
    # written out here as a two-way ANOVA with Satterthwaite df and Korn-Graubard's bound
    R, C = learned.shape
    grand, rows, cols = learned.mean(), learned.mean(axis=1), learned.mean(axis=0)
    ms_r = C * np.sum((rows - grand) ** 2) / (R - 1)
    ms_c = R * np.sum((cols - grand) ** 2) / (C - 1)
    ms_e = np.sum((learned - rows[:, None] - cols[None, :] + grand) ** 2) / ((R - 1) * (C - 1))
    # Var(mean) as a combination of the kept mean squares (a clipped component drops out)
    coef = {"r": 0.0, "c": 0.0, "e": 1 / (R * C)}
    if ms_r > ms_e:
        coef["r"] += 1 / (R * C)
        coef["e"] -= 1 / (R * C)
    if ms_c > ms_e:
        coef["c"] += 1 / (R * C)
        coef["e"] -= 1 / (R * C)
    terms = [(coef["r"], ms_r, R - 1), (coef["c"], ms_c, C - 1), (coef["e"], ms_e, (R - 1) * (C - 1))]
    var = sum(a * ms for a, ms, _ in terms)
    df = var**2 / sum((a * ms) ** 2 / d for a, ms, d in terms if a != 0)
    l_low, l_high = korn_graubard(grand, np.sqrt(var), df, 36, level=0.975)
    assert (res["learned_low"], res["learned_high"]) == pytest.approx((max(l_low, 0), min(l_high, 1)))
    p_low, p_high = sps.beta.ppf(0.0125, 1, 4), sps.beta.ppf(0.9875, 2, 3)
    low = min((1 - p) * res["learned_low"] + p / 3 for p in (p_low, p_high))
    high = max((1 - p) * res["learned_high"] + p / 3 for p in (p_low, p_high))
    assert (res["low"], res["high"]) == pytest.approx((low, high))
    with pytest.raises(ValstatError):
        collapse_mean_interval(values, flags, (1 / 3, 1 / 3), learned_table=learned[:2])


def _shared_image_covariance_by_loops(examples, correct, units):
    """The same quantity written out pair by pair: sigma_b² from every pair of runs on a shared
    image, times the mean over pairs of distinct units of sum_i c_u,i c_v,i."""
    products, count = 0.0, 0
    for r in range(len(examples)):
        for q in range(r + 1, len(examples)):
            dev_r = dict(zip(examples[r], np.asarray(correct[r], float) - np.mean(correct[r])))
            dev_q = dict(zip(examples[q], np.asarray(correct[q], float) - np.mean(correct[q])))
            for image in set(dev_r) & set(dev_q):
                products += dev_r[image] * dev_q[image]
                count += 1
    sigma_b2 = max(products / count, 0.0) if count else 0.0
    weights = {}
    for unit in set(units):
        members = [r for r in range(len(examples)) if units[r] == unit]
        w = {}
        for r in members:
            for image in examples[r]:
                w[image] = w.get(image, 0.0) + 1 / (len(members) * len(examples[r]))
        weights[unit] = w
    pairs = [(u, v) for u in weights for v in weights if u != v]
    cross = np.mean([sum(weights[u].get(i, 0.0) * x for i, x in weights[v].items()) for u, v in pairs])
    return sigma_b2 * cross


def test_shared_image_covariance_by_hand():
    rng = np.random.default_rng(4)
    difficulty = rng.normal(0, 1.5, 40)
    examples = [rng.choice(40, 12, replace=False) for _ in range(6)]
    correct = [(rng.random(12) < 1 / (1 + np.exp(-(1.0 + difficulty[e])))).astype(int) for e in examples]
    for units in (None, np.array([0, 0, 1, 1, 2, 2])):
        want = _shared_image_covariance_by_loops(examples, correct, list(range(6)) if units is None else units)
        assert shared_image_covariance(examples, correct, units) == pytest.approx(want)
    assert shared_image_covariance(examples, correct) > 0
    # no image scored twice: nothing shared
    assert shared_image_covariance([np.arange(5), np.arange(5, 10)], [np.ones(5), np.zeros(5)]) == 0.0
    # and the t interval's se² takes it on: estimate ± t·sqrt(var/R + shared)
    values = np.array([c.mean() for c in correct])
    extra = shared_image_covariance(examples, correct)
    res = mean_interval(values, shared_variance=extra)
    half = sps.t.ppf(0.975, 5) * np.sqrt(values.var(ddof=1) / 6 + extra)
    assert (res["low"], res["high"]) == pytest.approx((values.mean() - half, values.mean() + half))


@pytest.mark.parametrize("args", [([0.5, 0.6], [True], (0.3, 0.3)), ([0.5, 0.6], [1, 0], (0.3, 0.3)),
                                  ([0.5, 0.6], [True, False], (0.4, 0.3)), ([0.5, 0.6], [True, False], (-0.1, 0.3))])
def test_collapse_mean_interval_bad_input(args):
    with pytest.raises(ValstatError):
        collapse_mean_interval(*args)


@pytest.mark.parametrize("estimate, se, df, scored", [
    (0.7, 0.03, 19, 600), (0.93, 0.02, 9, 300), (0.98, 0.004, 19, 200),   # n* below, at, above the cap
    (0.5, 0.0, 1, 20), (1.0, 0.0, 5, 60), (0.0, 0.0, np.inf, 30), (0.6, 0.05, np.inf, 1000),
])
def test_effective_size_bounds_are_korn_graubards(estimate, se, df, scored):
    from interval_reference import korn_graubard

    assert effective_size_bounds(estimate, se, df, scored) == pytest.approx(korn_graubard(estimate, se, df, scored))


def test_runs_that_tie_get_an_interval_of_some_width_and_near_one_it_reaches_down():
    # two runs of 30 images at 27/30: the t interval has zero width, the effective-size one not
    tied = mean_interval([0.9, 0.9], scored=60)
    assert mean_interval([0.9, 0.9])["high"] == mean_interval([0.9, 0.9])["low"]
    assert tied["method"] == "effective-size" and tied["low"] < 0.9 < tied["high"]
    # near accuracy 1 the bound is skewed toward 0.5, as the runs' accuracies are
    values = np.array([1.0, 0.9, 1.0, 1.0, 0.9, 1.0, 1.0, 1.0, 0.9, 1.0])
    res, t = mean_interval(values, scored=100), mean_interval(values)
    assert res["estimate"] - res["low"] > res["high"] - res["estimate"] and res["low"] < t["low"]
    assert res["high"] <= 1.0
    # one new run: never narrower than the t prediction interval
    assert res["pi_low"] <= t["pi_low"] and res["pi_high"] >= t["pi_high"]
    # a crossed table of 0/1 that is all right: not the single point 100%
    crossed = crossed_mean_interval(np.ones((3, 10)), new_run_columns=10, scored=30)
    assert crossed["high"] == 1.0 and crossed["low"] < 0.95
