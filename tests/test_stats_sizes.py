"""valstat.stats.sizes: validation size for a half-width, detectable difference, runs needed."""

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint

from valstat.errors import ValstatError
from valstat.stats import minimum_detectable_difference, runs_needed, val_size_for_halfwidth
from valstat.stats.sizes import detectable_drop, fisher_p_table, fisher_power, noether_runs


def wilson_halfwidth(k, n, z=sps.norm.ppf(0.975)):
    p = k / n
    return z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))


def brute_force(p, h, halfwidth_of, probability=0.8):
    """Smallest n with P(halfwidth_of(K, n) <= h) >= probability, K ~ Binomial(n, p)."""
    n = 1
    while sum(sps.binom.pmf(k, n, p) for k in range(n + 1) if halfwidth_of(k, n) <= h) < probability:
        n += 1
    return n


@pytest.mark.parametrize("p,h", [(0.5, 0.10), (0.8, 0.10), (0.9, 0.08), (0.95, 0.05)])
def test_wilson_size_matches_brute_force(p, h):
    assert val_size_for_halfwidth(p, h) == brute_force(p, h, wilson_halfwidth)


def test_size_reaches_the_target_with_the_stated_probability_by_simulation():
    n = val_size_for_halfwidth(0.8, 0.1, probability=0.9)
    k = np.random.default_rng(0).binomial(n, 0.8, 4000)
    reached = np.mean([wilson_halfwidth(x, n) <= 0.1 for x in k])
    assert reached >= 0.9 - 3 * math.sqrt(0.09 / 4000)
    assert val_size_for_halfwidth(0.8, 0.1, probability=0.5) < n


def test_clopper_pearson_size_matches_brute_force():
    def cp_half(k, n):
        low = 0.0 if k == 0 else sps.beta.ppf(0.025, k, n - k + 1)
        high = 1.0 if k == n else sps.beta.ppf(0.975, k + 1, n - k)
        return (high - low) / 2
    assert val_size_for_halfwidth(0.8, 0.1, method="clopper-pearson") == brute_force(0.8, 0.1, cp_half)


def test_thirty_images_are_far_from_five_points():
    assert val_size_for_halfwidth(0.8, 0.05) > 200


@pytest.mark.parametrize("kwargs", [dict(p=1.2, halfwidth=0.1), dict(p=0.5, halfwidth=0), dict(p=0.5, halfwidth=0.1, level=1),
                                    dict(p=0.5, halfwidth=0.001, max_n=1000), dict(p=0.5, halfwidth=0.1, method="nope"),
                                    dict(p=0.5, halfwidth=0.1, probability=1.0)])
def test_val_size_bad_input(kwargs):
    with pytest.raises(ValstatError):
        val_size_for_halfwidth(**kwargs)


def test_fisher_table_matches_scipy():
    table = fisher_p_table(15)
    ref = [[sps.fisher_exact([[a, 15 - a], [b, 15 - b]]).pvalue for b in range(16)] for a in range(16)]
    assert table == pytest.approx(np.array(ref), abs=1e-12)


def test_minimum_detectable_difference_reaches_the_power_by_simulation():
    # power of scipy's Fisher test at the returned drop, by simulation: 0.80 (the normal
    # approximation on Cohen's h it replaced gave 0.65-0.77)
    res = minimum_detectable_difference(30, 0.8)
    assert res["test"] == "fisher-exact two-sided"
    rng = np.random.default_rng(5)
    sims = 3000
    k1 = rng.binomial(30, 0.8, sims)
    k2 = rng.binomial(30, 0.8 + res["decrease"], sims)
    p = {(a, b): sps.fisher_exact([[a, 30 - a], [b, 30 - b]]).pvalue for a, b in set(zip(k1, k2))}
    power = np.mean([p[(a, b)] < 0.05 for a, b in zip(k1, k2)])
    assert power == pytest.approx(0.8, abs=3 * math.sqrt(0.16 / sims))
    # a drop one point smaller has less than the stated power (it is the smallest)
    assert fisher_power(30, 0.8, 0.8 + res["decrease"] + 0.01) < 0.8
    assert res["difference"] == max(abs(d) for d in (res["increase"], res["decrease"]) if d is not None)
    assert res["images"] == pytest.approx(res["difference"] * 30)


