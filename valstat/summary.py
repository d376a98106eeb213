"""From the store's tables to answers: one JSON-ready summary per experiment.

summarize(runs, epochs, predictions, meta) takes the store's tables as pandas DataFrames and
returns plain Python (dicts, lists, str, int, float, bool, None; no NaN) for the report and
`valstat stats`. format_summary turns it into compact text. Pure pandas/numpy/scipy/statsmodels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from valstat.errors import UserError
from valstat.images import format_unstable, unstable_images
from valstat.stats import (
    corrected_resampled_ttest,
    crossed_mean_interval,
    expected_max_noise,
    binomial_sampling_variance,
    finite_sample_by_fold,
    infer_val_size,
    lr_collapse,
    mcnemar,
    mean_interval,
    minimum_detectable_difference,
    optimism_summary,
    probability_of_improvement,
    runs_needed,
    stratified_sampling_variance,
    val_size_for_halfwidth,
    variance_components,
)
from valstat.stats._checks import need_columns
from valstat.stats.dynamics import KINDS, majority_by_group, plateau_cut_counts
from valstat.stats.lattice import fisher_p
from valstat.stats.paired import mcnemar_exact_p
from valstat.stats.selection import resampled_noise_optimism
from valstat.stats.sizes import noether_runs

RUN_COLUMNS = ["run_id", "experiment", "arm", "seed", "fold", "split_seed", "init_seed", "order_seed",
               "status", "wall_s", "n_train", "n_val", "n_truth", "epochs_run"]
EPOCH_COLUMNS = ["run_id", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "truth_accuracy"]
PREDICTION_COLUMNS = ["run_id", "epoch", "example", "label", "predicted", "p_true"]

ALPHA = 0.05            # significance level for "within noise" and "significant"
COLLAPSE_THRESHOLD = 0.01  # lr below 1% of its start counts as collapsed
HALFWIDTHS = (0.05, 0.10)
HALFWIDTH_PROBABILITY = 0.8  # chance that a validation set of the advised size reaches the half-width


def to_plain(value):
    """Recursively convert numpy/pandas values (and DataFrames, as records) to JSON-ready Python.

    NaN, inf and pd.NA become None; numpy scalars become int/float/bool; unknown objects str.
    """
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, pd.DataFrame):
        return [to_plain(r) for r in value.to_dict(orient="records")]
    if isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        return [to_plain(v) for v in list(value)]
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value if isinstance(value, str) else str(value)


@dataclass
class _Predictions:
    """Per-image predictions reshaped: one row per (run, epoch) group, sorted by run and epoch.

    run, epoch: shape (groups,); start, size: each group's slice of the sorted flat arrays
    example, correct (label == predicted), predicted, label: shape (rows,).
    """

    run: np.ndarray
    epoch: np.ndarray
    start: np.ndarray
    size: np.ndarray
    example: np.ndarray
    correct: np.ndarray
    predicted: np.ndarray
    label: np.ndarray

    @classmethod
    def build(cls, predictions: pd.DataFrame, run_ids: pd.Index) -> _Predictions:
        codes = run_ids.get_indexer(predictions["run_id"])
        keep = codes >= 0
        run = codes[keep].astype(np.int64)
        epoch = predictions["epoch"].to_numpy(dtype=np.int64)[keep]
        example = predictions["example"].to_numpy(dtype=np.int64)[keep]
        label = predictions["label"].to_numpy()[keep]
        predicted = predictions["predicted"].to_numpy()[keep]
        if run.size and (epoch.min() < 0 or example.min() < 0):
            raise UserError("predictions hold a negative epoch or example index")
        width_x = int(example.max(initial=0)) + 1
        group_key = run * (int(epoch.max(initial=0)) + 1) + epoch
        key = group_key * width_x + example
        steps = np.diff(key)
        if np.any(steps < 0):
            order = np.argsort(key, kind="stable")
            key, group_key, example, label, predicted = (a[order] for a in (key, group_key, example, label, predicted))
            run, epoch = run[order], epoch[order]
            steps = np.diff(key)
        if np.any(steps == 0):
            raise UserError("predictions hold the same (run_id, epoch, example) more than once")
        start = np.flatnonzero(np.r_[True, group_key[1:] != group_key[:-1]]) if run.size else np.zeros(0, np.int64)
        size = np.diff(np.r_[start, run.size])
        return cls(run[start], epoch[start], start, size, example, label == predicted, predicted, label)

    def rows(self, groups: np.ndarray, width: int) -> np.ndarray:
        """Flat indices of `groups` (all of size `width`), shape (len(groups), width)."""
        return self.start[groups][:, None] + np.arange(width)[None, :]

    def moves(self) -> pd.DataFrame:
        """Consecutive recorded epochs of one run on the same images: lost/gained images, McNemar p."""
        parts = []
        for width in np.unique(self.size):
            groups = np.flatnonzero(self.size == width)
            if groups.size < 2:
                continue
            idx = self.rows(groups, width)
            ex, ok = self.example[idx], self.correct[idx]
            pair = (self.run[groups[1:]] == self.run[groups[:-1]]) & np.all(ex[1:] == ex[:-1], axis=1)
            lost = np.sum(ok[:-1] & ~ok[1:], axis=1)[pair]
            gained = np.sum(~ok[:-1] & ok[1:], axis=1)[pair]
            parts.append(pd.DataFrame({"run": self.run[groups[1:]][pair], "lost": lost, "gained": gained}))
        if not parts:
            return pd.DataFrame({"run": [], "lost": [], "gained": [], "p_value": []})
        out = pd.concat(parts, ignore_index=True)
        out["p_value"] = mcnemar_exact_p(out["lost"], out["gained"])
        return out

    def last_groups(self) -> np.ndarray:
        """Index of each run's last recorded epoch group."""
        return np.flatnonzero(np.r_[self.run[1:] != self.run[:-1], True]) if self.run.size else self.run

    def correct_at(self, wanted: dict) -> dict:
        """{run code: (examples, correct)} at the epoch `wanted` names for each run code."""
        out = {}
        for g in np.flatnonzero([wanted.get(int(r)) == e for r, e in zip(self.run, self.epoch)]):
            s = slice(self.start[g], self.start[g] + self.size[g])
            out[int(self.run[g])] = (self.example[s], self.correct[s])
        return out

    def final_correct(self) -> dict:
        """{run code: (examples, correct, labels)} at each run's last recorded epoch."""
        out = {}
        for g in self.last_groups():
            s = slice(self.start[g], self.start[g] + self.size[g])
            out[int(self.run[g])] = (self.example[s], self.correct[s], self.label[s])
        return out

    def collapse(self) -> pd.DataFrame:
        """Per run: collapsed at the last recorded epoch, ever collapsed (one class for all images)."""
        if self.run.size == 0:
            return pd.DataFrame({"ends_collapsed": pd.Series(dtype=bool), "ever_collapsed": pd.Series(dtype=bool)})
        groups = np.repeat(np.arange(self.run.size), self.size)
        _, share = majority_by_group(groups, self.predicted, self.run.size)
        frame = pd.DataFrame({"run": self.run, "collapsed": share == 1.0})
        last = frame.groupby("run", sort=False).tail(1).set_index("run")["collapsed"]
        ever = frame.groupby("run", sort=False)["collapsed"].any()
        return pd.DataFrame({"ends_collapsed": last, "ever_collapsed": ever})


