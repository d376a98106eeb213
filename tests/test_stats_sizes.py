"""valstat.stats.sizes: validation size for a half-width, detectable difference, runs needed."""

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from valstat.errors import UserError
from valstat.stats import minimum_detectable_difference, runs_needed, val_size_for_halfwidth


def wilson_halfwidth(k, n, z=sps.norm.ppf(0.975)):
    p = k / n
    return z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))


def brute_force(p, h, halfwidth_of):
    n = 1
    while halfwidth_of(math.floor(p * n + 0.5), n) > h:
        n += 1
    return n


@pytest.mark.parametrize("p,h", [(0.5, 0.05), (0.8, 0.10), (0.8, 0.05), (0.95, 0.02)])
def test_wilson_size_matches_brute_force(p, h):
    assert val_size_for_halfwidth(p, h) == brute_force(p, h, wilson_halfwidth)


def test_clopper_pearson_size_matches_brute_force():
    def cp_half(k, n):
        low = 0.0 if k == 0 else sps.beta.ppf(0.025, k, n - k + 1)
        high = 1.0 if k == n else sps.beta.ppf(0.975, k + 1, n - k)
        return (high - low) / 2
    assert val_size_for_halfwidth(0.8, 0.1, method="clopper-pearson") == brute_force(0.8, 0.1, cp_half)


def test_thirty_images_are_far_from_five_points():
    assert val_size_for_halfwidth(0.8, 0.05) > 200


@pytest.mark.parametrize("kwargs", [dict(p=1.2, halfwidth=0.1), dict(p=0.5, halfwidth=0), dict(p=0.5, halfwidth=0.1, level=1),
                                    dict(p=0.5, halfwidth=0.001, max_n=1000), dict(p=0.5, halfwidth=0.1, method="nope")])
def test_val_size_bad_input(kwargs):
    with pytest.raises(UserError):
        val_size_for_halfwidth(**kwargs)


def test_minimum_detectable_difference_reaches_the_power():
    res = minimum_detectable_difference(30, 0.8)
    closed_form = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * math.sqrt(2 / 30)
    assert res["h"] == pytest.approx(closed_form, rel=1e-3)
    for d in (res["increase"], res["decrease"]):
        power = NormalIndPower().power(abs(proportion_effectsize(0.8 + d, 0.8)), nobs1=30, alpha=0.05, ratio=1)
        assert power == pytest.approx(0.8, abs=1e-4)
    assert res["difference"] == pytest.approx(max(abs(res["increase"]), abs(res["decrease"])))
    assert res["images"] == pytest.approx(res["difference"] * 30)


def test_minimum_detectable_difference_near_the_edge():
    res = minimum_detectable_difference(30, 0.97)
    assert res["increase"] is None and res["decrease"] < 0
    with pytest.raises(UserError):
        minimum_detectable_difference(1, 0.5)
    with pytest.raises(UserError):
        minimum_detectable_difference(30, 0.5, power=1.5)


def test_runs_needed_noether():
    # Bouthillier et al. (2021), MLSys: gamma = 0.75, alpha = beta = 0.05 -> 29 runs
    assert runs_needed() == 29
    z = sps.norm.ppf(0.95) * 2
    assert runs_needed(0.9) == math.ceil(z**2 / (6 * 0.4**2))
    assert runs_needed(0.25) == 29  # symmetric in gamma - 1/2
    with pytest.raises(UserError):
        runs_needed(0.5)
    with pytest.raises(UserError):
        runs_needed(1.0)
    assert np.isfinite(runs_needed(0.6, alpha=0.01, beta=0.2))
