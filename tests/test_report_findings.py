"""Wording of the report's findings and advice: counts that say what they count, singular and
plural, the arm the validation-size advice is for."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from valstat.report import content
from valstat.report.analysis import analyse
from valstat.report.text import Strings
from valstat.store import load_tables
from valstat.synthetic import build_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("findings") / "store", arms=("baseline", "constant_lr"),
                       seeds=4, folds=1, epochs=20, vary=("split", "init", "order"))


def _finding(out_dir, name, lang="en"):
    analysis = analyse(load_tables(out_dir))
    return next(f for f in content.findings(analysis, Strings(lang)) if f["id"] == name)["paragraphs"]


def _plateau_median(epochs: pd.DataFrame, n: int) -> int:
    """Median over runs of the epochs within noise of the run's best (two-sided Fisher, p ≥ 0.05)."""
    sizes = []
    for _, run in epochs.groupby("run_id"):
        k = np.rint(run["val_accuracy"].to_numpy() * n).astype(int)
        best = k.max()
        sizes.append(sum(sps.fisher_exact([[best, n - best], [x, n - x]])[1] >= 0.05 for x in k))
    return int(np.median(sizes))


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_best_epoch_sentence_counts_every_epoch_and_the_noise_sentence_the_plateau(store, lang):
    tables = load_tables(store)
    epochs = tables.epochs.merge(tables.runs[["run_id", "arm"]], on="run_id")
    paragraphs = _finding(store, "selection", lang)
    for arm in ("baseline", "constant_lr"):
        part = epochs[(epochs["arm"] == arm) & epochs["val_accuracy"].notna()]
        counts = part.groupby("run_id")["epoch"].count()
        assert counts.nunique() == 1
        every, plateau = int(counts.iloc[0]), _plateau_median(part, 30)
        assert plateau < every                      # the two counts differ in this store
        body = next(p for p in paragraphs if p.startswith(arm))
        assert (f"best of all {every} epochs" if lang == "en" else f"从全部 {every} 轮中") in body
        noise = paragraphs[paragraphs.index(body) + 1]
        assert (f"a median of {plateau} per run" if lang == "en" else f"中位数为 {plateau} 轮") in noise


def test_last_epoch_sentence_says_over_or_under_with_the_size(store):
    tables = load_tables(store)
    epochs = tables.epochs.merge(tables.runs[["run_id", "arm"]], on="run_id")
    paragraphs = _finding(store, "selection")
    finals = [p for p in paragraphs if p.startswith("Taking the last epoch instead")]
    for arm, sentence in zip(("baseline", "constant_lr"), finals, strict=True):
        last = epochs[epochs["arm"] == arm].sort_values("epoch").groupby("run_id").tail(1)
        mean = float((last["val_accuracy"] - last["truth_accuracy"]).mean())
        word = "overstated" if mean >= 0 else "understated"
        assert sentence.startswith(f"Taking the last epoch instead {word} accuracy by "
                                   f"{abs(100 * mean):.1f} points")


