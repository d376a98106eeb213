"""valstat.diagnose: the diagnosis of one history, checked against hand computations.

Reference values are computed here from textbook formulas (Wilson score band, Fisher's exact
test from hypergeometric terms, Newcombe's hybrid score interval, the exact expected maximum of
independent binomials, the smallest common denominator of k/30) and from the design of the
hand-written histories in tests/data/histories (see generate.py there) — never from the code
under test.  One test trains a tiny real Keras model and diagnoses the CSV it logs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import warnings
from fractions import Fraction
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from valstat.diagnose import diagnose, format_diagnosis
from valstat.errors import ValstatError
from valstat.history import read_history

DATA = Path(__file__).parent / "data" / "histories"
Z95 = 1.959963984540054  # standard normal 97.5% quantile


# ---------------------------------------------------------------------------------------------
# hand formulas


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (Wilson 1927; Brown, Cai & DasGupta 2001, eq. 4)."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def fisher_p(a: int, b: int, n: int) -> float:
    """Two-sided Fisher exact p for a/n vs b/n: sum of hypergeometric tables no likelier."""
    total = a + b

    def prob(x):
        return math.comb(n, x) * math.comb(n, total - x) / math.comb(2 * n, total)

    observed = prob(a)
    xs = range(max(0, total - n), min(n, total) + 1)
    return min(1.0, sum(prob(x) for x in xs if prob(x) <= observed * (1 + 1e-7)))


def newcombe_difference(k_now: int, k_prev: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Newcombe (1998) method 10 interval for k_now/n - k_prev/n from the two Wilson bands."""
    p1, p2 = k_now / n, k_prev / n
    l1, u1 = wilson(k_now, n, z)
    l2, u2 = wilson(k_prev, n, z)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def smallest_val_size(ks, n: int) -> int:
    """Smallest validation size for which every k/n is a whole number of images."""
    return math.lcm(*(Fraction(k, n).denominator for k in ks))


def exact_expected_optimism(n: int, epochs: int, p: float) -> float:
    """E[max of `epochs` iid Binomial(n, p)] / n - p, by E[M] = sum_k P(M >= k)."""
    cdf = np.cumsum([math.comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(n + 1)])
    expected_max = sum(1 - cdf[k - 1] ** epochs for k in range(1, n + 1))
    return expected_max / n - p


