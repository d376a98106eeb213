"""valstat.stats.variance: finite-sample (Jordan) variance and split/seed components."""

import numpy as np
import pandas as pd
import pytest

from valstat.errors import ValstatError
from valstat.stats import (
    binomial_sampling_variance,
    finite_sample_by_fold,
    finite_sample_variance,
    stratified_sampling_variance,
    variance_components,
    variance_components_with_noise,
)
from valstat.stats.variance import _mixedlm


def test_finite_sample_variance_by_hand():
    c = np.array([[1, 1, 0, 1], [1, 0, 0, 1], [0, 1, 1, 1]], dtype=bool)
    res = finite_sample_variance(c)
    acc = c.mean(axis=1)
    eps = 1 - c.mean(axis=0)
    R, n = 3, 4
    independent = np.sum(eps * (1 - eps)) / n**2 * R / (R - 1)
    assert res["empirical_variance"] == pytest.approx(acc.var(ddof=1))
    assert res["independent_errors_variance"] == pytest.approx(independent)
    assert res["distribution_variance"] == pytest.approx(n / (n - 1) * (acc.var(ddof=1) - independent))
    assert res["distribution_variance_clipped"] == max(0.0, res["distribution_variance"])
    assert res["finite_sample_share"] == pytest.approx(min(1.0, independent / acc.var(ddof=1)))
    assert (res["runs"], res["n"]) == (3, 4)


def _simulate(rng, sims, runs, n, shift):
    """sims x runs x n correctness: image i right with prob m_i + run shift (shift: sims x runs)."""
    m = rng.uniform(0.3, 0.9, n)
    return rng.random((sims, runs, n)) < np.clip(m + shift[..., None], 0, 1)


def test_independent_errors_give_zero_distribution_variance():
    # each image has its own fixed error probability, runs independent: no distribution-wise variance
    rng = np.random.default_rng(0)
    sims, runs, n = 2000, 8, 30
    correct = _simulate(rng, sims, runs, n, np.zeros((sims, runs)))
    results = [finite_sample_variance(c) for c in correct]
    est = np.array([r["distribution_variance"] for r in results])
    se = est.std(ddof=1) / np.sqrt(sims)
    assert abs(est.mean()) < 4 * se
    # the plug-in eps(1-eps) (no R/(R-1)) would be biased upwards by far more than the noise
    plug_in = np.array([n / (n - 1) * (r["empirical_variance"] - r["independent_errors_variance"] * (runs - 1) / runs)
                        for r in results])
    assert plug_in.mean() > 8 * se
    assert np.mean([r["finite_sample_share"] for r in results]) > 0.8


def test_known_distribution_variance_is_recovered():
    # a run-level shift u ~ Uniform(-0.1, 0.1) makes every pair of images covary by Var(u) = 0.2²/12
    rng = np.random.default_rng(1)
    sims, runs, n = 1500, 10, 30
    truth = 0.2**2 / 12
    correct = _simulate(rng, sims, runs, n, rng.uniform(-0.1, 0.1, (sims, runs)))
    est = np.array([finite_sample_variance(c)["distribution_variance"] for c in correct])
    se = est.std(ddof=1) / np.sqrt(sims)
    assert abs(est.mean() - truth) < 4 * se
    assert se < truth / 5  # the check has power


def test_finite_sample_edge_cases():
    same = np.ones((4, 5), dtype=bool)
    assert np.isnan(finite_sample_variance(same)["finite_sample_share"])
    with pytest.raises(ValstatError):
        finite_sample_variance(np.ones((1, 5), dtype=bool))
    with pytest.raises(ValstatError):
        finite_sample_variance(np.full((3, 5), 0.5))


def test_finite_sample_by_fold_averages_folds():
    rng = np.random.default_rng(2)
    folds = {0: rng.random((4, 10)) < 0.7, 1: rng.random((5, 12)) < 0.6, 2: rng.random((1, 10)) < 0.5}
    res = finite_sample_by_fold(folds)
    parts = [finite_sample_variance(folds[f]) for f in (0, 1)]
    assert res["folds"] == 2 and res["runs"] == 9
    for key in ("empirical_variance", "independent_errors_variance", "distribution_variance"):
        assert res[key] == pytest.approx(np.mean([p[key] for p in parts]))
    assert res["distribution_variance_clipped"] == max(0.0, res["distribution_variance"])
    with pytest.raises(ValstatError):
        finite_sample_by_fold({0: folds[2]})


