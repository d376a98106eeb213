"""valstat.summary.summarize / format_summary on synthetic store tables with known structure."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from interval_reference import korn_graubard
from valstat.core import Settings
from valstat.errors import ValstatError
from valstat.stats import crossed_mean_interval, curve_changes, lr_collapse, plateau_cuts_after_ties, runs_needed
from valstat.stats.flips import image_flips
from valstat.synthetic import fake_store
from valstat.report.stats_text import format_summary
from valstat.splits import run_id_for
from valstat.summary import summarize

ARM_KEYS = {"n_runs", "n_diverged", "val_size", "lattice_step", "final_val_accuracy", "best_val_accuracy",
            "moves_within_noise_share", "variance_components", "finite_sample", "lr_collapse",
            "one_class_collapse", "plateau_cuts", "optimism", "val_size_for_halfwidth"}


def summary_dict(*tables, **kwargs) -> dict:
    """summarize(...).to_dict(): the JSON `valstat stats --json` prints."""
    return summarize(*tables, **kwargs).to_dict()


def store(**kwargs):
    """Synthetic store: runs, epochs, predictions, meta (see valstat.synthetic.fake_store)."""
    return fake_store(**kwargs)[:4]


@pytest.fixture(scope="module")
def two_arms():
    """Two arms with one diverged run, counted (Settings(count_diverged=True)) so that the
    expected values below are computed from every run of the frames."""
    tables = store(seeds=3, folds=2, epochs=8, diverged=("base", 1, 1, 3), seed=1)
    return tables, summary_dict(*tables, settings=Settings(count_diverged=True))


def final_correct(preds, run_id):
    rows = preds[preds["run_id"] == run_id]
    last = rows[rows["epoch"] == rows["epoch"].max()].sort_values("example")
    return (last["label"] == last["predicted"]).to_numpy()


def test_output_is_plain_json_with_the_documented_keys(two_arms):
    _, summary = two_arms
    json.dumps(summary, allow_nan=False)
    assert set(summary) >= {"experiment", "arm_names", "arms", "comparisons", "runs_needed"}
    assert summary["arm_names"] == ["base", "alt"] and summary["runs_needed"]["runs"] == runs_needed(0.75, 0.05, 0.05)
    for arm in summary["arms"].values():
        assert set(arm) >= ARM_KEYS
    base = summary["arms"]["base"]
    assert (base["n_runs"], base["n_diverged"], base["val_size"]) == (6, 1, 30)
    assert base["lattice_step"] == pytest.approx(1 / 30)
    assert set(base["val_size_for_halfwidth"]) == {"0.05", "0.10"}


def test_final_accuracy_interval_from_the_frames(two_arms):
    (runs, epochs, _, _), summary = two_arms
    last = epochs.sort_values("epoch").groupby("run_id").tail(1).merge(runs[["run_id", "arm", "seed", "fold"]])
    base = last[last["arm"] == "base"]
    unit_means = base.groupby("seed")["val_accuracy"].mean().to_numpy()  # folds of a seed resampled together
    scored = 30 * len(base)    # images scored by the runs in all
    low, high = korn_graubard(unit_means.mean(), sps.sem(unit_means), len(unit_means) - 1, scored)
    res = summary["arms"]["base"]["final_val_accuracy"]
    assert res["estimate"] == pytest.approx(base["val_accuracy"].mean())
    # every seed scores the same two folds: the t interval holds for these images only
    assert res["design"] == "seeds x shared splits" and res["conditional"]["scope"] == "these validation images"
    assert (res["conditional"]["low"], res["conditional"]["high"]) == pytest.approx((low, high))
    table = base.pivot(index="fold", columns="seed", values="val_accuracy").to_numpy()
    crossed = crossed_mean_interval(table)
    expected = korn_graubard(crossed["estimate"], crossed["se"], crossed["df"], scored)
    assert (res["low"], res["high"], res["method"]) == (pytest.approx(expected[0]), pytest.approx(expected[1]),
                                                         "crossed-anova")
    assert res["low"] < low and res["high"] > high  # the image/split part widens it
    assert res["sd"] == pytest.approx(base["val_accuracy"].std(ddof=1)) and res["units"] == "seed"
    best = epochs.merge(runs[["run_id", "arm"]]).query("arm == 'alt'").groupby("run_id")["val_accuracy"].max()
    assert summary["arms"]["alt"]["best_val_accuracy"]["estimate"] == pytest.approx(best.mean())


def test_moves_within_noise_match_curve_changes_per_run(two_arms):
    (runs, epochs, preds, _), summary = two_arms
    within = moves = 0
    for run_id in runs.loc[runs["arm"] == "alt", "run_id"]:
        run_preds = preds[preds["run_id"] == run_id].sort_values(["epoch", "example"])
        correct = (run_preds["label"] == run_preds["predicted"]).to_numpy().reshape(-1, 30)
        df = curve_changes(correct.mean(axis=1), 30, correct=correct)
        changed = df["change_images"].fillna(0) != 0
        moves += int(changed.sum())
        within += int(df.loc[changed, "within_noise"].sum())
    got = summary["arms"]["alt"]["moves_within_noise"]
    assert (got["moves"], got["within_noise"], got["test"]) == (moves, within, "mcnemar")
    assert summary["arms"]["alt"]["moves_within_noise_share"] == pytest.approx(within / moves)


def test_within_noise_says_which_drop_the_test_could_detect(two_arms):
    from power_reference import fisher_drop_reference, mcnemar_drop_reference

    (runs, epochs, preds, meta), summary = two_arms
    # McNemar (per-image predictions) at the chance churn: mean over the consecutive epochs
    # within noise (mid-p McNemar p >= 0.05) of (images lost + images gained) / 2, as a share
    # of the 30 images
    flips = []
    for run_id in runs.loc[runs["arm"] == "alt", "run_id"]:
        run_preds = preds[preds["run_id"] == run_id].sort_values(["epoch", "example"])
        c = (run_preds["label"] == run_preds["predicted"]).to_numpy().reshape(-1, 30)
        for lost, gained in zip(np.sum(c[:-1] & ~c[1:], axis=1), np.sum(~c[:-1] & c[1:], axis=1)):
            m, d = min(lost, gained), lost + gained
            midp = 1.0 if d == 0 else min(1.0, 2 * (sps.binom.cdf(m, d, 0.5) - 0.5 * sps.binom.pmf(m, d, 0.5)))
            if midp >= 0.05:
                flips.append((lost + gained) / 2)
    assert flips
    churn = np.mean(flips) / 30
    (detect,) = summary["arms"]["alt"]["moves_within_noise"]["detectable"]
    expected = mcnemar_drop_reference(30, churn)
    assert (detect["test"], detect["churn"], detect["images"]) == ("mcnemar", pytest.approx(churn), expected)
    text = format_summary(summarize(*two_arms[0], settings=Settings(count_diverged=True)))
    assert f"drops under {expected} images cannot be told from noise (the mid-p McNemar test, 80% power" in text
    # without predictions: Fisher's test at the arm's mean accuracy over the epochs it tested
    plain = summary_dict(runs, epochs, preds.iloc[:0], meta, settings=Settings(count_diverged=True))
    (detect,) = plain["arms"]["alt"]["moves_within_noise"]["detectable"]
    alt = epochs[epochs["run_id"].isin(runs.loc[runs["arm"] == "alt", "run_id"])]
    accuracy = alt["val_accuracy"].mean()
    assert (detect["test"], detect["p"]) == ("fisher", pytest.approx(accuracy))
    assert detect["images"] == fisher_drop_reference(30, accuracy)


def test_dynamics_match_the_per_run_functions(two_arms):
    (runs, epochs, _, _), summary = two_arms
    arm_runs = runs.loc[runs["arm"] == "base", "run_id"]
    collapsed, cuts, ties_only = [], 0, 0
    for run_id in arm_runs:
        run_epochs = epochs[epochs["run_id"] == run_id]
        info = lr_collapse(run_epochs["learning_rate"])
        if info["epoch"] is not None:
            collapsed.append(info["epoch"])
        res = plateau_cuts_after_ties(run_epochs, monitor="val_accuracy", patience=2)
        cuts, ties_only = cuts + res["cuts"], ties_only + res["after_ties_only"]
    base = summary["arms"]["base"]
    assert base["lr_collapse"]["runs"] == len(collapsed)
    assert base["lr_collapse"]["median_epoch"] == (float(np.median(collapsed)) if collapsed else None)
    assert (base["plateau_cuts"]["cuts"], base["plateau_cuts"]["after_ties_only"]) == (cuts, ties_only)
    assert base["one_class_collapse"] == {"runs_ending_collapsed": 1, "runs_ever_collapsed": 1, "runs_with_predictions": 6}
    assert summary["arms"]["alt"]["one_class_collapse"]["runs_ever_collapsed"] == 0


def test_comparisons_are_paired_on_seed_and_fold(two_arms):
    (runs, epochs, preds, _), summary = two_arms
    (comp,) = summary["comparisons"]
    assert (comp["a"], comp["b"], comp["pairs"]) == ("base", "alt", 6) and len(comp["mcnemar"]) == 6
    first = next(m for m in comp["mcnemar"] if (m["seed"], m["fold"]) == (0, 1))
    a, b = final_correct(preds, "base/s0/f1"), final_correct(preds, "alt/s0/f1")
    n10, n01 = int(np.sum(a & ~b)), int(np.sum(~a & b))
    expected = 1.0 if n10 + n01 == 0 else min(1.0, 2 * sps.binom.cdf(min(n10, n01), n10 + n01, 0.5))
    assert (first["b"], first["c"]) == (n10, n01) and first["p_value"] == pytest.approx(expected)
    final = epochs.sort_values("epoch").groupby("run_id")["val_accuracy"].last()
    keys = [(s, f) for s in range(3) for f in range(2)]
    da = np.array([final[run_id_for("base", s, f)] for s, f in keys])
    db = np.array([final[run_id_for("alt", s, f)] for s, f in keys])
    assert comp["probability_of_improvement"]["estimate"] == pytest.approx(np.mean((da > db) + 0.5 * (da == db)))
    d = da - db
    t = d.mean() / np.sqrt((1 / 6 + 30 / 400) * d.var(ddof=1))
    assert comp["corrected_t"]["t"] == pytest.approx(t) and comp["corrected_t"]["df"] == 5
    # spread: base's one run that ends predicting one class leaves 5 pairs where both learned
    def one_class(run_id):
        rows = preds[preds["run_id"] == run_id]
        return rows.loc[rows["epoch"] == rows["epoch"].max(), "predicted"].nunique() == 1

    ca = np.array([one_class(run_id_for("base", s, f)) for s, f in keys])
    cb = np.array([one_class(run_id_for("alt", s, f)) for s, f in keys])
    spread = comp["spread_change"]
    assert (ca.sum(), cb.sum()) == (1, 0)
    assert (spread["collapsed"]["a"], spread["collapsed"]["b"]) == (1, 0)
    assert spread["collapsed"]["difference"] == pytest.approx(-1 / 6)
    learned = ~ca & ~cb
    assert spread["learned_pairs"] == 5
    assert spread["sd"]["sd_a"] == pytest.approx(np.std(da[learned], ddof=1))
    assert spread["sd"]["sd_b"] == pytest.approx(np.std(db[learned], ddof=1))


def test_optimism_and_finite_sample_present(two_arms):
    _, summary = two_arms
    alt = summary["arms"]["alt"]
    assert [r["rule"] for r in alt["optimism"]["rules"]] == ["best_val_accuracy", "best_val_loss", "final"]
    assert alt["optimism"]["expected_from_noise"]["expected_optimism"] > 0
    assert alt["finite_sample"]["folds"] == 2 and alt["finite_sample"]["runs"] == 6
    components = {r["component"]: r for r in alt["variance_components"]}
    assert components["split"]["method"] == "anova-crossed"


def test_one_arm_one_fold_with_a_diverged_run_counted_on_request():
    tables = store(arms=("only",), seeds=4, folds=1, epochs=6, diverged=("only", 2, 0, 2), truth=False)
    summary = summary_dict(*tables, settings=Settings(count_diverged=True))
    json.dumps(summary, allow_nan=False)
    arm = summary["arms"]["only"]
    assert (arm["n_runs"], arm["n_diverged"]) == (4, 1)
    components = {r["component"]: r for r in arm["variance_components"]}
    assert components["split"]["variance"] is None and "not estimable" in components["split"]["note"]
    assert components["seed"]["variance"] == pytest.approx(components["total"]["variance"])
    assert arm["one_class_collapse"]["runs_ending_collapsed"] == 1
    assert arm["finite_sample"]["folds"] == 1 and arm["finite_sample"]["runs"] == 4
    assert arm["optimism"] is None and summary["comparisons"] == []
    assert arm["final_val_accuracy"]["n"] == 4 and arm["final_val_accuracy"]["n_units"] is None
    assert "only" in format_summary(summarize(*tables))


def test_diverged_runs_are_left_out_of_every_number_by_default():
    tables = store(arms=("only",), seeds=4, folds=1, epochs=6, diverged=("only", 2, 0, 2), truth=False)
    arm = summary_dict(*tables)["arms"]["only"]
    assert (arm["n_runs"], arm["n_diverged"], arm["n_counted"]) == (4, 1, 3)
    assert arm["final_val_accuracy"]["n"] == 3 and arm["finite_sample"]["runs"] == 3
    # the diverged run is the one that collapsed to one class: left out, none is counted
    assert arm["one_class_collapse"]["runs_with_predictions"] == 3
    assert arm["one_class_collapse"]["runs_ending_collapsed"] == 0
    assert "left out" in summary_dict(*tables)["notes"][-1]


def test_without_predictions_moves_fall_back_to_fisher():
    runs, epochs, preds, meta = store(seeds=2, folds=2, epochs=5)
    summary = summary_dict(runs, epochs, preds.iloc[:0], meta)
    arm = summary["arms"]["base"]
    assert arm["moves_within_noise"]["test"] == "fisher"
    assert arm["one_class_collapse"] is None and arm["finite_sample"] is None
    assert summary["comparisons"][0]["mcnemar"] == [] and summary["comparisons"][0]["pairs"] == 4


def test_row_order_does_not_matter():
    runs, epochs, preds, meta = store(seeds=2, folds=2, epochs=5, seed=3)
    a = summary_dict(runs, epochs, preds, meta)
    shuffled = preds.sample(frac=1.0, random_state=0)
    b = summary_dict(runs.iloc[::-1], epochs.sample(frac=1.0, random_state=1), shuffled, meta)
    assert a == b


def test_pairs_on_one_shared_split_are_tested_on_their_per_image_differences():
    # one split for all seeds: the t-test is the crossed one on (seed x image) differences, so
    # an arm x image interaction counts as noise; the corrected t over the pairs stays for folds
    runs, epochs, preds, meta = store(seeds=5, folds=1, epochs=4, arm_effects={"alt": 0.1}, seed=11)
    (comp,) = summary_dict(runs, epochs, preds, meta)["comparisons"]
    diffs = np.vstack([final_correct(preds, run_id_for("base", s, 0)).astype(float)
                       - final_correct(preds, run_id_for("alt", s, 0)) for s in range(5)])
    # reference: two-way ANOVA without replicates, both components kept, Satterthwaite df
    R, C = diffs.shape
    rows, cols, grand = diffs.mean(axis=1), diffs.mean(axis=0), diffs.mean()
    ms_r = C * np.sum((rows - grand) ** 2) / (R - 1)
    ms_c = R * np.sum((cols - grand) ** 2) / (C - 1)
    ms_e = np.sum((diffs - rows[:, None] - cols[None, :] + grand) ** 2) / ((R - 1) * (C - 1))
    assert ms_r > ms_e and ms_c > ms_e   # no component clipped at 0 in this store
    var = (ms_r + ms_c - ms_e) / (R * C)
    df = var ** 2 / ((ms_r / (R * C)) ** 2 / (R - 1) + (ms_c / (R * C)) ** 2 / (C - 1)
                     + (ms_e / (R * C)) ** 2 / ((R - 1) * (C - 1)))
    t = grand / np.sqrt(var)
    got = comp["corrected_t"]
    assert got["method"] == "crossed" and got["n_train"] is None
    assert got["t"] == pytest.approx(t) and got["df"] == pytest.approx(df)
    assert got["p_value"] == pytest.approx(2 * sps.t.sf(abs(t), df))
    (folds,) = summary_dict(*store(seeds=3, folds=2, epochs=4, seed=11))["comparisons"]
    assert folds["corrected_t"]["method"] == "corrected-resampled"


def test_known_structure_is_found():
    # a big arm effect and a big split effect, few runs
    tables = store(seeds=6, folds=4, epochs=5, accuracy=0.6, arm_effects={"alt": 0.3}, split_sd=0.15,
                   seed_sd=0.0, seed=4)
    summary = summary_dict(*tables)
    comp = summary["comparisons"][0]
    assert comp["probability_of_improvement"]["estimate"] < 0.1
    assert comp["corrected_t"]["p_value"] < 0.01 and comp["mcnemar_significant"] >= 1
    shares = {r["component"]: r["share"] for r in summary["arms"]["base"]["variance_components"]}
    assert shares["split"] > shares["seed"]


def final_accuracies(epochs):
    last = epochs.sort_values("epoch").groupby("run_id").tail(1).sort_values("run_id")
    return last["val_accuracy"].to_numpy()


def test_split_seed_per_seed_falls_back_to_the_stratified_draw_of_each_run():
    runs, epochs, preds, meta = store(arms=("a",), seeds=4, folds=2, epochs=3, shared_split=False, seed=5)
    summary = summary_dict(runs, epochs, preds, meta)
    finite = summary["arms"]["a"]["finite_sample"]   # every run has its own validation images
    assert finite["method"] == "stratified-per-run"
    n = 30
    per_run, binomial, acc = [], [], []
    for run_id in sorted(runs["run_id"]):
        rows = preds[preds["run_id"] == run_id]
        last = rows[rows["epoch"] == rows["epoch"].max()]
        ok = (last["label"] == last["predicted"]).to_numpy()
        labels = last["label"].to_numpy()
        v = 0.0
        for c in np.unique(labels):
            right = ok[labels == c]
            v += (right.size / n) ** 2 * right.var(ddof=1) / right.size   # W_c² s_c² / n_c
        per_run.append(v)
        p = ok.mean()
        acc.append(p)
        binomial.append(p * (1 - p) / (n - 1))
    empirical = np.var(acc, ddof=1)
    assert np.allclose(acc, final_accuracies(epochs))
    assert finite["sampling_variance"] == pytest.approx(np.mean(per_run))
    assert finite["independent_errors_variance"] == finite["sampling_variance"]
    assert finite["empirical_variance"] == pytest.approx(empirical)
    assert finite["finite_sample_share"] == pytest.approx(min(1.0, np.mean(per_run) / empirical))
    assert finite["model_variance"] == pytest.approx(empirical - np.mean(per_run))
    assert finite["binomial_variance"] == pytest.approx(np.mean(binomial))
    assert (finite["folds"], finite["runs"], finite["n"]) == (8, 8, 30)
    components = {r["component"]: r for r in summary["arms"]["a"]["variance_components"]}
    assert components["split"]["variance"] is None and components["seed"]["variance"] is not None
    assert "drawing 30 validation images per run (stratified by class)" in format_summary(
        summarize(runs, epochs, preds, meta))


def test_without_predictions_own_images_fall_back_to_binomial():
    runs, epochs, preds, meta = store(arms=("a",), seeds=5, folds=1, epochs=3, shared_split=False, seed=6)
    summary = summary_dict(runs, epochs, preds.iloc[:0], meta)
    finite = summary["arms"]["a"]["finite_sample"]
    acc, n = final_accuracies(epochs), 30
    binomial = np.mean(acc * (1 - acc) / (n - 1))
    empirical = np.var(acc, ddof=1)
    assert finite["method"] == "binomial-per-run"
    assert finite["sampling_variance"] == pytest.approx(binomial)
    assert finite["independent_errors_variance"] == pytest.approx(binomial)
    assert finite["finite_sample_share"] == pytest.approx(min(1.0, binomial / empirical))
    assert finite["model_variance"] == pytest.approx(empirical - binomial)
    assert finite["model_variance_clipped"] == pytest.approx(max(0.0, empirical - binomial))
    assert (finite["folds"], finite["runs"], finite["n"]) == (5, 5, 30)
    assert "(binomial)" in format_summary(summarize(runs, epochs, preds.iloc[:0], meta))
    # runs that share their validation images: no per-run draw to speak of, and no Jordan without predictions
    runs, epochs, preds, meta = store(arms=("a",), seeds=5, folds=1, epochs=3, seed=6)
    assert summary_dict(runs, epochs, preds.iloc[:0], meta)["arms"]["a"]["finite_sample"] is None


def test_shared_images_use_jordan_and_say_so(two_arms):
    _, summary = two_arms
    finite = summary["arms"]["alt"]["finite_sample"]
    assert finite["method"] == "jordan-independent-errors"
    assert finite["sampling_variance"] == finite["independent_errors_variance"]


def test_arm_without_runs_and_val_size_sources():
    runs, epochs, preds, meta = store(arms=("a",), seeds=2, folds=1, epochs=3)
    meta = {**meta, "arms": ["a", "ghost"]}
    summary = summary_dict(runs.assign(n_val=np.nan), epochs, preds, meta)
    assert summary["arms"]["ghost"]["n_runs"] == 0 and summary["arms"]["ghost"]["final_val_accuracy"] is None
    assert summary["arms"]["a"]["val_size_source"] == "meta"
    meta2 = {**meta, "arms_config": {}}
    assert summary_dict(runs.assign(n_val=np.nan), epochs, preds, meta2)["arms"]["a"]["val_size"] in (30, 15, 10, 6, 5, 3, 2, 1)


def test_bad_tables_are_user_errors():
    runs, epochs, preds, meta = store(arms=("a",), seeds=2, folds=1, epochs=2)
    with pytest.raises(ValstatError):
        summary_dict(runs.drop(columns="seed"), epochs, preds, meta)
    with pytest.raises(ValstatError):
        summary_dict(runs, epochs.iloc[:0], preds, meta)
    with pytest.raises(ValstatError):
        summary_dict(runs, epochs, pd.concat([preds, preds.iloc[:1]]), meta)
    with pytest.raises(ValstatError):
        summary_dict(pd.concat([runs, runs.iloc[:1]]), epochs, preds, meta)


def test_format_summary_is_compact_text(two_arms):
    tables, _ = two_arms
    text = format_summary(summarize(*tables, settings=Settings(count_diverged=True)))
    assert "arm base" in text and "arm alt" in text and "within noise" in text and "base vs alt" in text
    assert "nan" not in text.lower() and len(text.splitlines()) < 40


def test_format_summary_speaks_chinese_from_the_same_tables(two_arms):
    tables, _ = two_arms
    summary = summarize(*tables)
    en, zh = format_summary(summary, "en"), format_summary(summary, "zh")
    assert "组 base" in zh and "最终验证准确率" in zh and "arm base" not in zh
    assert len(en.splitlines()) == len(zh.splitlines())
    # the numbers are the same in both languages: one formatter
    assert format_summary(summary, "en").count("%") == format_summary(summary, "zh").count("%")


def test_twenty_seeds_on_one_shared_split_get_the_crossed_interval_for_new_images():
    # (fewer seeds get the collapse-aware interval, with the crossed one on their learned runs)
    runs, epochs, preds, meta = store(arms=("base",), seeds=20, folds=1, epochs=5, seed=3)
    res = summary_dict(runs, epochs, preds, meta)["arms"]["base"]["final_val_accuracy"]
    assert res["design"] == "one shared split" and res["method"] == "crossed-anova"
    last = preds[preds["epoch"] == preds["epoch"].max()].sort_values(["run_id", "example"])
    matrix = (last["label"] == last["predicted"]).to_numpy(dtype=float).reshape(20, 30)
    crossed = crossed_mean_interval(matrix, new_run_columns=30)
    low, high = korn_graubard(crossed["estimate"], crossed["se"], crossed["df"], 20 * 30)
    assert (res["low"], res["high"]) == pytest.approx((low, high))
    # one new run: the t prediction interval widened to the effective-size bound (hull)
    assert res["pi_low"] <= crossed["pi_low"] + 1e-12 and res["pi_high"] >= crossed["pi_high"] - 1e-12
    final = epochs.sort_values("epoch").groupby("run_id")["val_accuracy"].last()
    t_low, t_high = korn_graubard(final.mean(), sps.sem(final), 19, 20 * 30)
    assert (res["conditional"]["low"], res["conditional"]["high"]) == pytest.approx((t_low, t_high))
    assert "these validation images CI" in format_summary(summarize(runs, epochs, preds, meta))


#: summary.json keys as written before the typed results (main at 2b061ef, build_store's store)
KEYS_BEFORE = {"arm_names", "arms", "class_names", "comparisons", "experiment", "notes", "runs_needed",
               "unstable_images"}
ARM_KEYS_BEFORE = {"best_val_accuracy", "final_val_accuracy", "finite_sample", "lattice_step", "lr_collapse",
                   "minimum_detectable_difference", "moves_within_noise", "moves_within_noise_share", "n_diverged",
                   "n_runs", "one_class_collapse", "optimism", "plateau_cuts", "val_size", "val_size_for_halfwidth",
                   "val_size_for_halfwidth_probability", "val_size_source", "variance_components"}
COMPARISON_KEYS_BEFORE = {"a", "b", "corrected_t", "mcnemar", "mcnemar_significant", "note", "pairs",
                          "probability_of_improvement"}


def test_summary_json_keeps_its_keys_and_only_adds_settings_and_spread(tmp_path):
    from valstat.store import load_tables
    from valstat.synthetic import build_store

    tables = load_tables(build_store(tmp_path, seeds=2, folds=2, epochs=6))
    summary = summary_dict(tables.runs, tables.epochs, tables.predictions, tables.meta)
    json.dumps(summary, allow_nan=False)
    assert set(summary) - KEYS_BEFORE == {"settings"} and KEYS_BEFORE <= set(summary)
    assert summary["settings"] == {"level": 0.95, "collapse_threshold": 0.01, "count_diverged": False}
    for arm in summary["arms"].values():
        assert set(arm) - ARM_KEYS_BEFORE == {"n_counted"} and ARM_KEYS_BEFORE <= set(arm)
    (comparison,) = summary["comparisons"]
    assert set(comparison) - COMPARISON_KEYS_BEFORE == {"spread_change", "pairs_on_different_images"}
    assert COMPARISON_KEYS_BEFORE <= set(comparison) and comparison["pairs_on_different_images"] == 0


#: nested summary.json keys as written by main at 352964c (before the typed nested results)
INTERVAL_KEYS = {"design", "estimate", "high", "level", "low", "method", "n", "n_units", "note", "pi_high", "pi_low",
                 "scope", "sd"}
CROSSED_KEYS = {"components", "conditional", "df"}
COLLAPSE_KEYS = {"collapsed", "collapse_low", "collapse_high", "learned_low", "learned_high", "share_range"}
CONDITIONAL_KEYS = {"high", "low", "method", "pi_high", "pi_low", "scope"}
FINITE_SAMPLE_KEYS = {"empirical_variance", "finite_sample_share", "folds", "independent_errors_variance", "method",
                      "per_fold", "runs", "sampling_variance"}
JORDAN_KEYS = {"distribution_variance", "distribution_variance_clipped"}
PER_RUN_KEYS = {"model_variance", "model_variance_clipped", "n"}
STRATIFIED_KEYS = {"binomial_share", "binomial_variance"}
PER_FOLD_KEYS = {"distribution_variance", "distribution_variance_clipped", "empirical_variance", "finite_sample_share",
                 "fold", "independent_errors_variance", "n", "runs"}
INDEPENDENT_NOISE_KEYS = {"epochs", "expected_max", "expected_optimism", "high", "low", "method", "n", "true_accuracy"}
PER_IMAGE_NOISE_KEYS = {"epochs", "expected_optimism", "method", "n", "runs"}
NESTED_KEYS = {
    "moves_within_noise": {"moves", "note", "share", "test", "within_noise", "detectable"},  # detectable: new
    "one_class_collapse": {"runs_ending_collapsed", "runs_ever_collapsed", "runs_with_predictions"},
    "optimism": {"expected_from_noise", "expected_from_noise_independent", "rules"},
    "minimum_detectable_difference": {"alpha", "decrease", "difference", "images", "increase", "n", "p", "power",
                                      "test"},
    "val_size_for_halfwidth": {"0.05", "0.10"},
}
RULE_KEYS = {"high", "low", "max", "mean", "n_runs", "rule", "sd"}
COMPONENT_KEYS = {"component", "method", "note", "raw", "share", "variance"}
CORRECTED_T_KEYS = {"df", "mean", "method", "n_test", "n_train", "p_value", "se", "t"}  # method: new
PROPORTION_KEYS = {"estimate", "high", "level", "low", "method", "n"}
MCNEMAR_KEYS = {"b", "c", "exact", "fold", "p_value", "seed", "significant", "statistic"}
UNSTABLE_KEYS = {"class_name", "confused_with", "example", "file", "final_accuracy", "final_correct", "flips",
                 "gained", "label", "lost", "runs", "transitions"}


@pytest.mark.parametrize("design, interval_extra, finite_extra, noise_keys", [
    ("build_store", {"units"} | CROSSED_KEYS, JORDAN_KEYS, PER_IMAGE_NOISE_KEYS),
    ("one_shared", {"conditional"} | COLLAPSE_KEYS, JORDAN_KEYS, PER_IMAGE_NOISE_KEYS),
    ("one_shared_twenty", CROSSED_KEYS, JORDAN_KEYS, PER_IMAGE_NOISE_KEYS),
    ("own_split", {"units"} | COLLAPSE_KEYS, PER_RUN_KEYS | STRATIFIED_KEYS, PER_IMAGE_NOISE_KEYS),
    ("own_split_without_predictions", {"units"}, PER_RUN_KEYS, INDEPENDENT_NOISE_KEYS),
])
def test_nested_summary_json_keys_are_those_main_wrote(tmp_path, design, interval_extra, finite_extra, noise_keys):
    if design == "build_store":
        from valstat.store import load_tables
        from valstat.synthetic import build_store

        t = load_tables(build_store(tmp_path, seeds=2, folds=2, epochs=6))
        tables = (t.runs, t.epochs, t.predictions, t.meta)
    elif design.startswith("one_shared"):
        tables = store(arms=("base", "alt"), seeds=20 if design.endswith("twenty") else 4, folds=1, epochs=5, seed=3)
    else:
        tables = store(seeds=3, folds=2, epochs=6, shared_split=False, seed=7)
        if design == "own_split_without_predictions":
            tables = (tables[0], tables[1], tables[2].iloc[:0], tables[3])
    summary = summary_dict(*tables)
    for arm in summary["arms"].values():
        for metric in ("final_val_accuracy", "best_val_accuracy"):
            assert set(arm[metric]) == INTERVAL_KEYS | interval_extra
            if "conditional" in interval_extra:
                assert set(arm[metric]["conditional"]) == CONDITIONAL_KEYS
            if "components" in interval_extra:
                assert set(arm[metric]["components"]) == {"rows", "columns", "residual"}
        finite = arm["finite_sample"]
        assert set(finite) == FINITE_SAMPLE_KEYS | finite_extra
        assert all(set(row) == PER_FOLD_KEYS for row in finite["per_fold"])
        assert bool(finite["per_fold"]) == (finite["method"] == "jordan-independent-errors")
        for key, keys in NESTED_KEYS.items():
            if key == "one_class_collapse" and design == "own_split_without_predictions":
                assert arm[key] is None
            else:
                assert set(arm[key]) == keys
        assert set(arm["optimism"]["expected_from_noise"]) == noise_keys
        assert set(arm["optimism"]["expected_from_noise_independent"]) == INDEPENDENT_NOISE_KEYS
        assert arm["optimism"]["rules"] and all(set(r) == RULE_KEYS for r in arm["optimism"]["rules"])
        assert arm["variance_components"] and all(set(r) == COMPONENT_KEYS for r in arm["variance_components"])
    (comparison,) = summary["comparisons"]
    assert set(comparison["corrected_t"]) == CORRECTED_T_KEYS
    assert set(comparison["probability_of_improvement"]) == PROPORTION_KEYS
    with_predictions = design != "own_split_without_predictions"
    assert bool(comparison["mcnemar"]) == with_predictions
    assert all(set(m) == MCNEMAR_KEYS for m in comparison["mcnemar"])
    assert set(summary["runs_needed"]) == {"alpha", "beta", "gamma", "noether_independent", "procedure", "runs"}
    assert bool(summary["unstable_images"]) == with_predictions
    for images in summary["unstable_images"].values():
        assert images and all(set(item) == UNSTABLE_KEYS for item in images)
        assert all(set(c) == {"class_name", "label", "times"} for item in images for c in item["confused_with"])


def test_unstable_images_from_the_cube_are_those_of_the_counted_runs_predictions():
    runs, epochs, preds, meta = store(seeds=3, folds=2, epochs=8, diverged=("base", 1, 1, 3), seed=1)
    listed = summary_dict(runs, epochs, preds, meta)["unstable_images"]
    counted = runs[runs["status"] != "diverged"]
    for arm in ("base", "alt"):
        part = preds[preds["run_id"].isin(counted.loc[counted["arm"] == arm, "run_id"])]
        table = image_flips(part)
        table = table[(table["flips"] > 0) | ((table["final_correct"] > 0) & (table["final_correct"] < table["runs"]))]
        expected = table.head(12)
        assert [i["example"] for i in listed[arm]] == expected["example"].tolist()
        assert [(i["flips"], i["lost"], i["gained"], i["final_correct"], i["runs"]) for i in listed[arm]] == \
            list(expected[["flips", "lost", "gained", "final_correct", "runs"]].itertuples(index=False, name=None))


def test_a_store_without_its_schedule_is_analysed_with_the_inferred_one():
    from valstat.core.schedule import infer_patience
    from valstat.stats.plateau import plateau_schedule

    runs, epochs, preds, meta = store(arms=("rec",), seeds=3, folds=1, epochs=30, patience=3, seed=4)
    recorded = dict(meta, store_kind="recorded", arms_config={"rec": {"data": {"val_size": 30}}})
    cuts = summary_dict(runs, epochs, preds, recorded)["arms"]["rec"]["plateau_cuts"]
    assert cuts["inferred"] and cuts["cuts"] > 0 and cuts["other"] == 0   # every cut explained
    # the schedule the old default assumed (val_loss, patience 10) leaves cuts unexplained
    assumed = dict(recorded, arms_config={"rec": {"schedule": {"monitor": "val_loss", "patience": 10}}})
    old = summary_dict(runs, epochs, preds, assumed)["arms"]["rec"]["plateau_cuts"]
    assert not old["inferred"] and old["other"] > 0 and old["cuts"] == cuts["cuts"]
    # on val_accuracy the inference finds the patience that made the curve (Keras-exact schedule)
    one = epochs[epochs["run_id"] == runs["run_id"].iloc[0]]
    acc = one["val_accuracy"].to_numpy()
    assert np.array_equal(plateau_schedule(acc, 1e-3, patience=3, mode="max"), one["learning_rate"].to_numpy())
    assert infer_patience(acc, one["learning_rate"].to_numpy(), "max") == 3


def test_stats_text_states_the_spread_change_in_both_languages():
    tables = store(seeds=4, folds=2, epochs=6, diverged=("base", 1, 1, 3), seed=1)
    summary = summarize(*tables, settings=Settings(count_diverged=True))
    sd = summary.comparisons[0].spread_change.sd
    en, zh = format_summary(summary), format_summary(summary, "zh")
    line = next(x for x in en.splitlines() if x.startswith("  spread alt vs base"))
    assert "collapsed runs 0/8 vs 1/8 (change −12.5 points" in line
    assert f"sd over 7 pairs where both learned {100 * sd.sd_b:.1f} vs {100 * sd.sd_a:.1f} points" in line
    assert f"ratio {sd.sd_b / sd.sd_a:.2f}" in line
    assert "离散程度 alt 对 base：坍缩运行 0/8 对 1/8" in zh and "7 组两次都学会了的配对的标准差" in zh
    # without per-image predictions collapse is unknown and every pair counts
    no_predictions = summarize(tables[0], tables[1], tables[2].iloc[0:0], tables[3],
                               settings=Settings(count_diverged=True))
    assert "collapse unknown (no per-image predictions); sd over 8 pairs" in format_summary(no_predictions)


def test_few_runs_on_their_own_splits_get_the_collapse_aware_interval():
    # 8 runs, each on its own split; run (seed 2) predicts class 0 for every image (a third of
    # its stratified validation images); counted on request
    runs, epochs, preds, meta = store(arms=("a",), seeds=8, folds=1, epochs=4, shared_split=False,
                                      diverged=("a", 2, 0, 3), seed=3)
    summary = summarize(runs, epochs, preds, meta, settings=Settings(count_diverged=True))
    res = summary.to_dict()["arms"]["a"]["final_val_accuracy"]
    acc = final_accuracies(epochs)
    one_class = np.array([rid == run_id_for("a", 2, 0) for rid in sorted(runs["run_id"])])
    assert acc[one_class] == pytest.approx([1 / 3])
    learned = acc[~one_class]
    # the learned runs' mean: effective-size bound at 1 - 0.05/4 on their 7 x 30 images
    l_low, l_high = korn_graubard(learned.mean(), sps.sem(learned), learned.size - 1, 7 * 30, level=0.975)
    p_low, p_high = sps.beta.ppf(0.0125, 1, 8), sps.beta.ppf(0.9875, 2, 7)
    low = min((1 - p) * l_low + p / 3 for p in (p_low, p_high))
    high = max((1 - p) * l_high + p / 3 for p in (p_low, p_high))
    assert res["method"] == "collapse-mixture" and res["collapsed"] == 1
    assert (res["low"], res["high"]) == pytest.approx((low, high))
    assert res["share_range"] == pytest.approx([1 / 3, 1 / 3])
    assert "up to 58% of runs predicting one class (1 of 8 did)" in format_summary(summary)
    assert "允许最多 58% 的运行只预测一个类别" in format_summary(summary, "zh")
    # without per-image predictions nothing tells which runs collapsed: the t interval
    plain = summary_dict(runs, epochs, preds.iloc[:0], meta, settings=Settings(count_diverged=True))
    assert plain["arms"]["a"]["final_val_accuracy"]["method"] == "effective-size"


def test_twenty_runs_on_their_own_splits_get_the_effective_size_interval():
    runs, epochs, preds, meta = store(arms=("a",), seeds=20, folds=1, epochs=2, shared_split=False, seed=4)
    res = summary_dict(runs, epochs, preds, meta)["arms"]["a"]["final_val_accuracy"]
    acc = final_accuracies(epochs)
    low, high = korn_graubard(acc.mean(), sps.sem(acc), acc.size - 1, 20 * 30)
    assert res["method"] == "effective-size" and (res["low"], res["high"]) == pytest.approx((low, high))
    t_low, t_high = sps.t.interval(0.95, acc.size - 1, loc=acc.mean(), scale=sps.sem(acc))
    assert low < t_low         # reaches further down than the t interval, toward 0.5 from 0.7


def test_own_splits_drawn_from_one_pool_add_the_images_they_share():
    # 20 runs on their own splits whose images overlap (run s scores examples 10s .. 10s + 29),
    # as own splits drawn from one pool do; every third image is hard for every run
    runs, epochs, preds, meta = store(arms=("a",), seeds=20, folds=1, epochs=2, shared_split=False, seed=8)
    code = {run_id: i for i, run_id in enumerate(sorted(runs["run_id"]))}
    position = preds["example"] % 30
    preds = preds.assign(example=preds["run_id"].map(code) * 10 + position)
    hard = (preds["example"] % 3 == 0) & (preds["run_id"].map(code) % 4 != 0)
    preds = preds.assign(predicted=np.where(hard, (preds["label"] + 1) % 3, preds["label"]))
    acc = preds.assign(right=preds["label"] == preds["predicted"]).groupby(["run_id", "epoch"])["right"].mean()
    epochs = epochs.assign(val_accuracy=[acc[(r, e)] for r, e in zip(epochs["run_id"], epochs["epoch"])])
    res = summary_dict(runs, epochs, preds, meta)["arms"]["a"]["final_val_accuracy"]
    last = preds[preds["epoch"] == preds["epoch"].max()].sort_values(["run_id", "example"])
    examples = [g["example"].to_numpy() for _, g in last.groupby("run_id")]
    correct = [(g["label"] == g["predicted"]).to_numpy() for _, g in last.groupby("run_id")]
    from test_stats_intervals import _shared_image_covariance_by_loops

    shared = _shared_image_covariance_by_loops(examples, correct, list(range(20)))
    values = np.array([c.mean() for c in correct])
    assert shared > 0 and res["method"] == "effective-size" and res["design"] == "own split per run"
    low, high = korn_graubard(values.mean(), np.sqrt(values.var(ddof=1) / 20 + shared), 19, 20 * 30)
    assert (res["low"], res["high"]) == pytest.approx((low, high))
    narrow = korn_graubard(values.mean(), sps.sem(values), 19, 20 * 30)
    assert res["high"] - res["low"] > narrow[1] - narrow[0]


def _recorder_style(predictions=True):
    """Four runs on one validation set, recorded as valstat.keras.Recorder writes them: each
    run's split_seed is its seed and val_examples lists the same images."""
    runs, epochs, preds, meta = store(arms=("base",), seeds=4, folds=1, epochs=5, seed=3)
    runs = runs.assign(split_seed=runs["seed"], val_examples=json.dumps(list(range(30))))
    return runs, epochs, preds if predictions else preds.iloc[:0], meta