def test_counts_take_singular_or_plural_in_english(store):
    from valstat.report.text import HERE

    assert "(s)" not in (HERE / "en.toml").read_text(encoding="utf-8")
    S = Strings("en")
    assert [S.count("runs", n) for n in (1, 2)] == ["1 run", "2 runs"]
    assert [S.count("flips", n) for n in (1, 3)] == ["1 flip", "3 flips"]
    body = _finding(store, "selection")[0]
    assert "(4 runs in all)" in body


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_validation_size_advice_is_given_for_each_arm_by_name(store, lang):
    from statsmodels.stats.proportion import proportion_confint

    tables = load_tables(store)
    last = tables.epochs.sort_values("epoch").groupby("run_id").tail(1)
    last = last.merge(tables.runs[["run_id", "arm"]], on="run_id")
    advice = content.advice(analyse(load_tables(store)), Strings(lang))
    for arm in ("baseline", "constant_lr"):
        mean = float(last.loc[last["arm"] == arm, "val_accuracy"].mean())
        k = int(np.floor(mean * 30 + 0.5))
        low, high = proportion_confint(k, 30, alpha=0.05, method="wilson")
        if lang == "en":
            expected = (f"Validation size for {arm}: one model at about {100 * mean:.0f}% accuracy "
                        f"is known to ±{100 * (high - low) / 2:.1f} points with n = 30 images")
        else:
            expected = f"验证集大小（{arm}）：准确率约为 {100 * mean:.0f}% 的单个模型，用 n = 30 张图像只能确定到 ±{100 * (high - low) / 2:.1f} 个百分点"
        assert sum(expected in line for line in advice) == 1, expected


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("mode, cuts, patience", [("min", 1, 1), ("min", 3, 2), ("max", 1, 1), ("max", 4, 2)])
def test_rate_cut_sentences_count_cuts_epochs_and_ties(store, lang, mode, cuts, patience):
    import dataclasses

    from valstat.results import PlateauCuts

    analysis = analyse(load_tables(store))
    arm = "baseline"
    plateau = PlateauCuts(monitor="val_loss" if mode == "min" else "val_accuracy", mode=mode, patience=patience,
                          inferred=False, cuts=cuts, after_ties_only=cuts - 1, after_worse=1, other=0)
    analysis.summary.arms[arm] = dataclasses.replace(analysis.summary.arms[arm], plateau_cuts=plateau)
    S = Strings(lang)
    text = " ".join(next(f for f in content.findings(analysis, S) if f["id"] == "flat")["paragraphs"])
    if lang == "zh":
        assert f"{cuts} 次学习率下调" in text
        return
    cut_words = "1 rate cut" if cuts == 1 else f"{cuts} rate cuts"
    if mode == "min":
        assert f"{arm} monitors val_loss: {cut_words} (1 after a worse epoch)." in text
    else:
        assert f"{arm} made {cut_words}: {cuts - 1} came after " + ("1 epoch " if patience == 1 else f"{patience} epochs ") in text
        assert ("so 1 tie in a row" if patience == 1 else f"so {patience} ties in a row") in text
    assert "1 rate cuts" not in text and "1 epochs" not in text and "1 ties" not in text


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_smooth_finding_on_runs_whose_accuracy_never_moved_has_no_median_of_nothing(lang):
    from types import SimpleNamespace

    from valstat.synthetic import fake_store

    # every run predicts class 0 for every image at every epoch: accuracy never moves, the loss does
    runs, epochs, predictions, meta, _ = fake_store(arms=("a",), seeds=2, folds=1, epochs=3, shared_split=False)
    predictions = predictions.assign(predicted=0)
    epochs = epochs.assign(val_accuracy=1 / 3, val_loss=1.1 - 0.01 * epochs["epoch"])
    analysis = analyse(SimpleNamespace(runs=runs, epochs=epochs, predictions=predictions, meta=meta))
    text = " ".join(next(f for f in content.findings(analysis, Strings(lang)) if f["id"] == "smooth")["paragraphs"])
    if lang == "en":
        assert ("a: validation accuracy never changed from one epoch to the next (4 epoch-to-epoch steps); "
                "the loss changed at 4 of 4 epoch-to-epoch steps") in text
    else:
        assert "a：验证集准确率在相邻轮次之间从未变化（4 次相邻轮次）" in text
    assert "–" not in text


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_arms_on_one_shared_split_are_compared_by_the_crossed_t(tmp_path, lang):
    # folds=1 without "split" in vary: every seed and arm scores the same 30 images
    out_dir = build_store(tmp_path / "shared", arms=("baseline", "constant_lr"), seeds=4, folds=1, epochs=6)
    analysis = analyse(load_tables(out_dir))
    (comp,) = analysis.summary.comparisons
    assert comp.corrected_t.method == "crossed"
    S = Strings(lang)
    paragraphs = next(f for f in content.findings(analysis, S) if f["id"] == "compare")["paragraphs"]
    crossed = [p for p in paragraphs if p.startswith(S("findings.compare_t_crossed", images=30, t="", df="",
                                                       p="")[:12])]
    df = comp.corrected_t.df
    assert len(crossed) == 1 and f"{df:.1f}".removesuffix(".0") in crossed[0]
    assert S["findings.compare_t_shared"] not in paragraphs   # the approximate-p caveat is for folds
    assert S["methods.compare_crossed"] in content.methods(analysis, S)
    own = build_store(tmp_path / "own", arms=("baseline", "constant_lr"), seeds=3, folds=1, epochs=6,
                      vary=("split", "init", "order"))
    own_analysis = analyse(load_tables(own))
    assert own_analysis.summary.comparisons[0].corrected_t.method == "corrected-resampled"
    assert S["methods.compare_crossed"] not in content.methods(own_analysis, S)