def test_finite_sample_by_fold_share_is_one_with_independent_errors():
    # every (run, image) right independently with the image's own probability: all run-to-run
    # variance is finite-sample noise, the true share is 1. The estimate is noisy, but with
    # one clip it reaches 1 whenever the averaged raw ratio does (about half the time) and its
    # median is 1; clipping per fold before averaging gave a median of 0.88 (1 in 9 % of cases).
    rng = np.random.default_rng(3)
    shares = []
    for _ in range(300):
        p_img = rng.uniform(0.4, 0.95, (5, 30))
        folds = {f: rng.random((4, 30)) < p_img[f] for f in range(5)}
        shares.append(finite_sample_by_fold(folds)["finite_sample_share"])
    assert np.median(shares) == 1.0
    assert np.mean(np.array(shares) == 1.0) > 0.4


def _crossed(rng, I, J, split_sd, seed_sd, noise_sd):
    a, b = np.repeat(np.arange(I), J), np.tile(np.arange(J), I)
    y = 0.7 + rng.normal(0, split_sd, I)[a] + rng.normal(0, seed_sd, J)[b] + rng.normal(0, noise_sd, I * J)
    return pd.DataFrame({"final_val_accuracy": y, "fold": a, "seed": b})


def test_crossed_components_recovered_by_simulation():
    rng = np.random.default_rng(3)
    truth = {"split": 0.05**2, "seed": 0.03**2, "residual": 0.02**2}
    raw = {k: [] for k in truth}
    for _ in range(100):
        df = variance_components(_crossed(rng, 8, 8, 0.05, 0.03, 0.02)).set_index("component")
        assert df["method"]["split"] == "anova-crossed"
        for k in truth:
            raw[k].append(df.loc[k, "raw"])
    for k, value in truth.items():
        assert np.mean(raw[k]) == pytest.approx(value, rel=0.25), k


def test_reml_equals_anova_on_balanced_data():
    # for balanced crossed data with positive moment estimates, REML and ANOVA estimates coincide
    df = _crossed(np.random.default_rng(4), 6, 5, 0.05, 0.04, 0.02)
    anova = variance_components(df).set_index("component")["raw"]
    reml = _mixedlm(df["final_val_accuracy"].to_numpy(), df["fold"].to_numpy(), df["seed"].to_numpy())
    assert reml == pytest.approx((anova["split"], anova["seed"], anova["residual"]), rel=1e-3)


def test_missing_cells_use_mixedlm():
    df = _crossed(np.random.default_rng(5), 5, 5, 0.05, 0.03, 0.02).drop(index=[0, 7, 13])
    res = variance_components(df).set_index("component")
    assert res.loc["split", "method"] == "mixedlm-reml"
    assert (res.loc[["split", "seed", "residual"], "variance"] >= 0).all()
    assert res.loc[["split", "seed", "residual"], "share"].sum() == pytest.approx(1.0)


def test_one_fold_gives_seed_all_variance_and_says_split_not_estimable():
    df = pd.DataFrame({"final_val_accuracy": [0.6, 0.7, 0.8, 0.7], "fold": 0, "seed": [0, 1, 2, 3]})
    res = variance_components(df).set_index("component")
    assert np.isnan(res.loc["split", "variance"]) and "not estimable" in res.loc["split", "note"]
    assert res.loc["seed", "variance"] == pytest.approx(np.var([0.6, 0.7, 0.8, 0.7], ddof=1))
    assert np.isnan(res.loc["residual", "variance"])
    assert res.loc["total", "variance"] == pytest.approx(res.loc["seed", "variance"])