def test_minimum_detectable_difference_near_the_edge():
    res = minimum_detectable_difference(30, 0.97)
    assert res["increase"] is None and res["decrease"] < 0
    with pytest.raises(ValstatError):
        minimum_detectable_difference(1, 0.5)
    with pytest.raises(ValstatError):
        minimum_detectable_difference(30, 0.5, power=1.5)


def _paired_interval_power(N, gamma):
    """Power of statsmodels' Clopper-Pearson interval on wins of N pairs to exclude 1/2."""
    k = np.arange(N + 1)
    low, _ = proportion_confint(k, N, alpha=0.05, method="beta")
    return sps.binom.pmf(k, N, gamma)[np.nan_to_num(low) > 0.5].sum()


def test_runs_needed_matches_the_paired_procedure():
    N = runs_needed()
    assert _paired_interval_power(N, 0.75) >= 0.95 > max(_paired_interval_power(m, 0.75) for m in range(1, N))
    # Noether's 29 gives the paired interval much less than the 0.95 power asked for
    assert _paired_interval_power(29, 0.75) < 0.9
    assert runs_needed(0.25) == N  # symmetric in gamma - 1/2
    with pytest.raises(ValstatError):
        runs_needed(0.5)
    with pytest.raises(ValstatError):
        runs_needed(1.0)
    assert runs_needed(0.9) < N < runs_needed(0.6, beta=0.2)


def test_noether_runs():
    # Bouthillier et al. (2021), MLSys: gamma = 0.75, alpha = beta = 0.05 -> 29 runs
    assert noether_runs() == 29
    z = sps.norm.ppf(0.95) * 2
    assert noether_runs(0.9) == math.ceil(z**2 / (6 * 0.4**2))


@pytest.mark.parametrize("p", [0.5, 0.8, 0.93])
def test_detectable_drop_fisher_matches_enumeration(p):
    from power_reference import fisher_drop_reference

    from valstat.stats.sizes import detectable_drop

    assert detectable_drop(30, p=p) == fisher_drop_reference(30, p)


@pytest.mark.parametrize("churn", [0.0, 1 / 30, 0.1])
def test_detectable_drop_mcnemar_matches_enumeration(churn):
    from power_reference import mcnemar_drop_reference

    from valstat.stats.sizes import detectable_drop

    assert detectable_drop(30, churn=churn) == mcnemar_drop_reference(30, churn)


def test_mcnemar_power_matches_simulation():
    from power_reference import midp

    from valstat.stats.sizes import mcnemar_power

    rng = np.random.default_rng(3)
    draws = rng.multinomial(30, [0.25, 0.05, 0.70], 4000)
    rejected = np.mean([midp(b, c) < 0.05 for b, c, _ in draws])
    assert mcnemar_power(30, 0.25, 0.05) == pytest.approx(rejected, abs=4 * np.sqrt(0.25 / 4000))


def test_detectable_drop_bad_input():
    from valstat.stats.sizes import detectable_drop, mcnemar_power

    with pytest.raises(ValstatError):
        detectable_drop(30, p=1.5)
    with pytest.raises(ValstatError):
        mcnemar_power(30, 0.7, 0.5)


def test_move_detectability_estimates_the_chance_churn_from_the_moves_within_noise():
    from valstat.stats.sizes import move_detectability

    # three plateau moves flipping 2 and 4, 3 and 3, 4 and 2 images, and one learning epoch
    # that gained 12 (beyond noise: left out of the chance churn)
    got = move_detectability(30, 0.05, 0.8, lost=[2, 3, 4, 0], gained=[4, 3, 2, 12])
    assert got["churn"] == pytest.approx(3 / 30)
    assert got["images"] == detectable_drop(30, churn=3 / 30)
    # min(lost, gained) would have said 2.0 images each way over the plateau moves
    assert move_detectability(30, lost=[2, 3, 4], gained=[4, 3, 2])["churn"] == pytest.approx(3 / 30)