def test_runs_on_the_same_validation_images_share_a_split_whatever_their_split_seeds():
    runs, epochs, preds, meta = _recorder_style()
    res = summary_dict(runs, epochs, preds, meta)["arms"]["base"]["final_val_accuracy"]
    assert res["design"] == "one shared split" and res["scope"] == "new validation images"
    # 4 seeds, none collapsed: the collapse-aware interval, its learned mean bounded by the
    # crossed interval of their per-image table at 1 - 0.05/4, the collapse chance by 0 of 4
    assert res["method"] == "collapse-mixture" and res["collapsed"] == 0
    last = preds[preds["epoch"] == preds["epoch"].max()].sort_values(["run_id", "example"])
    matrix = (last["label"] == last["predicted"]).to_numpy(dtype=float).reshape(4, 30)
    crossed = crossed_mean_interval(matrix, level=0.975, new_run_columns=30)
    l_low, l_high = korn_graubard(crossed["estimate"], crossed["se"], crossed["df"], 4 * 30, level=0.975)
    p_high = 1 - 0.0125 ** (1 / 4)
    assert (res["low"], res["high"]) == pytest.approx((min(l_low, (1 - p_high) * l_low + p_high / 3), l_high))
    # these images alone: the t interval over the 4 runs
    acc = matrix.mean(axis=1)
    assert (res["conditional"]["low"], res["conditional"]["high"]) == pytest.approx(
        korn_graubard(acc.mean(), sps.sem(acc), 3, 4 * 30))