def test_split_per_run_is_inside_residual_and_seed_is_one_way_anova():
    y = np.array([0.6, 0.7, 0.65, 0.8, 0.9, 0.85])
    seed = np.array([0, 0, 0, 1, 1, 1])
    df = pd.DataFrame({"final_val_accuracy": y, "fold": np.arange(6), "seed": seed})
    res = variance_components(df).set_index("component")
    means = np.array([0.65, 0.85])
    ms_between = 3 * np.sum((means - y.mean()) ** 2) / 1
    ms_within = (np.sum((y[:3] - 0.65) ** 2) + np.sum((y[3:] - 0.85) ** 2)) / 4
    assert res.loc["seed", "raw"] == pytest.approx((ms_between - ms_within) / 3)
    assert res.loc["residual", "raw"] == pytest.approx(ms_within)
    assert np.isnan(res.loc["split", "variance"])


def test_everything_per_run_is_residual():
    df = pd.DataFrame({"final_val_accuracy": [0.6, 0.7, 0.8], "fold": [0, 1, 2], "seed": [0, 1, 2]})
    res = variance_components(df).set_index("component")
    assert res.loc["residual", "variance"] == pytest.approx(0.01)


def test_variance_components_bad_input():
    with pytest.raises(ValstatError):
        variance_components(pd.DataFrame({"final_val_accuracy": [0.5], "fold": [0], "seed": [0]}))
    with pytest.raises(ValstatError):
        variance_components(pd.DataFrame({"fold": [0, 1], "seed": [0, 1]}))


def test_with_noise_adds_finite_sample_row():
    df = _crossed(np.random.default_rng(6), 3, 4, 0.05, 0.03, 0.02)
    rng = np.random.default_rng(7)
    folds = {f: rng.random((4, 30)) < 0.7 for f in range(3)}
    res = variance_components_with_noise(df, folds).set_index("component")
    expected = finite_sample_by_fold(folds)
    assert res.loc["finite_sample", "variance"] == pytest.approx(expected["independent_errors_variance"])
    assert res.loc["finite_sample", "share"] == pytest.approx(expected["finite_sample_share"])


# --------------------------------------------------------------------------- per-run sampling

def test_binomial_sampling_variance_by_hand():
    acc = np.array([0.5, 0.8, 0.9, 0.6])
    n = 10
    res = binomial_sampling_variance(acc, n)
    binomial = (0.25 + 0.16 + 0.09 + 0.24) / 4 / 9
    empirical = np.sum((acc - 0.7) ** 2) / 3
    assert res["binomial_variance"] == pytest.approx(binomial)
    assert res["empirical_variance"] == pytest.approx(empirical)
    assert res["share"] == pytest.approx(binomial / empirical)
    assert res["model_variance"] == pytest.approx(empirical - binomial)
    assert res["model_variance_clipped"] == pytest.approx(max(0.0, empirical - binomial))
    assert (res["runs"], res["n"]) == (4, 10)


def test_binomial_sampling_variance_edge_cases():
    same = binomial_sampling_variance([0.5, 0.5, 0.5], 30)
    assert np.isnan(same["share"]) and same["model_variance"] < 0 and same["model_variance_clipped"] == 0
    assert binomial_sampling_variance([0.4, 0.41], 30)["share"] == 1.0  # clipped
    for bad in (([0.5], 30), ([0.5, 1.2], 30), ([0.5, 0.6], 1), ([0.5, np.nan], 30), ([0.5, 0.6], 2.5)):
        with pytest.raises(ValstatError):
            binomial_sampling_variance(*bad)


def test_binomial_sampling_variance_recovers_binomial_and_model_parts_by_simulation():
    # run r has true accuracy p_r ~ Beta(6, 3); it is validated on n fresh Bernoulli(p_r) images
    rng = np.random.default_rng(8)
    sims, runs, n = 4000, 12, 30
    a, b = 6.0, 3.0
    mean_p = a / (a + b)
    var_p = a * b / ((a + b) ** 2 * (a + b + 1))
    binomial_truth = (mean_p - (var_p + mean_p**2)) / n      # E[p(1 - p)] / n
    p = rng.beta(a, b, (sims, runs))
    acc = rng.binomial(n, p) / n
    results = [binomial_sampling_variance(row, n) for row in acc]
    for key, truth in (("binomial_variance", binomial_truth), ("model_variance", var_p)):
        est = np.array([r[key] for r in results])
        se = est.std(ddof=1) / np.sqrt(sims)
        assert abs(est.mean() - truth) < 4 * se, key
        assert se < truth / 10, key  # the check has power
    shares = np.array([r["binomial_variance"] for r in results]).mean() / np.array(
        [r["empirical_variance"] for r in results]).mean()
    assert shares == pytest.approx(binomial_truth / (binomial_truth + var_p), rel=0.03)