def _check_inputs(runs, epochs, predictions, meta):
    for frame, columns, name in ((runs, RUN_COLUMNS, "runs"), (epochs, EPOCH_COLUMNS, "epochs"),
                                 (predictions, PREDICTION_COLUMNS, "predictions")):
        if not isinstance(frame, pd.DataFrame):
            raise UserError(f"{name} must be a pandas DataFrame")
        need_columns(frame, columns, name)
    if not isinstance(meta, dict):
        raise UserError("meta must be a dict")
    if runs["run_id"].duplicated().any():
        raise UserError("runs holds the same run_id more than once")
    if len(runs) == 0:
        raise UserError("the store holds no runs: nothing to summarize")
    if len(epochs) == 0:
        raise UserError("the store holds no epochs: nothing to summarize")


def _per_run(runs: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """runs plus final/best val accuracy, last epoch, and a split identity per run."""
    ordered = epochs.sort_values(["run_id", "epoch"], kind="stable")
    last = ordered.groupby("run_id", sort=False).tail(1).set_index("run_id")
    per = runs.sort_values("run_id", kind="stable").set_index("run_id", drop=False)
    per["final_val_accuracy"] = last["val_accuracy"].astype(float).reindex(per.index)
    per["best_val_accuracy"] = ordered.groupby("run_id")["val_accuracy"].max().astype(float).reindex(per.index)
    per["last_epoch"] = last["epoch"].reindex(per.index)
    best_rows = ordered[ordered["val_accuracy"].notna()]
    best_rows = best_rows.loc[best_rows.groupby("run_id", sort=False)["val_accuracy"].idxmax()]
    per["best_epoch"] = best_rows.set_index("run_id")["epoch"].reindex(per.index)
    return per


def _split_identity(arm_runs: pd.DataFrame) -> pd.Series:
    """The validation set a run used: its fold, or (split_seed, fold) when split seeds differ."""
    if arm_runs["split_seed"].nunique() <= 1:
        return arm_runs["fold"]
    return arm_runs["split_seed"].astype(str) + ":" + arm_runs["fold"].astype(str)


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


def _design(finite: pd.DataFrame) -> str:
    """How the runs' validation images relate: each run its own, one split for all, or splits x seeds."""
    splits = finite["split"]
    if not splits.duplicated().any():
        return "own split per run"
    return "one shared split" if splits.nunique() == 1 else "seeds x shared splits"


def _crossed_table(finite, metric, epoch_col, cube, design):
    """The crossed table for crossed_mean_interval and its new_run_columns, or None.

    One shared split: (runs, images) per-image correctness at each run's `epoch_col` epoch
    (all runs on the same images); seeds x shared splits: (splits, seeds) of `metric`, one
    run per cell, every cell present.
    """
    if design == "one shared split":
        wanted = dict(zip(finite["code"].astype(int), finite[epoch_col].astype(int)))
        got = cube.correct_at(wanted)
        if len(got) < len(wanted):
            return None
        examples = [got[c][0] for c in wanted]
        if any(not np.array_equal(e, examples[0]) for e in examples):
            return None
        return np.vstack([got[c][1] for c in wanted]).astype(float), examples[0].size
    cells = finite.groupby(["split", "seed"]).size()
    if not cells.eq(1).all():
        return None
    table = finite.pivot(index="split", columns="seed", values=metric).to_numpy(dtype=float)
    return (table, 1) if np.all(np.isfinite(table)) else None


def _metric_intervals(arm, cube):
    """Intervals of the mean final and best val accuracy and for one new run.

    Own split per run: mean_interval (t; folds of one seed form one unit). Runs sharing
    validation images: crossed_mean_interval (split or image, seed and residual parts), which
    generalises to new images, with the t interval kept as `conditional` (these images only);
    where the design is incomplete only the conditional interval exists and `scope` says so.
    """
    finite = arm[np.isfinite(arm["final_val_accuracy"])]
    if len(finite) == 0:
        return {"final_val_accuracy": None, "best_val_accuracy": None}
    clustered = finite["seed"].nunique() > 1 and finite.groupby("seed").size().gt(1).any()
    units = finite["seed"].to_numpy() if clustered else None
    design = _design(finite)
    out = {}
    for metric, epoch_col in (("final_val_accuracy", "last_epoch"), ("best_val_accuracy", "best_epoch")):
        res = mean_interval(finite[metric].to_numpy(dtype=float), method="t", units=units)
        if clustered:
            res["units"] = "seed"
        res.update(design=design, scope="new validation images")
        if design != "own split per run" and len(finite) >= 2:
            res["conditional"] = {"low": res["low"], "high": res["high"], "pi_low": res["pi_low"],
                                  "pi_high": res["pi_high"], "method": "t", "scope": "these validation images"}
            crossed = _crossed_table(finite, metric, epoch_col, cube, design)
            if crossed is None:
                res.update(scope="these validation images",
                           note="runs share validation images and the design is incomplete: the interval "
                                "holds for these images only")
            else:
                cm = crossed_mean_interval(crossed[0], new_run_columns=crossed[1])
                res.update({k: cm[k] for k in ("low", "high", "pi_low", "pi_high", "df", "components")},
                           method="crossed-anova")
        out[metric] = res
    return out


def _moves(arm, arm_epochs, moves_by_run, val_size):
    """Share of epoch-to-epoch accuracy changes within noise (McNemar; Fisher where no predictions)."""
    tested = moves_by_run[moves_by_run["run"].isin(arm["code"])]
    tested = tested[tested["lost"] != tested["gained"]]
    p = [tested["p_value"].to_numpy()]
    without = arm.loc[~arm["code"].isin(moves_by_run["run"]), "run_id"]
    fisher_moves = 0
    if len(without) and val_size:
        ep = arm_epochs[arm_epochs["run_id"].isin(without)].sort_values(["run_id", "epoch"])
        k = np.rint(ep["val_accuracy"].to_numpy(dtype=float) * val_size)
        same_run = ep["run_id"].to_numpy()[1:] == ep["run_id"].to_numpy()[:-1]
        changed = same_run & np.isfinite(k[1:]) & np.isfinite(k[:-1]) & (k[1:] != k[:-1])
        if changed.any():
            p.append(fisher_p(k[:-1][changed].astype(int), k[1:][changed].astype(int), val_size))
            fisher_moves = int(changed.sum())
    p = np.concatenate(p)
    tests = [name for name, count in (("mcnemar", len(tested)), ("fisher", fisher_moves)) if count]
    return {
        "share": float(np.mean(p >= ALPHA)) if p.size else None,
        "moves": int(p.size),
        "within_noise": int(np.sum(p >= ALPHA)),
        "test": "+".join(tests) or None,
        "note": "moves = consecutive epochs whose val accuracy changed; within noise: p >= 0.05",
    }


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
        return _sampling_per_run(arm, finals, val_size)
    result = finite_sample_by_fold(matrices)
    for row in result["per_fold"]:
        row["fold"] = row["fold"].split("#")[0]
    result.update(method="jordan-independent-errors", sampling_variance=result["independent_errors_variance"])
    return result


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
        try:
            result = stratified_sampling_variance(np.vstack([finals[c][1] for c in codes]),
                                                  np.vstack([finals[c][2] for c in codes]))
            result.update(method="stratified-per-run", sampling_variance=result.pop("stratified_variance"))
        except UserError:
            result = None
    if result is None:
        result = binomial_sampling_variance(finite["final_val_accuracy"].to_numpy(dtype=float), val_size)
        result.update(method="binomial-per-run", sampling_variance=result.pop("binomial_variance"))
    result.update(independent_errors_variance=result["sampling_variance"],
                  finite_sample_share=result.pop("share"), folds=result["runs"], per_fold=[])
    return result


def _dynamics(arm, arm_epochs, config):
    """lr collapse and plateau-cut counts per run, loop over runs on numpy slices."""
    monitor = config.get("monitor", "val_loss")
    mode = "max" if "acc" in monitor else "min"
    patience = int(config.get("patience", 10))
    min_delta = float(config.get("min_delta", 1e-4))
    ep = arm_epochs.sort_values(["run_id", "epoch"], kind="stable")
    ids = ep["run_id"].to_numpy()
    bounds = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
    lr = ep["learning_rate"].to_numpy(dtype=float)
    mon = ep[monitor].to_numpy(dtype=float) if monitor in ep else None
    collapse_epochs, after, kinds = [], [], np.zeros(len(KINDS), dtype=int)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        run_lr = lr[lo:hi]
        if not (np.all(np.isfinite(run_lr)) and run_lr[0] > 0):
            continue
        info = lr_collapse(run_lr, COLLAPSE_THRESHOLD)
        if info["epoch"] is not None:
            collapse_epochs.append(info["epoch"])
            after.append(info["epochs_after"])
        if mon is not None:
            kind = plateau_cut_counts(mon[lo:hi], run_lr, patience, min_delta, mode)["kind"]
            kinds += np.bincount(kind, minlength=len(KINDS))
    return {
        "lr_collapse": {
            "runs": len(collapse_epochs),
            "median_epoch": float(np.median(collapse_epochs)) if collapse_epochs else None,
            "median_epochs_after": float(np.median(after)) if after else None,
            "threshold": COLLAPSE_THRESHOLD,
        },
        "plateau_cuts": {
            "monitor": monitor, "mode": mode, "patience": patience,
            "cuts": int(kinds.sum()), **{name: int(count) for name, count in zip(KINDS, kinds)},
        },
    }


#: Image-bootstrap resamples shared by all runs of an arm (at least 20 per run).
NOISE_BOOT_BUDGET = 4000


def _noise_optimism_per_image(arm, cube, level=0.95):
    """Mean over runs of resampled_noise_optimism on each run's plateau epochs, or None.

    Plateau epochs: those whose accuracy is within noise of the run's best (Fisher at
    `level`), all scored on the same images. Runs without per-image predictions are skipped.
    """
    plateaus = []
    for code in arm["code"].astype(int):
        lo, hi = np.searchsorted(cube.run, code), np.searchsorted(cube.run, code, side="right")
        groups = np.arange(lo, hi)
        if groups.size < 2 or np.unique(cube.size[groups]).size != 1:
            continue
        idx = cube.rows(groups, int(cube.size[groups[0]]))
        if not np.all(cube.example[idx] == cube.example[idx[0]]):
            continue
        correct = cube.correct[idx]
        k = correct.sum(axis=1)
        n = correct.shape[1]
        plateau = fisher_p(np.full(k.size, k.max()), k, np.full(k.size, n)) >= 1 - level
        if plateau.sum() >= 2:
            plateaus.append(correct[plateau])
    if not plateaus:
        return None
    n_boot = max(20, NOISE_BOOT_BUDGET // len(plateaus))
    results = [resampled_noise_optimism(c, n_boot=n_boot) for c in plateaus]
    return {"expected_optimism": float(np.mean([r["expected_optimism"] for r in results])),
            "epochs": int(np.median([r["epochs"] for r in results])), "n": results[0]["n"],
            "runs": len(results), "method": results[0]["method"] + "; plateau epochs, mean over runs"}


def _optimism(arm_epochs, val_size, per, cube):
    truth = arm_epochs["truth_accuracy"].to_numpy(dtype=float)
    if not np.isfinite(truth).any():
        return None
    table = optimism_summary(arm_epochs)
    out = {"rules": table.to_dict(orient="records")}
    epochs_run = per["last_epoch"].dropna()
    if val_size and len(epochs_run):
        final_truth = arm_epochs.sort_values("epoch").groupby("run_id")["truth_accuracy"].last()
        p = float(np.nanmean(final_truth)) if np.isfinite(final_truth).any() else float(np.nanmean(truth))
        independent = expected_max_noise(val_size, int(np.median(epochs_run)) + 1, p, n_sim=5000)
        independent["method"] = "independent epochs (upper bound)"
        out["expected_from_noise_independent"] = independent
        out["expected_from_noise"] = _noise_optimism_per_image(per, cube) or independent
    return out


def _arm_summary(arm_name, arm, arm_epochs, config, moves_by_run, finals, collapse, cube):
    val_size, val_size_source = _val_size(arm, arm_epochs, config)
    out = {
        "n_runs": int(len(arm)),
        "n_diverged": int((arm["status"] == "diverged").sum()),
        "val_size": val_size,
        "val_size_source": val_size_source,
        "lattice_step": None if not val_size else 1.0 / val_size,
        **_metric_intervals(arm, cube),
        "moves_within_noise_share": None, "moves_within_noise": None,
        "variance_components": None, "finite_sample": None,
        "one_class_collapse": None, "optimism": None,
        "val_size_for_halfwidth": None, "minimum_detectable_difference": None,
    }
    if len(arm) == 0:
        return out
    moves = _moves(arm, arm_epochs, moves_by_run, val_size)
    out["moves_within_noise_share"], out["moves_within_noise"] = moves["share"], moves
    if np.isfinite(arm["final_val_accuracy"]).sum() >= 2:
        out["variance_components"] = variance_components(arm, "final_val_accuracy", "split", "seed").to_dict(orient="records")
    out["finite_sample"] = _finite_sample(arm, finals, val_size)
    out.update(_dynamics(arm, arm_epochs, config))
    arm_collapse = collapse.reindex(arm["code"].to_numpy()).dropna()
    if len(arm_collapse):
        out["one_class_collapse"] = {
            "runs_ending_collapsed": int(arm_collapse["ends_collapsed"].astype(bool).sum()),
            "runs_ever_collapsed": int(arm_collapse["ever_collapsed"].astype(bool).sum()),
            "runs_with_predictions": int(len(arm_collapse)),
        }
    out["optimism"] = _optimism(arm_epochs, val_size, arm, cube)
    mean = (out["final_val_accuracy"] or {}).get("estimate")
    if val_size and mean is not None and np.isfinite(mean):
        out["val_size_for_halfwidth"] = {f"{h:.2f}": val_size_for_halfwidth(mean, h, probability=HALFWIDTH_PROBABILITY)
                                         for h in HALFWIDTHS}
        out["val_size_for_halfwidth_probability"] = HALFWIDTH_PROBABILITY
        if val_size >= 2:
            out["minimum_detectable_difference"] = minimum_detectable_difference(val_size, mean)
    return out


def _compare(name_a, name_b, per, finals):
    """Arm A vs arm B, paired on (seed, fold)."""
    cols = ["seed", "fold", "code", "final_val_accuracy", "n_train", "n_val"]
    a = per.loc[per["arm"] == name_a, cols]
    b = per.loc[per["arm"] == name_b, cols]
    pairs = a.merge(b, on=["seed", "fold"], suffixes=("_a", "_b")).drop_duplicates(["seed", "fold"])
    pairs = pairs[np.isfinite(pairs["final_val_accuracy_a"]) & np.isfinite(pairs["final_val_accuracy_b"])]
    out = {"a": name_a, "b": name_b, "pairs": int(len(pairs)), "mcnemar": [], "mcnemar_significant": 0,
           "corrected_t": None, "probability_of_improvement": None, "note": ""}
    for row in pairs.itertuples(index=False):
        fa, fb = finals.get(row.code_a), finals.get(row.code_b)
        if fa is None or fb is None or not np.array_equal(fa[0], fb[0]):
            continue
        test = mcnemar(fa[1], fb[1])
        out["mcnemar"].append({"seed": row.seed, "fold": row.fold, **test, "significant": test["p_value"] < ALPHA})
    out["mcnemar_significant"] = sum(m["significant"] for m in out["mcnemar"])
    if len(pairs) == 0:
        out["note"] = "no (seed, fold) pairs shared by both arms"
        return out
    diff_a, diff_b = pairs["final_val_accuracy_a"].to_numpy(), pairs["final_val_accuracy_b"].to_numpy()
    out["probability_of_improvement"] = probability_of_improvement(diff_a, diff_b)
    n_train = pd.to_numeric(pairs["n_train_a"], errors="coerce").median()
    n_test = pd.to_numeric(pairs["n_val_a"], errors="coerce").median()
    if len(pairs) >= 2 and np.isfinite(n_train) and np.isfinite(n_test) and n_train > 0 and n_test > 0:
        out["corrected_t"] = corrected_resampled_ttest(diff_a - diff_b, int(n_train), int(n_test))
        out["corrected_t"]["n_train"], out["corrected_t"]["n_test"] = int(n_train), int(n_test)
    else:
        out["note"] = "corrected t needs at least 2 pairs and n_train/n_val in runs"
    return out


def summarize(runs: pd.DataFrame, epochs: pd.DataFrame, predictions: pd.DataFrame, meta: dict) -> dict:
    """Answers for every arm of one experiment, from the store's tables.

    runs, epochs, predictions: the store's tables (columns RUN_COLUMNS, EPOCH_COLUMNS,
    PREDICTION_COLUMNS; predictions may be empty). meta: experiment, arms (ordered names),
    class_names (or dataset.class_names), arms_config {arm: {"data": {val_size, ...},
    "training": {learning_rate, ...}, "schedule": {monitor, patience, factor, ...}}} (flat keys too).
    Returns a JSON-ready dict (accuracies are fractions):
      experiment, arm_names (meta's order, then unlisted arms found in runs), class_names,
      arms {arm: {n_runs, n_diverged, val_size, val_size_source, lattice_step,
        final_val_accuracy, best_val_accuracy (mean_interval dicts, t; units "seed" when folds
        of a seed are clustered; design "own split per run" | "one shared split" | "seeds x
        shared splits"; scope "new validation images" | "these validation images"; where runs
        share images, low/high/pi_low/pi_high come from crossed_mean_interval (method
        "crossed-anova", df, components) and `conditional` holds the t interval for these
        images only), moves_within_noise_share, moves_within_noise {share, moves,
        within_noise, test}, variance_components (records; split = fold, or split_seed:fold),
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
        probability_of_improvement (Clopper-Pearson on wins + ties/2), note], runs_needed
        {gamma, alpha, beta, runs (valstat's paired P(A > B) interval), procedure,
        noether_independent}, unstable_images {arm: [...]} (valstat.images.unstable_images), notes.
    Missing pieces are None. All runs count (diverged too) where a final accuracy exists.
    """
    _check_inputs(runs, epochs, predictions, meta)
    per = _per_run(runs, epochs)
    per["code"] = np.arange(len(per))
    per["split"] = pd.concat([_split_identity(group).astype(str) for _, group in per.groupby("arm")])
    cube = _Predictions.build(predictions, pd.Index(per["run_id"]))
    moves_by_run = cube.moves()
    finals = cube.final_correct()
    collapse = cube.collapse()
    listed = list(meta.get("arms") or [])
    arm_names = listed + sorted(set(per["arm"]) - set(listed))
    configs = {arm: _flat_settings(settings) for arm, settings in (meta.get("arms_config") or {}).items()}
    epochs_by_arm = epochs.merge(per[["run_id", "arm"]].reset_index(drop=True), on="run_id")
    arms = {}
    for name in arm_names:
        arm = per[per["arm"] == name]
        arms[name] = _arm_summary(name, arm, epochs_by_arm[epochs_by_arm["arm"] == name], configs.get(name, {}),
                                  moves_by_run, finals, collapse, cube)
    comparisons = [_compare(arm_names[0], other, per, finals) for other in arm_names[1:]]
    gamma, alpha, beta = 0.75, 0.05, 0.05
    summary = {
        "experiment": meta.get("experiment"),
        "arm_names": arm_names,
        "class_names": list(meta.get("class_names") or (meta.get("dataset") or {}).get("class_names") or []),
        "arms": arms,
        "comparisons": comparisons,
        "runs_needed": {"gamma": gamma, "alpha": alpha, "beta": beta, "runs": runs_needed(gamma, alpha, beta),
                        "procedure": "paired runs; the P(A > B) interval (Clopper-Pearson on wins + ties/2, "
                                     "two-sided) excludes 1/2; exact power without ties",
                        "noether_independent": noether_runs(gamma, alpha, beta)},
        "unstable_images": unstable_images(runs, predictions, meta),   # valstat.images
        "notes": [
            "final/best val accuracy: interval of the mean (CI) and a prediction interval for one new run "
            "(pi); t over runs, or crossed random effects where runs share validation images (scope says "
            "whether it holds for new images or these images only)",
            "accuracy values are fractions; the lattice step is 1/val_size",
        ],
    }
    return to_plain(summary)


def _pct(x, digits=1):
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def _span(low, high):
    """Percent range of an accuracy interval, clipped to 0..100% for display."""
    return f"{_pct(max(0.0, low))}..{_pct(min(1.0, high))}"


def _format_metric(label, m):
    if not m:
        return f"  {label}: n/a"
    scope = "these validation images" if m.get("scope") == "these validation images" else "new images"
    ci = f"CI {_span(m['low'], m['high'])} ({scope})" if m.get("low") is not None else "no CI"
    parts = [ci]
    if m.get("sd") is not None:
        parts.append(f"sd {_points(m['sd'])}")
    if m.get("pi_low") is not None:
        parts.append(f"one new run {_span(m['pi_low'], m['pi_high'])}")
    conditional = m.get("conditional")
    if conditional and m.get("method") == "crossed-anova" and conditional.get("low") is not None:
        parts.append(f"on these validation images CI {_span(conditional['low'], conditional['high'])}")
    design = f", {m['design']}" if m.get("design") else ""
    return f"  {label}: mean {_pct(m['estimate'])} ({'; '.join(parts)}; n={m['n']}{design})"


def _points(value) -> str:
    """A difference or spread of accuracies in percentage points."""
    return "n/a" if value is None else f"{100 * value:.1f} points"


def format_summary(summary: dict) -> str:
    """Compact human-readable text of a summarize() result, one block per arm."""
    lines = [f"experiment: {summary.get('experiment')}"]
    for name, arm in summary["arms"].items():
        lines.append(f"arm {name}: {arm['n_runs']} runs ({arm['n_diverged']} diverged), "
                     f"validation images {arm['val_size']} (one image = {_pct(arm['lattice_step'], 2)})")
        lines.append(_format_metric("final val accuracy", arm["final_val_accuracy"]))
        lines.append(_format_metric("best val accuracy", arm["best_val_accuracy"]))
        moves = arm.get("moves_within_noise") or {}
        if moves.get("moves"):
            lines.append(f"  epoch-to-epoch changes within noise: {moves['within_noise']}/{moves['moves']} "
                         f"({_pct(moves['share'])}, {moves['test']})")
        if arm.get("variance_components"):
            parts = [f"{r['component']} {_pct(r['share'], 0) if r['share'] is not None else 'n/a'}"
                     for r in arm["variance_components"] if r["component"] in ("split", "seed", "residual")]
            lines.append(f"  variance shares: {', '.join(parts)} ({arm['variance_components'][0]['method']})")
        finite = arm.get("finite_sample")
        if finite and finite.get("method", "jordan-independent-errors") == "jordan-independent-errors":
            lines.append(f"  finite validation set explains {_pct(finite['finite_sample_share'], 0)} "
                         f"of within-fold variance")
        elif finite:
            how = "stratified by class" if finite["method"] == "stratified-per-run" else "binomial"
            sd = 100 * math.sqrt(max(finite["sampling_variance"], 0.0))
            lines.append(f"  drawing {finite['n']} validation images per run ({how}): sd {sd:.1f} points, "
                         f"{_pct(finite['finite_sample_share'], 0)} of run-to-run variance; the rest is the model")
        if arm.get("lr_collapse"):
            lc, pc = arm["lr_collapse"], arm["plateau_cuts"]
            when = f" (median epoch {lc['median_epoch']:g})" if lc["median_epoch"] is not None else ""
            lines.append(f"  learning rate below 1% of start in {lc['runs']} runs{when}; "
                         f"LR cuts {pc['cuts']}, after ties only {pc['after_ties_only']}, after worse {pc['after_worse']}")
        if arm.get("one_class_collapse"):
            oc = arm["one_class_collapse"]
            lines.append(f"  one-class collapse: {oc['runs_ending_collapsed']} runs end collapsed, "
                         f"{oc['runs_ever_collapsed']} ever")
        for rule in (arm.get("optimism") or {}).get("rules", []):
            ci = ("no CI" if rule["low"] is None
                  else f"CI {100 * rule['low']:.1f}..{100 * rule['high']:.1f}")
            lines.append(f"  optimism of {rule['rule']}: {_points(rule['mean'])} ({ci})")
        if arm.get("val_size_for_halfwidth"):
            sizes = ", ".join(f"±{_pct(float(h), 0)}: {n} images" for h, n in arm["val_size_for_halfwidth"].items())
            prob = arm.get("val_size_for_halfwidth_probability")
            lines.append(f"  validation size for a 95% interval of {sizes}"
                         + (f" (reached with probability {prob:g})" if prob else ""))
    for comp in summary.get("comparisons", []):
        poi = comp.get("probability_of_improvement") or {}
        t = comp.get("corrected_t") or {}
        poi_text = "n/a" if not poi else f"{poi['estimate']:.2f} (exact CI {poi['low']:.2f}..{poi['high']:.2f})"
        t_text = "n/a" if not t else f"t={t['t']:.2f}, p={t['p_value']:.3g}" if t.get("t") is not None else f"p={t['p_value']:.3g}"
        lines.append(f"{comp['a']} vs {comp['b']}: {comp['pairs']} (seed, fold) pairs; McNemar significant in "
                     f"{comp['mcnemar_significant']}/{len(comp['mcnemar'])}; P({comp['a']} > {comp['b']}) {poi_text}; "
                     f"corrected t {t_text}")
    rn = summary.get("runs_needed") or {}
    lines.append(f"runs needed to detect P(A>B)={rn.get('gamma')}: {rn.get('runs')} paired runs "
                 f"(95% P(A>B) interval excludes 1/2 with power {1 - (rn.get('beta') or 0.05):g}; "
                 f"Noether's two-sample formula: {rn.get('noether_independent')})")
    lines += format_unstable(summary.get("unstable_images") or {})
    return "\n".join(lines)
