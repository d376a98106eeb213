"""From the store's tables to answers: one typed summary per experiment.

summarize(runs, epochs, predictions, meta) builds the run table and correctness cube once
(valstat.core.build_core) and returns a Summary (frozen dataclasses, `to_dict()` for JSON) for
the report and `valstat stats`; valstat.report.stats_text words it. Pure pandas/numpy/scipy/statsmodels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from valstat.core import DEFAULT, Core, Settings, build_core
from valstat.core.design import mean_accuracy_interval, seed_units, shares_images, validation_design
from valstat.core.schedule import infer_plateau, mode_of
from valstat.images import class_names, unstable_images
from valstat.results import (ArmSummary, Comparison, ConditionalInterval, CorrectedT, CrossedComponents,
                             DetectableDifference, Detectability, FiniteSample, FoldNoise, Interval,
                             LrCollapse, McNemarPair, NoiseOptimism,
                             OneClassCollapse, Optimism, OptimismRule, PlateauCuts, Proportion, RunsNeeded, SpreadChange,
                             Summary, VarianceComponent, WithinNoise)
from valstat.stats import (
    corrected_resampled_ttest,
    crossed_paired_ttest,
    expected_max_noise,
    binomial_sampling_variance,
    finite_sample_by_fold,
    infer_val_size,
    mcnemar,
    minimum_detectable_difference,
    optimism_summary,
    paired_spread_change,
    probability_of_improvement,
    runs_needed,
    stratified_sampling_variance,
    val_size_for_halfwidth,
    variance_components,
)
from valstat.stats.dynamics import KINDS, plateau_cut_counts
from valstat.stats.intervals import COLLAPSE_AWARE_BELOW
from valstat.stats.lattice import fisher_p
from valstat.stats.selection import plateau_epochs, resampled_noise_optimism
from valstat.stats.sizes import move_detectability, noether_runs

HALFWIDTHS = (0.05, 0.10)
HALFWIDTH_PROBABILITY = 0.8  # chance that a validation set of the advised size reaches the half-width


def _flat_settings(settings) -> dict:
    """One arm's settings as one flat dict: the run command stores them in sections
    ({"data": {"val_size": 30}, "schedule": {"monitor": ...}, ...}); flat keys are kept too."""
    settings = dict(settings or {})
    flat = {}
    for section in ("model", "training", "data", "schedule"):
        if isinstance(settings.get(section), dict):
            flat.update(settings.pop(section))
    return {**flat, **settings}


def _val_size(arm_runs, arm_epochs, config):
    sizes = pd.to_numeric(arm_runs["n_val"], errors="coerce").dropna()
    if len(sizes):
        return int(sizes.mode().iloc[0]), "runs.n_val"
    if config.get("val_size"):
        return int(config["val_size"]), "meta"
    acc = arm_epochs["val_accuracy"].to_numpy(dtype=float)
    if np.isfinite(acc).any():
        return infer_val_size(acc), "inferred from the accuracy lattice"
    return None, "unknown"


def _class_share_range(finite, finals, n_classes):
    """(lowest, highest) share of one class among each run's final-epoch validation images:
    what a run predicting one class scores. A class missing from a run's images (of
    max(n_classes, classes seen)) has share 0. None when a run lacks final predictions."""
    codes = finite["code"].astype(int)
    if not all(c in finals for c in codes):
        return None
    labels = [finals[c][2] for c in codes]
    classes = max(n_classes, len(np.unique(np.concatenate(labels))))
    shares = [np.unique(lab, return_counts=True)[1] / lab.size for lab in labels]
    low = min(0.0 if s.size < classes else float(s.min()) for s in shares)
    return low, max(float(s.max()) for s in shares)


def _one_class_at(finite, epoch_col):
    """Per run: it predicted one class at its `epoch_col` epoch (the final streak of
    one_class_from reaches back to it); None when a run has no one-class information."""
    if finite["ends_collapsed"].isna().any():
        return None
    start = pd.to_numeric(finite["one_class_from"], errors="coerce").to_numpy(dtype=float)
    ends = finite["ends_collapsed"].astype(bool).to_numpy()
    return ends & (start <= finite[epoch_col].to_numpy(dtype=float))


def _metric_intervals(arm, cube, finals, level, n_classes=0):
    """Intervals of the mean final and best val accuracy and for one new run
    (core.design.mean_accuracy_interval). With fewer than COLLAPSE_AWARE_BELOW units (runs, or
    seeds where seeds ran several folds) on their own splits or one shared split, and per-image predictions telling
    which runs predicted one class, collapse_mean_interval (method "collapse-mixture": allows
    for a one-class collapse mode these runs may not show, and never gives a zero-width
    interval when every run collapsed).
    Returns {"final_val_accuracy": Interval | None, "best_val_accuracy": Interval | None}.
    """
    finite = arm[np.isfinite(arm["final_val_accuracy"])]
    if len(finite) == 0:
        return {"final_val_accuracy": None, "best_val_accuracy": None}
    units = seed_units(finite)
    n_units = len(finite) if units is None else len(np.unique(units))
    design = validation_design(finite)
    aware = (not shares_images(design) or design == "one shared split") and 2 <= n_units < COLLAPSE_AWARE_BELOW
    shares = _class_share_range(finite, finals, n_classes) if aware else None
    out = {}
    for metric, epoch_col in (("final_val_accuracy", "last_epoch"), ("best_val_accuracy", "best_epoch")):
        one_class = _one_class_at(finite, epoch_col) if shares else None
        res = mean_accuracy_interval(finite, metric, epoch_col, cube, level, one_class, shares)
        if "conditional" in res:
            res["conditional"] = ConditionalInterval(**res["conditional"])
        if "components" in res:
            res["components"] = CrossedComponents(**res["components"])
        out[metric] = Interval(**res)
    return out


#: Power at which "within noise" is translated into the smallest drop the test detects.
DETECT_POWER = 0.8


def _moves(arm, arm_epochs, moves_by_run, val_size, alpha):
    """Share of epoch-to-epoch accuracy changes within noise (mid-p McNemar; Fisher where no
    predictions), and per test the smallest drop in images it detects with DETECT_POWER
    (stats.sizes.move_detectability): McNemar at the arm's chance churn, Fisher at the mean
    accuracy of the epochs it tested."""
    every = moves_by_run[moves_by_run["run"].isin(arm["code"])]
    tested = every[every["lost"] != every["gained"]]
    p = [tested["p_value"].to_numpy()]
    without = arm.loc[~arm["code"].isin(moves_by_run["run"]), "run_id"]
    fisher_moves = 0
    detectable = []
    if len(tested) and val_size:
        detectable.append(move_detectability(val_size, alpha, DETECT_POWER, every["lost"], every["gained"]))
    if len(without) and val_size:
        ep = arm_epochs[arm_epochs["run_id"].isin(without)].sort_values(["run_id", "epoch"])
        k = np.rint(ep["val_accuracy"].to_numpy(dtype=float) * val_size)
        same_run = ep["run_id"].to_numpy()[1:] == ep["run_id"].to_numpy()[:-1]
        changed = same_run & np.isfinite(k[1:]) & np.isfinite(k[:-1]) & (k[1:] != k[:-1])
        if changed.any():
            p.append(fisher_p(k[:-1][changed].astype(int), k[1:][changed].astype(int), val_size))
            fisher_moves = int(changed.sum())
            detectable.append(move_detectability(val_size, alpha, DETECT_POWER, accuracy=k[np.isfinite(k)] / val_size))
    p = np.concatenate(p)
    tests = [name for name, count in (("mcnemar", len(tested)), ("fisher", fisher_moves)) if count]
    return WithinNoise(
        share=float(np.mean(p >= alpha)) if p.size else None,
        moves=int(p.size),
        within_noise=int(np.sum(p >= alpha)),
        test="+".join(tests) or None,
        detectable=[Detectability(**d) for d in detectable],
        note=f"moves = consecutive epochs whose val accuracy changed; within noise: p >= {alpha:g} "
             f"(mcnemar: the mid-p McNemar test); "
             f"detectable: the smallest drop in images each test detects with power {DETECT_POWER:g}",
    )


def _finite_sample(arm, finals, val_size):
    """Noise of the finite validation set: Jordan's estimator over groups of runs that share
    their final-epoch validation images; where no two runs share images, the per-run sampling
    variance of drawing each run's own images (_sampling_per_run). None when neither applies."""
    by_images: dict = {}
    for code, fold in zip(arm["code"], arm["split"]):
        if code in finals:
            examples, correct, _ = finals[code]
            by_images.setdefault((fold, examples.tobytes()), []).append(correct)
    matrices = {f"{fold}#{i}": np.vstack(rows) for i, ((fold, _), rows) in enumerate(by_images.items()) if len(rows) >= 2}
    if not matrices:
        result = _sampling_per_run(arm, finals, val_size)
        return None if result is None else FiniteSample(**result)
    result = finite_sample_by_fold(matrices)
    per_fold = [FoldNoise(**dict(row, fold=row["fold"].split("#")[0])) for row in result.pop("per_fold")]
    return FiniteSample(**result, per_fold=per_fold, method="jordan-independent-errors",
                        sampling_variance=result["independent_errors_variance"])