def test_stratified_sampling_variance_by_hand():
    # two runs, classes 0 and 1 with 2 and 3 images each
    correct = np.array([[1, 0, 1, 1, 0], [1, 1, 0, 0, 0]], dtype=bool)
    labels = np.array([[0, 0, 1, 1, 1], [1, 0, 1, 0, 1]])
    n = 5
    # run 0: class 0 -> 1/2 right (n_c 2), class 1 -> 2/3 (n_c 3); run 1: class 0 -> 1/2, class 1 -> 1/3
    v0 = (2**2 * 0.25 / 1 + 3**2 * (2 / 9) / 2) / n**2
    v1 = (2**2 * 0.25 / 1 + 3**2 * (2 / 9) / 2) / n**2
    res = stratified_sampling_variance(correct, labels)
    acc = correct.mean(axis=1)
    assert res["stratified_variance"] == pytest.approx((v0 + v1) / 2)
    assert res["binomial_variance"] == pytest.approx(np.mean(acc * (1 - acc) / (n - 1)))
    assert res["empirical_variance"] == pytest.approx(acc.var(ddof=1))
    assert res["model_variance"] == pytest.approx(acc.var(ddof=1) - (v0 + v1) / 2)
    assert (res["runs"], res["n"]) == (2, 5)
    # one class only: the stratified figure is the binomial one
    one = stratified_sampling_variance(correct, np.zeros_like(labels))
    assert one["stratified_variance"] == pytest.approx(one["binomial_variance"])


def test_stratified_sampling_variance_is_zero_for_runs_that_get_whole_classes_right_or_wrong():
    labels = np.tile(np.repeat(np.arange(10), 3), (4, 1))
    correct = np.zeros((4, 30), dtype=bool)
    correct[0, labels[0] == 3] = True                              # collapsed onto class 3: 3/30
    correct[1, np.isin(labels[1], (2, 5))] = True                  # two classes: 6/30
    correct[2, labels[2] == 7] = True
    correct[3, np.isin(labels[3], (0, 1, 4))] = True
    res = stratified_sampling_variance(correct, labels)
    assert res["stratified_variance"] == 0 and res["share"] == 0
    assert res["binomial_variance"] > 0.002 and res["binomial_share"] > 0.4
    assert res["model_variance"] == pytest.approx(res["empirical_variance"])
    with pytest.raises(ValstatError):
        stratified_sampling_variance(correct, np.arange(30)[None, :].repeat(4, axis=0))
    with pytest.raises(ValstatError):
        stratified_sampling_variance(correct, labels[:, :20])


def test_stratified_sampling_variance_recovers_the_stratified_part_by_simulation():
    # per-class true accuracies differ; each run draws 3 images of each of 10 classes
    rng = np.random.default_rng(9)
    sims, runs, classes, per_class = 3000, 10, 10, 3
    n = classes * per_class
    labels = np.tile(np.repeat(np.arange(classes), per_class), (runs, 1))
    base = np.linspace(0.15, 0.95, classes)
    shift = rng.uniform(-0.05, 0.05, (sims, runs, 1))
    p_c = np.clip(base[None, None, :] + shift, 0, 1)                     # sims x runs x classes
    truth = np.mean(np.sum((1 / classes) ** 2 * p_c * (1 - p_c) / per_class, axis=2))
    p_img = p_c[:, :, labels[0]]
    correct = rng.random((sims, runs, n)) < p_img
    results = [stratified_sampling_variance(c, labels) for c in correct]
    est = np.array([r["stratified_variance"] for r in results])
    se = est.std(ddof=1) / np.sqrt(sims)
    assert abs(est.mean() - truth) < 4 * se and se < truth / 20
    # the binomial figure is too large by the between-class part, Σ w_c (p_c - p)² / n
    between = np.mean(np.var(p_c, axis=2)) / n
    binomial = np.array([r["binomial_variance"] for r in results]).mean()
    assert binomial - est.mean() == pytest.approx(between, rel=0.1)
