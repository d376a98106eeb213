"""valstat.stats.lattice: lattice checks, per-epoch moves, largest drop, inferred size."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from valstat.errors import ValstatError
from valstat.stats import curve_changes, infer_val_size, largest_drop, lattice_step

K = np.array([10, 20, 24, 22, 18, 18, 19])
ACC32 = (K / 30).astype(np.float32).astype(float)  # what Keras logs


def test_lattice_step():
    assert lattice_step(30) == pytest.approx(1 / 30)
    with pytest.raises(ValstatError):
        lattice_step(0)


def test_curve_changes_without_predictions_uses_fisher():
    df = curve_changes(ACC32, 30)
    assert list(df["epoch"]) == list(range(7)) and list(df["k"]) == list(K)
    low, high = proportion_confint(K, 30, alpha=0.05, method="wilson")
    assert np.allclose(df["low"], low) and np.allclose(df["high"], high)
    assert np.isnan(df["change_images"][0]) and list(df["change_images"][1:]) == list(np.diff(K))
    for t in range(1, 7):
        expected = sps.fisher_exact([[K[t - 1], 30 - K[t - 1]], [K[t], 30 - K[t]]]).pvalue
        assert df["p_value"][t] == pytest.approx(expected)
        assert bool(df["within_noise"][t]) == (expected >= 0.05)
    assert df["within_noise"].isna()[0]
    assert df["lost"].isna().all()


def test_curve_changes_with_predictions_uses_midp_mcnemar_and_keeps_the_exact_p():
    from power_reference import midp

    rng = np.random.default_rng(0)
    correct = rng.random((6, 30)) < np.linspace(0.3, 0.9, 6)[:, None]
    df = curve_changes(correct.mean(axis=1), 30, correct=correct)
    for t in range(1, 6):
        b = int(np.sum(correct[t - 1] & ~correct[t]))
        c = int(np.sum(~correct[t - 1] & correct[t]))
        exact = 1.0 if b + c == 0 else min(1.0, 2 * sps.binom.cdf(min(b, c), b + c, 0.5))
        assert (df["lost"][t], df["gained"][t]) == (b, c)
        assert df["p_value"][t] == pytest.approx(midp(b, c))
        assert df["p_exact"][t] == pytest.approx(exact)
        assert bool(df["within_noise"][t]) == (midp(b, c) >= 0.05)


def test_one_image_flip_is_within_noise():
    correct = np.ones((2, 30), dtype=bool)
    correct[1, 0] = False
    df = curve_changes(correct.mean(axis=1), 30, correct=correct)
    assert df["p_value"][1] == pytest.approx(0.5) and df["p_exact"][1] == 1.0 and bool(df["within_noise"][1])


@pytest.mark.parametrize("values,n,correct", [
    ([0.5, 0.51], 30, None),                     # off the lattice
    ([0.5, 1.2], 30, None),                      # not a fraction
    ([0.5, np.nan], 30, None),
    ([0.5, 0.5], 30, np.ones((2, 30), bool)),    # sums disagree with accuracy
    ([0.5, 0.5], 30, np.ones((3, 30), bool)),    # wrong shape
])
def test_curve_changes_bad_input(values, n, correct):
    with pytest.raises(ValstatError):
        curve_changes(values, n, correct=correct)


def test_largest_drop_unpaired_is_newcombe():
    drop = largest_drop(curve_changes(ACC32, 30))
    assert (drop["from_epoch"], drop["to_epoch"], drop["images"]) == (3, 4, -4)
    # the largest of all moves: Bonferroni over the scanned moves, interval at 1 - 0.05/moves
    moves = len(ACC32) - 1
    assert drop["scanned"] == moves and drop["test"] == "fisher"
    low, high = confint_proportions_2indep(18, 30, 22, 30, method="newcomb", compare="diff", alpha=0.05 / moves)
    assert (drop["low"], drop["high"]) == pytest.approx((low, high))
    expected_p = sps.fisher_exact([[22, 8], [18, 12]]).pvalue
    assert drop["p_value"] == pytest.approx(expected_p) and drop["within_noise"]
    assert drop["p_adjusted"] == pytest.approx(min(1.0, expected_p * moves))
    # the smallest loss from 22/30 Fisher's test flags at 0.05/moves, by scipy
    flagged = [j for j in range(1, 23) if sps.fisher_exact([[22, 8], [22 - j, 8 + j]]).pvalue < 0.05 / moves]
    assert drop["smallest_flagged"] == flagged[0]


def test_largest_drop_first_of_equal_drops_and_none_without_drop():
    df = curve_changes(np.array([20, 18, 25, 23]) / 30, 30)
    assert largest_drop(df)["to_epoch"] == 1
    assert largest_drop(curve_changes(np.array([10, 12, 12, 20]) / 30, 30)) is None
    assert largest_drop(curve_changes([0.5], 30)) is None


def test_largest_drop_paired_is_newcombe_method_10_by_hand():
    prev = np.array([1] * 20 + [0] * 10, dtype=bool)
    cur = prev.copy()
    cur[:7] = False   # 7 images lost
    cur[20:22] = True  # 2 gained
    df = curve_changes(np.array([prev.mean(), cur.mean()]), 30, correct=np.vstack([prev, cur]))
    drop = largest_drop(df)
    assert drop["images"] == -5
    # Newcombe (1998b) method 10 written out: p1 = current, p2 = previous accuracy
    a, b, c, d, n = 13, 2, 7, 8, 30  # both right, right only now, right only before, both wrong
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = proportion_confint(a + b, n, method="wilson")
    l2, u2 = proportion_confint(a + c, n, method="wilson")
    phi = (a * d - b * c - n / 2) / np.sqrt((a + b) * (c + d) * (a + c) * (b + d))  # ad - bc > n/2
    delta = np.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    eps = np.sqrt((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    assert (drop["low"], drop["high"]) == pytest.approx((p1 - p2 - delta, p1 - p2 + eps))
    assert drop["low"] < -5 / 30 < drop["high"]
    # one move scanned, 9 images changed answer: the smallest net loss whose exact McNemar
    # (scipy's binomial test) p is below 0.05
    assert (drop["scanned"], drop["discordant"]) == (1, 9)
    assert drop["smallest_flagged"] == min(j for j in (1, 3, 5, 7, 9)
                                           if sps.binomtest((9 - j) // 2, 9, 0.5).pvalue < 0.05)


def test_largest_drop_needs_curve_changes_columns():
    with pytest.raises(ValstatError):
        largest_drop(pd.DataFrame({"epoch": [0, 1]}))


def test_infer_val_size():
    assert infer_val_size(ACC32) == 30
    assert infer_val_size((np.array([2, 4, 8]) / 30).astype(np.float32)) == 15  # smallest consistent size
    assert infer_val_size([np.nan, 0.25, 0.5]) == 4
    with pytest.raises(ValstatError):
        infer_val_size([0.31415926], max_n=100)
    with pytest.raises(ValstatError):
        infer_val_size([np.nan])
    with pytest.raises(ValstatError):
        infer_val_size([1.5])