def _sampling_per_run(arm, finals, val_size):
    """Each run drew its own validation images: the variance that draw gives a run's accuracy.

    Applies when no two runs share a split or (by their final-epoch predictions) images. Stratified by class (stratified_sampling_variance, as valstat
    draws splits) when every run has final predictions on val_size images with at least 2 of
    each class; else binomial (binomial_sampling_variance) over the final accuracies. The
    returned keys mirror finite_sample_by_fold's (independent_errors_variance holds the
    sampling variance, finite_sample_share its share of the total run-to-run variance, folds
    the number of validation sets = runs) plus method, sampling_variance, model_variance(_clipped),
    n and, for the stratified method, binomial_variance and binomial_share.
    """
    finite = arm[np.isfinite(arm["final_val_accuracy"].to_numpy(dtype=float))]
    if len(finite) < 2 or not val_size or val_size < 2:
        return None
    codes = finite["code"].to_numpy()
    with_predictions = [c for c in codes if c in finals]
    images = {finals[c][0].tobytes() for c in with_predictions}
    if finite["split"].duplicated().any() or len(images) < len(with_predictions):
        return None
    result = None
    if len(with_predictions) == len(codes) and all(finals[c][1].size == val_size for c in codes):
        labels = np.vstack([finals[c][2] for c in codes])
        if all(np.unique(row, return_counts=True)[1].min() >= 2 for row in labels):
            result = stratified_sampling_variance(np.vstack([finals[c][1] for c in codes]), labels)
            result.update(method="stratified-per-run", sampling_variance=result.pop("stratified_variance"))
    if result is None:
        result = binomial_sampling_variance(finite["final_val_accuracy"].to_numpy(dtype=float), val_size)
        result.update(method="binomial-per-run", sampling_variance=result.pop("binomial_variance"))
    result.update(independent_errors_variance=result["sampling_variance"],
                  finite_sample_share=result.pop("share"), folds=result["runs"], per_fold=[])
    return result


