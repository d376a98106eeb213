"""valstat.stats.selection: optimism of picking an epoch on the validation set."""

import numpy as np
import pandas as pd
import pytest

from valstat.errors import ValstatError
from valstat.stats import expected_max_noise, mean_interval, optimism_summary, selection_optimism
from valstat.stats.selection import resampled_noise_optimism

ONE_RUN = pd.DataFrame({
    "epoch": [0, 1, 2, 3],
    "val_accuracy": [0.6, 0.8, 0.8, 0.7],
    "val_loss": [0.9, 0.7, 0.5, 0.6],
    "truth_accuracy": [0.62, 0.70, 0.72, 0.71],
})


@pytest.mark.parametrize("by,epoch,optimism", [("val_accuracy", 1, 0.8 - 0.70), ("val_loss", 2, 0.8 - 0.72),
                                               ("final", 3, 0.7 - 0.71)])
def test_selection_optimism_by_hand(by, epoch, optimism):
    res = selection_optimism(ONE_RUN, by=by)
    assert res["chosen_epoch"] == epoch and res["optimism"] == pytest.approx(optimism)


def test_selection_without_truth_and_bad_input():
    res = selection_optimism(ONE_RUN.assign(truth_accuracy=np.nan))
    assert res["truth_accuracy_at_chosen"] is None and res["optimism"] is None
    with pytest.raises(ValstatError):
        selection_optimism(ONE_RUN, by="luck")
    with pytest.raises(ValstatError):
        selection_optimism(ONE_RUN.drop(columns="truth_accuracy"))
    with pytest.raises(ValstatError):
        selection_optimism(ONE_RUN.assign(val_loss=np.nan), by="val_loss")


def test_optimism_summary_by_hand():
    two = pd.concat([ONE_RUN.assign(run_id="a"), ONE_RUN.assign(run_id="b", truth_accuracy=0.5)])
    table = optimism_summary(two).set_index("rule")
    assert list(table.index) == ["best_val_accuracy", "best_val_loss", "final"]
    assert table.loc["best_val_accuracy", "mean"] == pytest.approx(((0.8 - 0.7) + (0.8 - 0.5)) / 2)
    assert table.loc["final", "max"] == pytest.approx(0.2) and table.loc["final", "n_runs"] == 2
    empty = optimism_summary(two.assign(truth_accuracy=np.nan))
    assert (empty["n_runs"] == 0).all() and empty["mean"].isna().all()


def test_expected_max_noise_small_case_by_hand():
    # max of two Binomial(2, 1/2)/2: P(max = 0) = 1/16, P(max = 1/2) = 1/2, P(max = 1) = 7/16 -> E = 11/16
    res = expected_max_noise(2, 2, 0.5, n_sim=200_000)
    assert res["expected_max"] == pytest.approx(11 / 16, abs=0.005)
    assert res["expected_optimism"] == pytest.approx(11 / 16 - 0.5, abs=0.005)
    one = expected_max_noise(30, 1, 0.7)
    assert abs(one["expected_optimism"]) < 0.002
    with pytest.raises(ValstatError):
        expected_max_noise(30, 0, 0.7)
    with pytest.raises(ValstatError):
        expected_max_noise(30, 5, 1.5)


def test_best_epoch_optimism_on_pure_noise_matches_expected_max():
    # flat true accuracy; each epoch's val accuracy is Binomial(30, p)/30; truth is exactly p
    rng = np.random.default_rng(12)
    runs, epochs, n, p = 400, 20, 30, 0.7
    frame = pd.DataFrame({
        "run_id": np.repeat(np.arange(runs), epochs), "epoch": np.tile(np.arange(epochs), runs),
        "val_accuracy": rng.binomial(n, p, runs * epochs) / n, "val_loss": rng.random(runs * epochs),
        "truth_accuracy": p,
    })
    table = optimism_summary(frame).set_index("rule")
    expected = expected_max_noise(n, epochs, p, seed=99)["expected_optimism"]
    best = table.loc["best_val_accuracy"]
    assert best["low"] <= expected <= best["high"]
    assert best["mean"] > 0.1  # choosing the best of 20 noisy epochs flatters by several images
    by_loss = table.loc["best_val_loss"]  # loss unrelated to accuracy here: no optimism (4-se check)
    assert abs(by_loss["mean"]) < 4 * by_loss["sd"] / np.sqrt(by_loss["n_runs"])
    check = mean_interval(frame.groupby("run_id")["val_accuracy"].max().to_numpy() - p)
    assert check["estimate"] == pytest.approx(best["mean"])


def test_resampled_noise_optimism_keeps_epoch_correlation():
    # simulated truth: image i is right at epoch t when u_i + s·z_ti < 0.7 (every epoch has the
    # same population accuracy); truth = E[best measured accuracy] - population accuracy
    rng = np.random.default_rng(0)
    for jitter, independent in ((0.05, False), (3.0, True)):
        population = np.mean(rng.random(400_000) + jitter * rng.normal(size=400_000) < 0.7)
        truth, estimate = [], []
        for _ in range(120):
            c = rng.random(30)[None, :] + jitter * rng.normal(size=(12, 30)) < 0.7
            truth.append(c.mean(axis=1).max() - population)
            estimate.append(resampled_noise_optimism(c, n_boot=500, seed=1)["expected_optimism"])
        assert np.mean(estimate) == pytest.approx(np.mean(truth), abs=0.02)
        if not independent:  # nearly identical epochs: far below the independent-draws figure
            assert np.mean(estimate) < 0.5 * expected_max_noise(30, 12, population)["expected_optimism"]


def test_resampled_noise_optimism_is_zero_for_identical_epochs():
    c = np.tile(np.arange(30) % 3 > 0, (5, 1))
    assert resampled_noise_optimism(c)["expected_optimism"] == pytest.approx(0.0, abs=2e-3)  # MC error only


def test_optimism_summary_gives_no_interval_when_every_run_gave_the_same_value():
    # three runs collapsed to one class: val accuracy 1/3, truth accuracy 0.3 at every epoch
    frame = pd.DataFrame({"run_id": np.repeat(["a", "b", "c"], 4), "epoch": np.tile(np.arange(4), 3),
                          "val_accuracy": 1 / 3, "val_loss": 1.1, "truth_accuracy": 0.3})
    table = optimism_summary(frame).set_index("rule")
    assert table["mean"].to_numpy() == pytest.approx(1 / 3 - 0.3)
    assert table["sd"].eq(0).all() and table["low"].isna().all() and table["high"].isna().all()