def plain_json_only(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain_json_only(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain_json_only(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or type(value) in (str, int, bool)


def check_epoch_rows(result, ks, n, labels=None):
    labels = list(range(len(ks))) if labels is None else labels
    assert [row.epoch for row in result.epochs] == labels
    assert [row.k for row in result.epochs] == ks
    for i, row in enumerate(result.epochs):
        assert row.val_accuracy == pytest.approx(ks[i] / n, abs=1e-12)
        low, high = wilson(ks[i], n)
        assert row.low == pytest.approx(low, abs=1e-9)
        assert row.high == pytest.approx(high, abs=1e-9)
        if i == 0:
            assert row.change_images is None and row.within_noise is None
        else:
            assert row.change_images == ks[i] - ks[i - 1]
            p = fisher_p(ks[i - 1], ks[i], n)
            assert row.p_value == pytest.approx(p, rel=1e-6)
            assert row.within_noise is (p >= 0.05)


# ---------------------------------------------------------------------------------------------
# hand-written histories


TFKERAS2_K = [20, 22, 24, 20, 21, 21, 21, 21, 21, 21, 21, 21]
KERAS3_K = [15, 18, 21, 24, 25, 24, 14, 22, 23, 23, 23, 23, 23, 23, 23]
JSON_K = [12, 16, 19, 21, 22, 22, 23, 21]
OLD_K = [9, 13, 17, 19, 19, 20, 18, 19]
COLLAPSE_K = [4, 4, 0, 0, 0, 0, 0, 0, 0, 0]


def test_tfkeras2_lr_history():
    result = diagnose(read_history(DATA / "tfkeras2_lr.csv"))
    assert smallest_val_size(TFKERAS2_K, 30) == 30  # so inferring 30 is the honest answer
    assert result.val_size == 30 and result.val_size_inferred is True
    assert result.lattice_step == pytest.approx(1 / 30)
    check_epoch_rows(result, TFKERAS2_K, 30)

    beyond = sum(fisher_p(a, b, 30) < 0.05 for a, b in zip(TFKERAS2_K, TFKERAS2_K[1:]))
    assert (result.changes_tested, result.changes_beyond_noise) == (11, beyond)

    drop = result.largest_drop
    assert (drop.from_epoch, drop.to_epoch, drop.images) == (2, 3, -4)
    assert drop.within_noise is True
    assert drop.p_value == pytest.approx(fisher_p(24, 20, 30), rel=1e-6)
    # the largest of 11 moves: Bonferroni, interval at 1 - 0.05/11
    assert drop.scanned == 11 and drop.p_adjusted == pytest.approx(min(1, 11 * fisher_p(24, 20, 30)))
    assert drop.smallest_flagged == min(j for j in range(1, 25) if fisher_p(24, 24 - j, 30) < 0.05 / 11)
    low, high = newcombe_difference(20, 24, 30, z=NormalDist().inv_cdf(1 - 0.025 / 11))
    assert (drop.low, drop.high) == (pytest.approx(low, abs=1e-6), pytest.approx(high, abs=1e-6))

    # rates by design: 1e-3 for epochs 0-4, 1e-4 for 5-6, 1e-5 for 7-8, 1e-6 for 9-10, 1e-7 for 11
    assert result.lr_cuts == [5, 7, 9, 11]
    assert result.lr_collapse_epoch == 9  # 1e-5 is 1% of 1e-3, not below it; 1e-6 is
    assert result.lr_epochs_after_collapse == 3  # epochs 9..11
    assert result.lr_initial == pytest.approx(1e-3, rel=1e-6)
    assert result.lr_final == pytest.approx(1e-7, rel=1e-6)
    # best is 24 at epoch 2; every later epoch is below it, so each cut follows 'worse' epochs
    ties = result.lr_cuts_after_ties
    assert ties.consistent and ties.patience_inferred == 2
    assert (ties.cuts, ties.after_ties_only, ties.after_worse) == (4, 0, 4)

    assert result.best_val_accuracy_epoch == 2
    val_loss = read_history(DATA / "tfkeras2_lr.csv")["val_loss"]
    assert result.best_val_loss_epoch == int(np.argmin(val_loss))

    verdict = result.verdict
    assert f"{beyond} of 11 epoch-to-epoch changes" in verdict
    assert "4 images (13.3 points) between epochs 2 and 3" in verdict
    assert f"within noise (p={fisher_p(24, 20, 30):.2f}; p=1.00 adjusted for scanning 11 moves" in verdict
    assert f"as the largest of 11 moves on 30 images, a drop from there is flagged only at {drop.smallest_flagged} images or more" in verdict
    assert "Fisher’s test of one move chosen in advance detects only drops" in verdict
    assert "down to 1e-06, 0.1% of its start (0.001), at epoch 9" in verdict
    assert "flat tail is the schedule" in verdict
    assert "--val-size" in verdict  # n was inferred: say how to override it


def test_keras3_learning_rate_history_drop_is_real_only_before_the_scan_adjustment():
    result = diagnose(read_history(DATA / "keras3_learning_rate.csv"))
    assert result.val_size == smallest_val_size(KERAS3_K, 30) == 30
    check_epoch_rows(result, KERAS3_K, 30)
    drop = result.largest_drop
    assert (drop.from_epoch, drop.to_epoch, drop.images) == (5, 6, -10)
    p = fisher_p(24, 14, 30)
    moves = len(KERAS3_K) - 1
    # 10 of 30 images lost is p = 0.015 as one pre-chosen move, but it is the largest of all
    # moves: Bonferroni over them leaves it within noise
    assert p < 0.05 and drop.within_noise_unadjusted is False
    assert drop.p_adjusted == pytest.approx(min(1, moves * p)) and drop.p_adjusted > 0.05
    assert drop.within_noise is True
    assert drop.p_value == pytest.approx(p, rel=1e-6)
    low, high = newcombe_difference(14, 24, 30, z=NormalDist().inv_cdf(1 - 0.025 / moves))
    assert drop.low == pytest.approx(low, abs=1e-6) and drop.high == pytest.approx(high, abs=1e-6)
    assert result.lr_cuts == [7, 9, 11, 13]
    assert result.lr_collapse_epoch == 11 and result.lr_epochs_after_collapse == 4
    assert "within noise" in result.verdict and "does not show the model did not get worse" in result.verdict


def test_history_json_without_learning_rate():
    result = diagnose(read_history(DATA / "history.json"))
    assert result.val_size == smallest_val_size(JSON_K, 30) == 30
    check_epoch_rows(result, JSON_K, 30)
    assert result.lr_collapse_epoch is None
    assert result.lr_epochs_after_collapse is None
    assert result.lr_cuts is None and result.lr_cuts_after_ties is None
    assert "no learning rate" in result.verdict
    drop = result.largest_drop
    assert (drop.from_epoch, drop.to_epoch, drop.images) == (6, 7, -2)
    whole = result.first_to_last  # 12/30 -> 21/30: each step is noise, the whole rise is not
    p = fisher_p(12, 21, 30)
    assert p < 0.05 and result.changes_beyond_noise == 0
    assert (whole.from_epoch, whole.to_epoch, whole.images) == (0, 7, 9)
    assert whole.p_value == pytest.approx(p, rel=1e-6) and whole.within_noise is False
    assert f"rose from 12/30 (epoch 0) to 21/30 (epoch 7), 9 images: larger than noise (p={p:.2g})" \
        in result.verdict


def test_old_keras_acc_history():
    result = diagnose(read_history(DATA / "old_keras_acc.csv"))
    assert result.val_size == smallest_val_size(OLD_K, 30) == 30
    check_epoch_rows(result, OLD_K, 30)


def test_smallest_n_rule_and_explicit_val_size():
    history = read_history(DATA / "one_class_collapse.csv")
    # 4/30 = 2/15 and 0/30: every value is a whole number of images out of 15 already
    assert smallest_val_size(COLLAPSE_K, 30) == 15
    inferred = diagnose(history)
    assert inferred.val_size == 15 and inferred.val_size_inferred is True
    assert "pass --val-size if it is not 15" in inferred.verdict

    given = diagnose(history, val_size=30)
    assert given.val_size == 30 and given.val_size_inferred is False
    check_epoch_rows(given, COLLAPSE_K, 30)
    assert "--val-size" not in given.verdict
    assert "one class" in given.verdict  # 0 of 30 right at the end
    # a multiple of the true size is also a valid lattice
    assert [row.k for row in diagnose(history, val_size=60).epochs] == [2 * k for k in COLLAPSE_K]


def test_cuts_after_ties():
    # ReduceLROnPlateau(monitor="val_accuracy", factor=0.1, patience=2) by hand: best 24 at
    # epoch 2, ties at 3-4 -> cut seen at 5; best 26 at 5, ties at 6-7 -> cut at 8; ties 8-9 -> 10
    ks = [18, 21, 24, 24, 24, 26, 26, 26, 26, 26, 26, 26]
    rates = [1e-3] * 5 + [1e-4] * 3 + [1e-5] * 2 + [1e-6] * 2
    frame = pd.DataFrame({"epoch": range(12), "val_accuracy": [float(np.float32(k / 30)) for k in ks],
                          "learning_rate": [float(np.float32(r)) for r in rates]})
    result = diagnose(frame)
    ties = result.lr_cuts_after_ties
    assert result.lr_cuts == [5, 8, 10]
    assert ties.consistent and ties.patience_inferred == 2
    assert (ties.cuts, ties.after_ties_only, ties.after_worse) == (3, 3, 0)
    assert "3 of 3 after ties alone" in result.verdict
    assert result.largest_drop is None
    assert "never fell" in result.verdict
    assert result.best_val_loss_epoch is None and result.best_val_accuracy_epoch == 5


def test_schedule_not_from_plateau_on_val_accuracy_is_not_explained_by_ties():
    # a step schedule that cuts while val accuracy is still improving
    ks = [10, 12, 14, 16, 18, 20, 22, 24]
    frame = pd.DataFrame({"epoch": range(8), "val_accuracy": [k / 30 for k in ks],
                          "learning_rate": [1e-3] * 4 + [1e-4] * 4})
    result = diagnose(frame, val_size=30)
    assert result.lr_cuts == [4]
    assert result.lr_cuts_after_ties.consistent is False
    assert "ReduceLROnPlateau" not in result.verdict
    assert "never fell below 1% of its start (from 0.001 to 0.0001)" in result.verdict


def test_history_epochs_are_kept_when_they_do_not_start_at_zero():
    ks = [20, 25, 18, 18, 18, 18]
    frame = pd.DataFrame({"epoch": range(10, 16), "val_accuracy": [k / 30 for k in ks],
                          "learning_rate": [1e-3, 1e-3, 1e-3, 1e-4, 1e-5, 1e-6]})
    result = diagnose(frame, val_size=30)
    check_epoch_rows(result, ks, 30, labels=list(range(10, 16)))
    assert (result.largest_drop.from_epoch, result.largest_drop.to_epoch) == (11, 12)
    assert result.lr_collapse_epoch == 15 and result.lr_epochs_after_collapse == 1
    assert result.lr_cuts == [13, 14, 15]


def test_best_epoch_optimism_matches_the_exact_expected_maximum():
    result = diagnose(read_history(DATA / "tfkeras2_lr.csv"))
    # plateau: the epochs whose k is within noise of the best (24/30) by Fisher's test
    plateau = [k for k in TFKERAS2_K if fisher_p(24, k, 30) >= 0.05]
    mean = sum(plateau) / (30 * len(plateau))
    basis = result.best_epoch_optimism
    assert basis.true_accuracy == pytest.approx(mean, abs=1e-9) and basis.upper_bound is True
    assert basis.epochs == len(plateau) and basis.epochs_total == 12 and basis.val_size == 30
    exact = exact_expected_optimism(30, len(plateau), mean)
    assert result.best_epoch_expected_optimism == pytest.approx(exact, abs=0.003)  # simulated
    assert "upper bound" in result.verdict and "upper bound" in format_diagnosis(result)


def test_best_epoch_optimism_on_a_rising_curve_is_near_the_truth():
    # true accuracy rises for 8 epochs, then stays at 0.75; each epoch scored on 30 fresh images.
    # Pooling all epochs (the earlier basis) over-stated the optimism by about 3 points.
    rng = np.random.default_rng(0)
    p_true = np.minimum(0.75, 0.35 + 0.05 * np.arange(20))
    truth, estimate = [], []
    for _ in range(60):
        k = rng.binomial(30, p_true)
        truth.append(k.max() / 30 - p_true[np.argmax(k)])
        result = diagnose(pd.DataFrame({"epoch": range(20), "val_accuracy": k / 30}), val_size=30)
        estimate.append(result.best_epoch_expected_optimism)
    assert np.mean(estimate) == pytest.approx(np.mean(truth), abs=0.015)


def test_single_epoch():
    result = diagnose(pd.DataFrame({"epoch": [0], "val_accuracy": [0.7]}), val_size=30)
    assert result.changes_tested == 0 and result.largest_drop is None
    assert result.epochs[0].k == 21
    text = format_diagnosis(result)
    # Wilson 95% for 21/30 by hand: (21 + 1.92) / 33.84 = 0.677 +- 1.96 / 33.84 * sqrt(6.3 + 0.96)
    assert "21/30  52.1% - 83.3%" in text
    assert "largest drop:     none (val accuracy never fell)" in text
    assert "best-epoch bias" not in text   # one epoch: no choice, no optimism


def test_result_is_frozen_plain_python_and_its_dict_is_the_same_json():
    for name in ("tfkeras2_lr.csv", "keras3_learning_rate.csv", "history.json", "one_class_collapse.csv"):
        result = diagnose(read_history(DATA / name))
        fields = dataclasses.asdict(result)     # the attributes as they are: no numpy, no NaN
        assert plain_json_only(fields), name
        assert result.to_dict() == fields == json.loads(json.dumps(fields, allow_nan=False)), name
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.val_size = 60


# `valstat diagnose --json` keys, as main printed them before diagnose() returned a dataclass
JSON_KEYS = {"val_size", "val_size_inferred", "lattice_step", "level", "epochs", "noise_test",
             "changes_tested", "changes_beyond_noise", "largest_drop", "first_to_last",
             "detect_power", "detectable_drop_last", "lr_collapse_epoch", "lr_epochs_after_collapse",
             "lr_initial", "lr_final", "lr_cuts", "lr_cuts_after_ties", "lr_collapse_threshold",
             "best_val_accuracy_epoch", "best_val_loss_epoch", "best_epoch_expected_optimism",
             "best_epoch_optimism", "lr_at_collapse", "has_val_loss", "verdict",
             "val_loss_not_finite",   # added: the epochs whose val_loss is NaN or infinite
             "loss_not_finite", "diverged_epoch"}   # added: a NaN or infinite training loss
JSON_EPOCH_KEYS = {"epoch", "val_accuracy", "k", "low", "high", "change_images", "p_value",
                   "within_noise", "detectable_drop"}
JSON_NESTED_KEYS = {
    "largest_drop": {"from_epoch", "to_epoch", "images", "within_noise", "p_value", "p_adjusted",
                     "scanned", "within_noise_unadjusted", "smallest_flagged", "discordant", "test",
                     "low", "high"},
    "first_to_last": {"from_epoch", "to_epoch", "images", "p_value", "within_noise"},
    "lr_cuts_after_ties": {"monitor", "patience_inferred", "cuts", "after_ties_only", "after_worse",
                           "other", "consistent"},
    "best_epoch_optimism": {"true_accuracy", "epochs", "epochs_total", "plateau_epochs", "val_size",
                            "expected_max", "low", "high", "upper_bound", "assumption"},
}
LR_KEYS = ("lr_collapse_epoch", "lr_epochs_after_collapse", "lr_initial", "lr_final", "lr_cuts",
           "lr_at_collapse")
STEP_SCHEDULE = ("epoch,val_accuracy,learning_rate\n"   # cut once, never below 1 % of the start
                 + "".join(f"{e},{(10 + 2 * e) / 30!r},{1e-3 if e < 4 else 1e-4}\n" for e in range(8)))


@pytest.mark.parametrize("history, args, null", [
    ("tfkeras2_lr.csv", [], set()),                                      # rate column, collapses
    ("one_class_collapse.csv", [], set()),                               # ends on one class
    ("history.json", [], {*LR_KEYS, "lr_cuts_after_ties"}),              # no rate column
    ("step_schedule.csv", ["--val-size", "30"],                          # rate column, no collapse
     {"largest_drop", "best_val_loss_epoch", "lr_collapse_epoch", "lr_epochs_after_collapse",
      "lr_at_collapse"}),
    ("one_epoch.csv", ["--val-size", "30"],                              # nothing to compare
     {*LR_KEYS, "lr_cuts_after_ties", "largest_drop", "first_to_last", "best_val_loss_epoch"}),
])
def test_json_keys_are_unchanged(history, args, null, tmp_path):
    from conftest import valstat

    (tmp_path / "step_schedule.csv").write_text(STEP_SCHEDULE)
    (tmp_path / "one_epoch.csv").write_text("epoch,val_accuracy\n0,0.7\n")
    path = DATA / history if (DATA / history).exists() else tmp_path / history
    done = valstat("diagnose", path, "--json", *args)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) == JSON_KEYS
    assert all(set(row) == JSON_EPOCH_KEYS for row in result["epochs"])
    assert {key for key in JSON_KEYS if result[key] is None} - {"detectable_drop_last", "diverged_epoch"} == null
    for key, keys in JSON_NESTED_KEYS.items():
        assert result[key] is None or set(result[key]) == keys, key


def test_nan_val_loss_becomes_null():
    frame = pd.DataFrame({"epoch": [0, 1], "val_accuracy": [0.5, 0.6], "val_loss": [1.0, np.nan]})
    result = diagnose(frame, val_size=10)
    assert plain_json_only(dataclasses.asdict(result))
    assert result.best_val_loss_epoch == 0


def test_format_diagnosis_text():
    text = format_diagnosis(diagnose(read_history(DATA / "keras3_learning_rate.csv")))
    lines = text.splitlines()
    assert lines[0].startswith("15 epochs; validation set 30 images (inferred)")
    row6 = next(line for line in lines if line.split()[:1] == ["6"])
    assert "14/30" in row6 and "-10" in row6
    low, high = wilson(14, 30)
    assert f"{100 * low:.1f}% - {100 * high:.1f}%" in row6
    assert any(line.startswith("largest drop:") and "10 images (33.3 points)" in line for line in lines)
    assert any(line.startswith("learning rate:") and "4 cuts (at epochs 7, 9, 11, 13)" in line for line in lines)
    assert "verdict:" in lines
    assert max(len(line) for line in lines[lines.index("verdict:"):]) <= 100


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_drop_beyond_noise_alone_but_not_as_the_largest_reads_the_same_everywhere(lang):
    """keras3_learning_rate.csv: 24 -> 14 of 30 is p = 0.015 as one move, but Bonferroni over
    the 14 moves scanned for the largest gives 0.21: table row, summary line and verdict all
    say both, never "beyond noise" in one place and "within noise (p=0.015)" in another."""
    text = format_diagnosis(diagnose(read_history(DATA / "keras3_learning_rate.csv")), lang=lang)
    p = fisher_p(24, 14, 30)
    moves = len(KERAS3_K) - 1
    alone, adjusted = f"p={p:.2g}", f"p={min(1.0, moves * p):.2f}"
    assert p < 0.05 <= moves * p                  # significant alone, not as the largest
    lines = text.splitlines()
    row6 = next(line for line in lines if line.split()[:1] == ["6"])
    drop_line = next(line for line in lines if line.startswith(("largest drop:", "最大下降：")))
    verdict = " ".join(lines[lines.index("verdict:" if lang == "en" else "结论："):])
    if lang == "zh":
        verdict = verdict.replace(" ", "")
    for part in (row6, drop_line, verdict):
        words = (f"significant on its own ({alone})" if lang == "en" else f"单独检验时显著（{alone}）")
        assert words in (part if lang == "en" else part.replace(" ", "")), part
        assert adjusted in part and str(moves) in part
    assert "BEYOND NOISE" not in text and f"within noise ({alone}" not in text


def test_counts_of_one_take_the_singular():
    one = format_diagnosis(diagnose(pd.DataFrame({"epoch": [0], "val_accuracy": [0.5]}), val_size=10))
    assert one.startswith("1 epoch; ")
    two = pd.DataFrame({"epoch": [0, 1], "val_accuracy": [0.5, 0.4], "learning_rate": [1e-3, 1e-5]})
    text = format_diagnosis(diagnose(two, val_size=10))
    assert "1 cut (at epoch 1)" in text and "largest of 1 move)" in text
    assert "0 of 1 epoch-to-epoch change is larger" in text
    assert not any(f" 1 {noun}s" in text for noun in ("epoch", "move", "image", "cut"))


def test_nan_val_loss_epochs_are_named_in_a_note():
    loss = [1.0, 0.9, np.nan, 0.8, np.inf, 0.85]
    frame = pd.DataFrame({"epoch": range(6), "val_accuracy": [0.5, 0.6, 0.6, 0.7, 0.7, 0.6],
                          "val_loss": loss})
    result = diagnose(frame, val_size=10)
    assert result.val_loss_not_finite == [2, 4] and result.best_val_loss_epoch == 3
    en, zh = format_diagnosis(result), format_diagnosis(result, lang="zh")
    assert "val_loss is NaN or infinite at epochs 2, 4" in en and "第 2, 4 轮为 NaN" in zh
    finite = diagnose(frame.assign(val_loss=[1.0] * 6), val_size=10)
    assert finite.val_loss_not_finite == [] and "NaN" not in format_diagnosis(finite)


def test_a_diverged_run_is_diagnosed_up_to_its_divergence():
    # 20 images; the training loss is NaN from epoch 3 to the end, where the broken model scores 2/20
    frame = pd.DataFrame({"epoch": range(6), "loss": [1.0, 0.8, 0.7, np.nan, np.nan, np.nan],
                          "val_accuracy": [0.5, 0.6, 0.65, 0.1, 0.1, 0.1],
                          "val_loss": [1.1, 0.9, 0.8, np.nan, np.nan, np.nan]})
    result = diagnose(frame)
    assert result.val_size == 20                  # inferred from every epoch: 0.65 and 0.1 need 20
    assert result.diverged_epoch == 3 and result.loss_not_finite == []
    assert [row.epoch for row in result.epochs] == [0, 1, 2]
    assert result.largest_drop is None and result.val_loss_not_finite == []   # the drop to 2/20 is the divergence
    en, zh = format_diagnosis(result), format_diagnosis(result, lang="zh")
    assert result.verdict.startswith("The run diverged at epoch 3") and "the 3 epochs before it" in result.verdict
    assert "NaN or infinite from epoch 3: the run diverged there" in en and "从第 3 轮起" in zh
    assert diagnose(frame.assign(loss=1.0)).diverged_epoch is None   # a finite loss: the drop is analysed
    assert diagnose(frame.assign(loss=1.0)).largest_drop.images == -11


def test_a_nan_training_loss_the_run_recovers_from_is_a_note_not_a_divergence():
    frame = pd.DataFrame({"epoch": range(4), "loss": [1.0, np.inf, 0.8, 0.7],
                          "val_accuracy": [0.5, 0.6, 0.6, 0.7]})
    result = diagnose(frame, val_size=10)
    assert result.diverged_epoch is None and result.loss_not_finite == [1] and len(result.epochs) == 4
    assert "the training loss is NaN or infinite at epoch 1, and finite again after" in format_diagnosis(result)
    assert "diverged" not in format_diagnosis(result)


# ---------------------------------------------------------------------------------------------
# refusals


def test_accuracies_on_no_lattice_are_refused_without_val_size():
    history = read_history(DATA / "batch_averaged.csv")
    with pytest.raises(ValstatError, match=r"cannot infer the validation size.*--val-size"):
        diagnose(history)


def test_accuracies_off_the_given_lattice_are_refused():
    history = read_history(DATA / "batch_averaged.csv")
    with pytest.raises(ValstatError, match=r"epoch 0 is not a whole number of images out of 30"):
        diagnose(history, val_size=30)
    with pytest.raises(ValstatError, match=r"epoch 1 is not a whole number of images out of 40.*--val-size"):
        diagnose(pd.DataFrame({"epoch": [0, 1], "val_accuracy": [0.5, 0.7 + 1 / 90]}), val_size=40)


def test_all_zero_or_one_cannot_be_inferred():
    with pytest.raises(ValstatError, match=r"every val_accuracy is 0 or 1.*--val-size"):
        diagnose(pd.DataFrame({"epoch": [0, 1], "val_accuracy": [1.0, 1.0]}))
    assert diagnose(pd.DataFrame({"epoch": [0, 1], "val_accuracy": [1.0, 1.0]}), val_size=30).val_size == 30


@pytest.mark.parametrize("bad", [0, -30, 2.5, "30", True, float("nan"), float("inf")])
def test_bad_val_size(bad):
    with pytest.raises(ValstatError, match=r"--val-size must be a whole number"):
        diagnose(pd.DataFrame({"epoch": [0], "val_accuracy": [0.5]}), val_size=bad)


def test_bad_table_is_refused():
    with pytest.raises(ValstatError, match=r"no validation-accuracy column"):
        diagnose(pd.DataFrame({"epoch": [0], "loss": [0.5]}))
    with pytest.raises(ValstatError, match=r"outside \[0, 1\]"):
        diagnose(pd.DataFrame({"epoch": [0], "val_accuracy": [70.0]}), val_size=30)


def test_diagnose_does_not_import_tensorflow():
    code = ("import sys, valstat.diagnose, valstat.history\n"
            "from valstat.diagnose import diagnose\n"
            "import pandas as pd\n"
            "diagnose(pd.DataFrame({'epoch': [0, 1], 'val_accuracy': [0.5, 0.6]}), val_size=10)\n"
            "bad = [m for m in ('tensorflow', 'keras', 'matplotlib') if m in sys.modules]\n"
            "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]


# ---------------------------------------------------------------------------------------------
# a real Keras training run (the one training test of this file; ~15 s on two cores)


@pytest.fixture(scope="module")
def keras_run(tmp_path_factory):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    keras = pytest.importorskip("keras")
    folder = tmp_path_factory.mktemp("keras_run")
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)

    def data(m):
        x = rng.normal(size=(m, 6)).astype("float32")
        y = np.argmax(x[:, :3] + 0.8 * rng.normal(size=(m, 3)), axis=1).astype("int32")
        return x, y

    x, y = data(60)
    x_val, y_val = data(30)  # an explicit 30-image validation set
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    probe = {"k": [], "lr": []}

    class Probe(keras.callbacks.Callback):
        """Independent reference: images right and the optimiser's rate, every epoch."""

        def on_epoch_begin(self, epoch, logs=None):
            probe["lr"].append(float(self.model.optimizer.learning_rate.numpy()))

        def on_epoch_end(self, epoch, logs=None):
            scores = np.asarray(self.model.predict_on_batch(x_val))
            probe["k"].append(int(np.sum(scores.argmax(axis=1) == y_val)))

    csv_path = folder / "log.csv"
    callbacks = [Probe(),
                 keras.callbacks.ReduceLROnPlateau(monitor="val_accuracy", factor=0.1, patience=2),
                 keras.callbacks.CSVLogger(str(csv_path))]  # after the plateau callback: logs the rate
    with warnings.catch_warnings():  # Keras' own numpy-2 DeprecationWarning while fitting
        warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
        history = model.fit(x, y, validation_data=(x_val, y_val), epochs=14, batch_size=16,
                            verbose=0, callbacks=callbacks)
    json_path = folder / "history.json"
    json_path.write_text(json.dumps({k: [float(v) for v in vs] for k, vs in history.history.items()}))
    return csv_path, json_path, probe


def test_real_keras_history(keras_run):
    csv_path, json_path, probe = keras_run
    ks, rates = probe["k"], probe["lr"]
    frame = read_history(csv_path)
    assert frame["epoch"].tolist() == list(range(14))
    assert "learning_rate" in frame.columns
    np.testing.assert_allclose(frame["learning_rate"], rates, rtol=1e-6)

    from_json = read_history(json_path)
    pd.testing.assert_frame_equal(from_json[frame.columns], frame, check_exact=False, rtol=1e-7)

    # inferred size: the smallest n putting every k/30 on the lattice (30 for this seed)
    expected_n = smallest_val_size(ks, 30)
    result = diagnose(frame)
    assert result.val_size == expected_n and result.val_size_inferred is True
    assert expected_n == 30

    result = diagnose(frame, val_size=30)
    check_epoch_rows(result, ks, 30)

    cut_positions = [i for i in range(1, 14) if rates[i] < rates[i - 1] * (1 - 1e-6)]
    assert cut_positions, "the plateau callback should have cut the rate in this run"
    assert result.lr_cuts == cut_positions
    # first rate clearly below 1% of the start (float32 logs an exact 1% a hair under it)
    collapse = next((i for i, r in enumerate(rates) if r < 0.01 * rates[0] * (1 - 1e-4)), None)
    assert result.lr_collapse_epoch == collapse
    if collapse is not None:
        assert result.lr_epochs_after_collapse == 14 - collapse
    assert result.best_val_accuracy_epoch == int(np.argmax(ks))
    assert result.best_val_loss_epoch == int(np.argmin(frame["val_loss"]))
    assert plain_json_only(dataclasses.asdict(result))
    assert "30 images" in format_diagnosis(result)


def test_diagnosis_speaks_chinese_from_the_same_string_tables():
    k = [15, 18, 21, 24, 25, 24, 14, 22, 23, 23, 23]
    result = diagnose(pd.DataFrame({"epoch": range(len(k)), "val_accuracy": np.array(k) / 30}), val_size=30)
    en, zh = format_diagnosis(result), format_diagnosis(result, lang="zh")
    assert "verdict:" in en and "结论：" in zh and "verdict:" not in zh
    # the same numbers in both: the drop of 10 images, the Wilson band of 23/30, the step
    for text in (en, zh):
        assert "23/30  59.1% - 88.2%" in text and "3.3" in text
    assert "10 张图像" in zh and "10 images" in en


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_within_noise_rows_say_which_drop_the_test_could_detect(lang):
    from power_reference import fisher_drop_reference

    result = diagnose(read_history(DATA / "keras3_learning_rate.csv"))
    text = format_diagnosis(result, lang=lang)
    detects = "detects ≥ {}" if lang == "en" else "可检出 ≥ {}"
    for prev, row in zip(KERAS3_K, result.epochs[1:]):
        if row.within_noise:
            # Fisher's test (the one applied) at the previous epoch's accuracy, 80 % power
            expected = fisher_drop_reference(30, prev / 30)
            assert row.detectable_drop == expected
            line = next(t for t in text.splitlines() if t.split()[:1] == [str(row.epoch)])
            assert line.endswith(detects.format(expected))
        else:
            assert row.detectable_drop is None
    last = fisher_drop_reference(30, KERAS3_K[-1] / 30)
    assert result.detectable_drop_last == last
    if lang == "en":
        assert f"Fisher’s test of one move chosen in advance detects only drops of {last} images or more with 80% power" in result.verdict


def test_report_and_terminal_state_the_same_numbers(tmp_path):
    """`diagnose --report` reads the diagnosis the terminal shows: the same detection threshold
    (at the last epoch's accuracy), plateau epochs, bound and drop p (0.054, not 0.05)."""
    import html as html_lib
    import re

    from conftest import valstat
    from power_reference import fisher_drop_reference

    k = [9, 12, 15, 18, 20, 21, 22, 23, 24, 24, 16, 16, 17] + [16] * 17
    pd.DataFrame({"epoch": range(30), "val_accuracy": np.array(k) / 30}).to_csv(tmp_path / "log.csv",
                                                                                index=False)
    done = valstat("diagnose", tmp_path / "log.csv", "--val-size", "30", "--report", tmp_path / "r")
    assert done.returncode == 0, done.stderr
    cli = " ".join(done.stdout.split())
    page = html_lib.unescape(re.sub(r"<[^>]+>", " ", (tmp_path / "r" / "index.html").read_text()))
    page = " ".join(page.split())
    detect = fisher_drop_reference(30, k[-1] / 30)
    for text in (cli, page):
        assert f"at the last epoch’s 53.3%, Fisher’s test of one move chosen in advance detects only drops of {detect} images" in text
    p = fisher_p(24, 16, 30)
    assert f"{p:.2g}" == "0.054" and "p=0.054" in cli and "p = 0.054" in page
    assert "p = 0.05)" not in page and "this arm" not in page
    epochs = int(re.search(r"best of (\d+) plateau epochs", cli).group(1))
    bound = re.search(r"at most \+(\d+\.\d) points expected", cli).group(1)
    assert f"about +{bound} points" in page and f"the {epochs} epochs within noise of the best" in page
    assert epochs == sum(fisher_p(24, x, 30) >= 0.05 for x in k)   # epochs not below the best


def test_a_run_diverged_from_its_first_epoch_is_refused():
    frame = pd.DataFrame({"epoch": [1, 2], "loss": [np.nan, np.nan], "val_accuracy": [0.1, 0.1]})
    with pytest.raises(ValstatError, match=r"NaN or infinite in every epoch \(from epoch 1\): the run diverged at once"):
        diagnose(frame, val_size=10)


def test_zero_correct_is_not_blamed_on_a_collapse_alone():
    # a one-class network scores its class's share (3/30 on a stratified 10-class set), not 0/30
    frame = pd.DataFrame({"epoch": range(3), "val_accuracy": [4 / 30, 2 / 30, 0.0]})
    verdict = diagnose(frame, val_size=30).verdict
    assert "scores that class’s share of the validation images, not 0, unless the class is missing" in verdict
    assert "validation labels do not match the training labels" in verdict