def _schedule(config: dict, arm_epochs: pd.DataFrame) -> dict | None:
    """The arm's ReduceLROnPlateau settings: as configured (a sweep's arms_config), or, for a
    store without them (recorded or imported), inferred from the recorded rate of the first
    run whose cuts a monitor and patience explain (valstat.core.schedule, as diagnose does)."""
    if "monitor" in config or "patience" in config:
        monitor = config.get("monitor", "val_loss")
        return {"monitor": monitor, "mode": mode_of(monitor), "patience": int(config.get("patience", 10)),
                "min_delta": float(config.get("min_delta", 1e-4)), "inferred": False}
    for _, run in arm_epochs.groupby("run_id", sort=True):
        rate = run["learning_rate"].to_numpy(dtype=float)
        if not (np.all(np.isfinite(rate)) and rate.size and rate[0] > 0):
            continue
        found = infer_plateau({c: run[c].to_numpy(dtype=float) for c in ("val_loss", "val_accuracy")}, rate)
        if found:
            return {**found, "min_delta": 1e-4, "inferred": True}
    return None


def _dynamics(arm, arm_epochs, config, settings):
    """lr collapse (from the run table) and plateau-cut counts per run under the arm's schedule."""
    schedule = _schedule(config, arm_epochs)
    collapse = arm["collapse_epoch"].dropna()
    out = {"lr_collapse": LrCollapse(
        runs=int(len(collapse)),
        median_epoch=float(np.median(collapse)) if len(collapse) else None,
        median_epochs_after=float(arm["collapse_epochs_after"].dropna().median()) if len(collapse) else None,
        threshold=settings.collapse_threshold,
    ), "plateau_cuts": None}
    if schedule is None:
        return out
    monitor, mode, patience = schedule["monitor"], schedule["mode"], schedule["patience"]
    kinds = np.zeros(len(KINDS), dtype=int)
    ep = arm_epochs.sort_values(["run_id", "epoch"], kind="stable")
    if monitor in ep:
        for run_id, run in ep.groupby("run_id", sort=False):
            rate = run["learning_rate"].to_numpy(dtype=float)
            if not (np.all(np.isfinite(rate)) and rate[0] > 0):
                continue
            kind = plateau_cut_counts(run[monitor].to_numpy(dtype=float), rate, patience,
                                      schedule["min_delta"], mode)["kind"]
            kinds += np.bincount(kind, minlength=len(KINDS))
    out["plateau_cuts"] = PlateauCuts(monitor=monitor, mode=mode, patience=patience,
                                       inferred=schedule["inferred"], cuts=int(kinds.sum()),
                                       **{name: int(count) for name, count in zip(KINDS, kinds)})
    return out