def _all_collapsed_seeds_by_folds(seeds=2, folds=5):
    """Seeds x folds, each seed its own split (disjoint images), every run predicting class 0
    at every epoch: each scores 10/30 (labels are example % 3)."""
    runs, epochs, preds, meta = store(arms=("base",), seeds=seeds, folds=folds, epochs=4, shared_split=False, seed=5)
    preds = preds.assign(predicted=0)
    epochs = epochs.assign(val_accuracy=1 / 3)
    return runs, epochs, preds, meta


def test_seeds_by_own_folds_all_collapsed_is_not_a_zero_width_interval():
    tables = _all_collapsed_seeds_by_folds()
    res = summary_dict(*tables)["arms"]["base"]["final_val_accuracy"]
    assert res["design"] == "seeds x own folds" and res["units"] == "seed"
    assert res["method"] == "collapse-mixture" and res["n_units"] == 2
    # 2 of 2 seeds collapsed in every fold: one-sided 98.75% Clopper-Pearson bounds on the
    # collapse chance [beta(0.0125; 2, 1), 1]; no learned run, so their mean lies in [0, 1]
    p_low = sps.beta.ppf(0.0125, 2, 1)
    assert (res["low"], res["high"]) == pytest.approx((p_low / 3, (1 - p_low) + p_low / 3))
    assert (res["pi_low"], res["pi_high"]) == (0.0, 1.0)
    text = format_summary(summarize(*tables))
    assert "seeds × folds, each seed its own split" in text and "own split per run" not in text
    assert "fewer than 2 seeds had a run that learned" in text
    assert "33.3%..33.3%" not in text


def test_stats_text_when_seed_and_split_cannot_be_separated():
    tables = store(seeds=6, folds=1, epochs=4, shared_split=False, seed=2)
    summary = summarize(*tables)
    en, zh = format_summary(summary, "en"), format_summary(summary, "zh")
    assert "cannot separate seed from split" in en and "residual 100%" not in en
    assert "that residual splits into drawing 30 validation images" in en
    assert "方差分析无法区分种子与划分" in zh and "该残差分为两部分" in zh
    for english in ("own split per run", "split 无", "residual", "anova", ";", ", "):
        assert english not in zh.split("most unstable")[0], english