#: Image-bootstrap resamples shared by all runs of an arm (at least 20 per run).
NOISE_BOOT_BUDGET = 4000


def _plateaus(arm_epochs, val_size, level) -> dict:
    """run_id -> (k, plateau mask) from each run's val accuracy on the k/n lattice: the epochs
    within noise of the run's best (stats.selection.plateau_epochs), the basis of both optimism
    estimates below and of `valstat diagnose`."""
    out = {}
    for run_id, run in arm_epochs.sort_values("epoch").groupby("run_id", sort=False):
        k = np.rint(run["val_accuracy"].to_numpy(dtype=float) * val_size)
        k = k[np.isfinite(k)].astype(int)
        if k.size:
            out[run_id] = (k, plateau_epochs(k, val_size, level))
    return out


def _noise_optimism_per_image(arm, cube, plateaus, level):
    """Mean over runs of resampled_noise_optimism on each run's plateau epochs, or None.

    Plateau epochs: those within noise of the run's best (`plateaus`, recomputed from the
    per-image counts where they differ), all scored on the same images. Runs without per-image
    predictions are skipped.
    """
    chosen = []
    for code, run_id in zip(arm["code"].astype(int), arm["run_id"]):
        grid = cube.grid(code)
        if grid is None or grid[3].shape[0] < 2:
            continue
        correct = grid[3]
        k = correct.sum(axis=1)
        known = plateaus.get(run_id)
        plateau = known[1] if known is not None and np.array_equal(known[0], k) \
            else plateau_epochs(k, correct.shape[1], level)
        if plateau.sum() >= 2:
            chosen.append(correct[plateau])
    if not chosen:
        return None
    n_boot = max(20, NOISE_BOOT_BUDGET // len(chosen))
    results = [resampled_noise_optimism(c, n_boot=n_boot) for c in chosen]
    return NoiseOptimism(expected_optimism=float(np.mean([r["expected_optimism"] for r in results])),
                         epochs=int(np.median([r["epochs"] for r in results])), n=results[0]["n"],
                         runs=len(results), method=results[0]["method"] + "; plateau epochs, mean over runs")


def _noise_optimism_independent(plateaus, val_size):
    """The independent-epochs upper bound on the same basis as `valstat diagnose`: each run's
    plateau epochs as one model of their mean accuracy re-measured independently; p = mean
    over runs, epochs = median plateau size."""
    if not plateaus:
        return None
    means = [k[mask].mean() / val_size for k, mask in plateaus.values()]
    sizes = [int(mask.sum()) for _, mask in plateaus.values()]
    return NoiseOptimism(**expected_max_noise(val_size, int(np.median(sizes)), float(np.mean(means)), n_sim=5000),
                         method="independent epochs on the plateau (upper bound)")


def _optimism(arm_epochs, val_size, arm, cube, level) -> Optimism | None:
    truth = arm_epochs["truth_accuracy"].to_numpy(dtype=float)
    if not np.isfinite(truth).any():
        return None
    rules = [OptimismRule(**r) for r in optimism_summary(arm_epochs).to_dict(orient="records")]
    independent = per_image = None
    if val_size:
        plateaus = _plateaus(arm_epochs, val_size, level)
        independent = _noise_optimism_independent(plateaus, val_size)
        if independent is not None:
            per_image = _noise_optimism_per_image(arm, cube, plateaus, level)
    return Optimism(rules=rules, expected_from_noise=per_image or independent,
                    expected_from_noise_independent=independent)


def _arm_summary(core: Core, name: str, moves_by_run, finals) -> ArmSummary:
    """One arm's statistics over its counted runs (core.runs.counted)."""
    settings = core.settings
    every = core.runs[core.runs["arm"] == name]
    arm = every[every["counted"]]
    arm_epochs = core.epochs[core.epochs["run_id"].isin(arm["run_id"])]
    config = _flat_settings((core.meta.get("arms_config") or {}).get(name))
    val_size, val_size_source = _val_size(arm if len(arm) else every, arm_epochs, config)
    out = {
        "n_runs": int(len(every)),
        "n_diverged": int(every["diverged"].sum()),
        "n_counted": int(len(arm)),
        "val_size": val_size,
        "val_size_source": val_size_source,
        "lattice_step": None if not val_size else 1.0 / val_size,
        **_metric_intervals(arm, core.cube, finals, settings.level, len(class_names(core.meta))),
    }
    if len(arm) == 0:
        return ArmSummary(**out)
    moves = _moves(arm, arm_epochs, moves_by_run, val_size, settings.alpha)
    out["moves_within_noise_share"], out["moves_within_noise"] = moves.share, moves
    if np.isfinite(arm["final_val_accuracy"]).sum() >= 2:
        out["variance_components"] = [VarianceComponent(**r) for r in variance_components(
            arm, "final_val_accuracy", "split", "seed").to_dict(orient="records")]
    out["finite_sample"] = _finite_sample(arm, finals, val_size)
    out.update(_dynamics(arm, arm_epochs, config, settings))
    with_predictions = arm[arm["ever_collapsed"].notna()]
    if len(with_predictions):
        out["one_class_collapse"] = OneClassCollapse(
            runs_ending_collapsed=int(with_predictions["ends_collapsed"].astype(bool).sum()),
            runs_ever_collapsed=int(with_predictions["ever_collapsed"].astype(bool).sum()),
            runs_with_predictions=int(len(with_predictions)),
        )
    out["optimism"] = _optimism(arm_epochs, val_size, arm, core.cube, settings.level)
    mean = out["final_val_accuracy"].estimate if out["final_val_accuracy"] else None
    if val_size and mean is not None and np.isfinite(mean):
        out["val_size_for_halfwidth"] = {f"{h:.2f}": val_size_for_halfwidth(mean, h, probability=HALFWIDTH_PROBABILITY)
                                         for h in HALFWIDTHS}
        out["val_size_for_halfwidth_probability"] = HALFWIDTH_PROBABILITY
        if val_size >= 2:
            out["minimum_detectable_difference"] = DetectableDifference(**minimum_detectable_difference(val_size, mean))
    return ArmSummary(**out)


def _compare(name_a, name_b, per, finals, alpha) -> Comparison:
    """Arm A vs arm B, paired on (seed, fold), over counted runs."""
    cols = ["seed", "fold", "code", "final_val_accuracy", "n_train", "n_val", "ends_collapsed"]
    a = per.loc[per["arm"] == name_a, cols]
    b = per.loc[per["arm"] == name_b, cols]
    pairs = a.merge(b, on=["seed", "fold"], suffixes=("_a", "_b")).drop_duplicates(["seed", "fold"])
    pairs = pairs[np.isfinite(pairs["final_val_accuracy_a"]) & np.isfinite(pairs["final_val_accuracy_b"])]
    tests, different, unknown, image_rows = [], 0, False, []
    for row in pairs.itertuples(index=False):
        fa, fb = finals.get(row.code_a), finals.get(row.code_b)
        if fa is None or fb is None:
            unknown = True
            continue
        if not np.array_equal(fa[0], fb[0]):
            different += 1
            continue
        image_rows.append((fa[0], fa[1].astype(float) - fb[1].astype(float)))
        test = mcnemar(fa[1], fb[1])
        tests.append(McNemarPair(seed=row.seed, fold=row.fold, **test, significant=test["p_value"] < alpha))
    out = {"a": name_a, "b": name_b, "pairs": int(len(pairs)), "mcnemar": tests,
           "mcnemar_significant": sum(m.significant for m in tests),
           "pairs_on_different_images": None if unknown else different}
    if len(pairs) == 0:
        return Comparison(**out, note="no (seed, fold) pairs shared by both arms")
    diff_a, diff_b = pairs["final_val_accuracy_a"].to_numpy(), pairs["final_val_accuracy_b"].to_numpy()
    out["probability_of_improvement"] = Proportion(**probability_of_improvement(diff_a, diff_b))
    flags = pairs[["ends_collapsed_a", "ends_collapsed_b"]]
    known = bool(flags.notna().to_numpy().all())
    out["spread_change"] = SpreadChange.from_stats(paired_spread_change(diff_a, diff_b, *(
        [flags[c].astype(bool).to_numpy() for c in flags] if known else [None, None]), level=1 - alpha))
    n_train = pd.to_numeric(pairs["n_train_a"], errors="coerce").median()
    n_test = pd.to_numeric(pairs["n_val_a"], errors="coerce").median()
    one_split = (len(image_rows) == len(pairs) >= 2 and image_rows[0][0].size >= 2
                 and all(np.array_equal(examples, image_rows[0][0]) for examples, _ in image_rows))
    if one_split:
        out["corrected_t"] = CorrectedT(**crossed_paired_ttest(np.vstack([d for _, d in image_rows])),
                                        method="crossed")
    elif len(pairs) >= 2 and np.isfinite(n_train) and np.isfinite(n_test) and n_train > 0 and n_test > 0:
        out["corrected_t"] = CorrectedT(**corrected_resampled_ttest(diff_a - diff_b, int(n_train), int(n_test)),
                                        n_train=int(n_train), n_test=int(n_test))
    else:
        out["note"] = "corrected t needs at least 2 pairs and n_train/n_val in runs"
    return Comparison(**out)


def summarize(runs: pd.DataFrame, epochs: pd.DataFrame, predictions: pd.DataFrame, meta: dict,
              settings: Settings = DEFAULT) -> Summary:
    """Answers for every arm of one experiment, from the store's tables.

    runs, epochs, predictions: the store's tables (columns RUN_COLUMNS, EPOCH_COLUMNS,
    PREDICTION_COLUMNS; predictions may be empty). meta: experiment, arms (ordered names),
    dataset.class_names (or class_names), arms_config {arm: {"data": {val_size, ...},
    "training": {learning_rate, ...}, "schedule": {monitor, patience, factor, ...}}} (flat keys too).
    The Summary it returns, as `.to_dict()` writes it (accuracies are fractions):
      experiment, arm_names (meta's order, then unlisted arms found in runs), class_names,
      arms {arm: {n_runs, n_diverged, val_size, val_size_source, lattice_step,
        final_val_accuracy, best_val_accuracy (mean_interval dicts, t; units "seed" when folds
        of a seed are clustered; design "own split per run" | "seeds x own folds" | "one shared
        split" | "seeds x shared splits" (core.design.validation_design); scope "new validation images" | "these validation images"; where runs
        share images, low/high/pi_low/pi_high come from crossed_mean_interval (method
        "crossed-anova", df, components) and `conditional` holds the t interval for these
        images only; with fewer than COLLAPSE_AWARE_BELOW runs (seeds where seeds ran several
        folds) on their own splits or on one shared split, and per-image predictions, low/high come from collapse_mean_interval (method
        "collapse-mixture", collapsed, collapse_low, collapse_high, learned_low, learned_high,
        share_range)), moves_within_noise_share, moves_within_noise {share, moves,
        within_noise, test, detectable [{test, images (smallest drop detected with power 0.8),
        churn (McNemar) or p (Fisher), power, n}]}, variance_components (records; split = fold, or split_seed:fold),
        finite_sample (method "jordan-independent-errors": finite_sample_by_fold over runs
        sharing final-epoch images; where no two runs share images, "stratified-per-run" or
        "binomial-per-run": the variance of drawing each run's own images, see
        _sampling_per_run; keys sampling_variance, independent_errors_variance,
        finite_sample_share, empirical_variance, folds in both), lr_collapse
        {runs, median_epoch, median_epochs_after, threshold}, plateau_cuts {monitor, mode,
        patience, cuts, after_ties_only, after_worse, other}, one_class_collapse
        {runs_ending_collapsed, runs_ever_collapsed, runs_with_predictions}, optimism {rules,
        expected_from_noise (per-image image bootstrap on plateau epochs where predictions exist,
        else the independent-epochs upper bound), expected_from_noise_independent} or None,
        val_size_for_halfwidth {"0.05": n, "0.10": n} (reached with probability
        val_size_for_halfwidth_probability), minimum_detectable_difference (Fisher exact)}},
      comparisons [first arm vs each other: a, b, pairs, mcnemar (per (seed, fold) on the final
        epoch where both runs scored the same images), mcnemar_significant, corrected_t,
        probability_of_improvement (Clopper-Pearson on wins + ties/2), spread_change
        (paired_spread_change: collapsed share b - a, sd_b/sd_a among pairs where both
        learned; collapse unknown without predictions), note], runs_needed
        {gamma, alpha, beta, runs (valstat's paired P(A > B) interval), procedure,
        noether_independent}, unstable_images {arm: [...]} (valstat.images.unstable_images, from the
        correctness cube), notes.
    Missing pieces are None. Diverged runs are counted in n_runs/n_diverged; they enter the
    statistics only with settings.count_diverged (n_counted says how many did).
    Returns a Summary (valstat.results); `.to_dict()` gives the JSON above.
    """
    return summarize_core(build_core(runs, epochs, predictions, meta, settings))


def summarize_core(core: Core) -> Summary:
    """summarize() on an already built run table and cube (the report builds it once)."""
    counted = core.counted
    moves_by_run = core.cube.moves()
    finals = core.cube.final_correct()
    arms = {name: _arm_summary(core, name, moves_by_run, finals) for name in core.arm_names}
    alpha = core.settings.alpha
    comparisons = [_compare(core.arm_names[0], other, counted, finals, alpha) for other in core.arm_names[1:]]
    gamma, beta = 0.75, 0.05
    meta = core.meta
    return Summary(
        experiment=meta.get("experiment"),
        arm_names=list(core.arm_names),
        class_names=class_names(meta),
        arms=arms,
        comparisons=comparisons,
        runs_needed=RunsNeeded(gamma=gamma, alpha=alpha, beta=beta, runs=runs_needed(gamma, alpha, beta),
                               procedure="paired runs; the P(A > B) interval (Clopper-Pearson on wins + ties/2, "
                                         "two-sided) excludes 1/2; exact power without ties",
                               noether_independent=noether_runs(gamma, alpha, beta)),
        unstable_images=unstable_images(counted, core.cube, meta),
        settings=core.settings,
        notes=[
            "final/best val accuracy: interval of the mean (CI) and a prediction interval for one new run "
            "(pi); t over runs, or crossed random effects where runs share validation images (scope says "
            "whether it holds for new images or these images only)",
            "accuracy values are fractions; the lattice step is 1/val_size",
            "diverged runs " + ("count in every statistic" if core.settings.count_diverged
                                else "are left out of every statistic (n_counted)"),
        ],
    )
