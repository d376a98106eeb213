"""Where run-to-run spread comes from: finite validation sets, splits, seeds."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from valstat.errors import ValstatError
from valstat.stats._checks import as_1d, as_bool_matrix, check_positive_int, need_columns

COMPONENTS = ("split", "seed", "residual")


def _share(part: float, empirical: float) -> float:
    """part / empirical clipped to [0, 1]; NaN when the empirical variance is 0."""
    return float(np.clip(part / empirical, 0.0, 1.0)) if empirical > 0 else float("nan")


def finite_sample_variance(correct) -> dict:
    """Split the run-to-run variance of accuracy on one fixed validation set (Jordan 2023).

    correct: shape (runs, images) booleans: image i classified correctly by run r.
    With eps_i the fraction of runs wrong on image i and R runs, n images:
      empirical_variance = ddof=1 variance over runs of the accuracy;
      independent_errors_variance = (1/n²) Σ eps_i(1 - eps_i) · R/(R-1), i.e. each image's
        ddof=1 Bernoulli variance. ddof=1 on both terms makes the estimator unbiased: the
        difference is then exactly the mean off-diagonal covariance between images. (The
        plug-in eps(1-eps) with no R/(R-1) biases the distribution-wise variance up by
        about independent/R, which shows on a handful of runs.)
      distribution_variance = n/(n-1) · (empirical - independent), unclipped (may be < 0);
      distribution_variance_clipped = max(0, distribution_variance);
      finite_sample_share = independent / empirical, clipped to [0, 1] (NaN if empirical = 0).
    Variances are in accuracy-fraction units squared. Also returns runs, n.
    """
    c = as_bool_matrix(correct, "correct", min_rows=2, min_cols=2)
    runs, n = c.shape
    acc = c.mean(axis=1)
    empirical = float(acc.var(ddof=1))
    eps = 1.0 - c.mean(axis=0)
    independent = float(np.sum(eps * (1 - eps)) / n**2 * runs / (runs - 1))
    distribution = n / (n - 1) * (empirical - independent)
    share = _share(independent, empirical)
    return {
        "empirical_variance": empirical,
        "independent_errors_variance": independent,
        "distribution_variance": float(distribution),
        "distribution_variance_clipped": float(max(0.0, distribution)),
        "finite_sample_share": share,
        "runs": int(runs),
        "n": int(n),
    }


def finite_sample_by_fold(correct_by_fold: dict) -> dict:
    """finite_sample_variance per fold, averaged over folds (each fold has its own images).

    correct_by_fold: {fold: (runs, images) boolean matrix}; folds with fewer than 2 runs are
    skipped. The raw (unclipped) variances are averaged over folds and clipped once:
    distribution_variance_clipped = max(0, mean distribution_variance) and
    finite_sample_share = mean independent / mean empirical, clipped to [0, 1] (averaging
    per-fold clipped values would bias both: with independent errors the share came out
    about 0.86, not 1). Also returns folds (used), runs (total) and per_fold (list of the
    per-fold dicts with `fold`). Variances in accuracy-fraction units squared.
    """
    per_fold = []
    for fold, matrix in correct_by_fold.items():
        if np.shape(matrix)[0] >= 2:
            per_fold.append({"fold": fold, **finite_sample_variance(matrix)})
    if not per_fold:
        raise ValstatError("finite-sample variance needs a fold with at least 2 runs on the same images")
    table = pd.DataFrame(per_fold)
    out = {key: float(table[key].mean())
           for key in ("empirical_variance", "independent_errors_variance", "distribution_variance")}
    out["distribution_variance_clipped"] = max(0.0, out["distribution_variance"])
    out["finite_sample_share"] = _share(out["independent_errors_variance"], out["empirical_variance"])
    out.update(folds=len(per_fold), runs=int(table["runs"].sum()), per_fold=per_fold)
    return out


def _sampling_result(name: str, sampling: float, acc: np.ndarray, n: int) -> dict:
    empirical = float(acc.var(ddof=1))
    model = empirical - sampling
    return {
        name: float(sampling),
        "empirical_variance": empirical,
        "share": _share(sampling, empirical),
        "model_variance": float(model),
        "model_variance_clipped": float(max(0.0, model)),
        "runs": int(acc.size),
        "n": int(n),
    }


def binomial_sampling_variance(accuracies, n) -> dict:
    """Variance a run's accuracy gets from drawing its n validation images alone (binomial).

    For designs where every run scores its own, freshly drawn validation images (no two runs
    share images, so Jordan's estimator does not apply). Given the trained model, with true
    accuracy p on the population the images are drawn from, k of n fresh images are right with
    k ~ Binomial(n, p): the draw adds p(1 - p)/n to the variance of the run's accuracy k/n.
      accuracies: shape (runs,), each run's accuracy k/n as a fraction in [0, 1], runs >= 2.
      n: validation images per run (>= 2).
    Per run p̂(1 - p̂)/(n - 1) is unbiased for p(1 - p)/n (E[p̂(1 - p̂)] = p(1 - p)(n - 1)/n);
    their mean over runs estimates E_runs[p(1 - p)]/n. The observed run-to-run variance is then
    that plus Var_runs(p), the model's own variance (initial weights, batch order, training set).
    Returns (variances in accuracy-fraction units squared):
      binomial_variance: mean over runs of p̂(1 - p̂)/(n - 1);
      empirical_variance: ddof=1 variance of the accuracies over runs;
      share: binomial / empirical clipped to [0, 1] (NaN if empirical is 0);
      model_variance: empirical - binomial, unclipped (may be < 0 by chance);
      model_variance_clipped: max(0, model_variance); runs; n.
    Caveats, both making the binomial figure an upper bound of the sampling variance:
      stratified draws (valstat's splits fix the images per class) have the smaller variance
      Σ_c w_c p_c(1 - p_c)/n, where w_c are the class fractions and p_c the per-class
      accuracies: smaller by Σ_c w_c (p_c - p)²/n, which is all of it for a run that gets whole
      classes right or wrong (a collapse to one class): see stratified_sampling_variance;
      no finite-population correction (N - n)/(N - 1): images are treated as drawn from an
      unlimited population, not without replacement from a pool of N.
    """
    acc = as_1d(accuracies, "accuracies", min_len=2)
    n = check_positive_int(n, "n")
    if n < 2:
        raise ValstatError("binomial sampling variance needs at least 2 validation images per run")
    if np.any((acc < 0) | (acc > 1)):
        raise ValstatError("accuracies must be fractions in [0, 1]")
    binomial = float(np.mean(acc * (1 - acc) / (n - 1)))
    return _sampling_result("binomial_variance", binomial, acc, n)


def stratified_sampling_variance(correct, labels) -> dict:
    """Variance a run's accuracy gets from drawing its validation images stratified by class.

    Like binomial_sampling_variance, for runs that each score their own freshly drawn images,
    but for draws that fix the number n_c of images of each class (valstat's splits do): the
    accuracy is Σ_c (n_c/n) p̂_c, and the draw adds Σ_c (n_c/n)² p_c(1 - p_c)/n_c, the standard
    variance of a stratified mean (no finite-population correction: each class's images are
    treated as drawn from an unlimited population). Per run and class the ddof=1 variance of
    the correct flags, n_c/(n_c - 1) p̂_c(1 - p̂_c), is unbiased for p_c(1 - p_c), so per run
      v_r = Σ_c n_c² p̂_c(1 - p̂_c) / (n² (n_c - 1))
    is unbiased, and is 0 for a run that gets every class all right or all wrong.
      correct: shape (runs, n) booleans, run r's final prediction on its own image j is right;
      labels: shape (runs, n), the class of that image. Every class present in a run needs at
        least 2 of its images there (else ValstatError: use binomial_sampling_variance).
    Returns stratified_variance (mean of v_r over runs), binomial_variance (the binomial figure
    for the same runs) and binomial_share, and empirical_variance, share, model_variance,
    model_variance_clipped, runs, n as binomial_sampling_variance does (share and
    model_variance from the stratified figure). Variances in accuracy-fraction units squared.
    """
    c = as_bool_matrix(correct, "correct", min_rows=2, min_cols=2)
    labels = np.asarray(labels)
    if labels.shape != c.shape:
        raise ValstatError(f"labels must have the shape of correct {c.shape}, got {labels.shape}")
    runs, n = c.shape
    codes = np.unique(labels, return_inverse=True)[1].reshape(c.shape)
    k = int(codes.max()) + 1
    cell = (codes + k * np.arange(runs)[:, None]).ravel()
    n_c = np.bincount(cell, minlength=runs * k).reshape(runs, k)
    right = np.bincount(cell, weights=c.ravel(), minlength=runs * k).reshape(runs, k)
    present = n_c > 0
    if np.any(present & (n_c < 2)):
        raise ValstatError("stratified sampling variance needs at least 2 images of every class "
                        "present in each run")
    p = right / np.maximum(n_c, 1)
    per_run = np.sum(np.where(present, n_c**2 * p * (1 - p) / np.maximum(n_c - 1, 1), 0.0), axis=1) / n**2
    acc = c.mean(axis=1)
    out = _sampling_result("stratified_variance", float(per_run.mean()), acc, n)
    binomial = binomial_sampling_variance(acc, n)
    out.update(binomial_variance=binomial["binomial_variance"], binomial_share=binomial["share"])
    return out


def _frame(rows, method, total):
    df = pd.DataFrame(rows, columns=["component", "variance", "raw", "note"])
    kept = df["variance"].sum(min_count=1)
    df["share"] = df["variance"] / kept if kept and kept > 0 else np.nan
    df["method"] = method
    df.loc[len(df)] = ["total", total, total, "observed ddof=1 variance over runs", 1.0 if total > 0 else np.nan, "observed"]
    return df[["component", "variance", "raw", "share", "method", "note"]]


def _row(name, raw, note=""):
    return [name, np.nan if np.isnan(raw) else max(0.0, raw), raw, note]


def _one_way(y, groups):
    """Method-of-moments one-way random effects: (between, within) variances."""
    _, codes = np.unique(groups, return_inverse=True)
    sizes = np.bincount(codes)
    g, N = sizes.size, y.size
    means = np.bincount(codes, weights=y) / sizes
    ms_between = np.sum(sizes * (means - y.mean()) ** 2) / (g - 1)
    ms_within = np.sum((y - means[codes]) ** 2) / (N - g)
    n0 = (N - np.sum(sizes**2) / N) / (g - 1)
    return (ms_between - ms_within) / n0, ms_within


def _two_way(y, a, b):
    """Crossed two-way random effects, one run per cell (balanced): MoM (split, seed, residual)."""
    table = pd.DataFrame({"a": a, "b": b, "y": y}).pivot(index="a", columns="b", values="y").to_numpy()
    I, J = table.shape
    grand = table.mean()
    row, col = table.mean(axis=1), table.mean(axis=0)
    ms_a = J * np.sum((row - grand) ** 2) / (I - 1)
    ms_b = I * np.sum((col - grand) ** 2) / (J - 1)
    ms_e = np.sum((table - row[:, None] - col[None, :] + grand) ** 2) / ((I - 1) * (J - 1))
    return (ms_a - ms_e) / J, (ms_b - ms_e) / I, ms_e


def _mixedlm(y, a, b):
    """Crossed random effects by REML (statsmodels MixedLM with variance components)."""
    from statsmodels.regression.mixed_linear_model import MixedLM

    data = pd.DataFrame({"y": y, "split": pd.Categorical(a).codes, "seed": pd.Categorical(b).codes, "all": 1})
    vc = {"split": "0 + C(split)", "seed": "0 + C(seed)"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = MixedLM.from_formula("y ~ 1", groups="all", vc_formula=vc, re_formula="0", data=data).fit(reml=True)
    vcomp = dict(zip(fit.model.exog_vc.names, fit.vcomp))
    return float(vcomp["split"]), float(vcomp["seed"]), float(fit.scale)


def variance_components(runs_df: pd.DataFrame, metric: str = "final_val_accuracy", split_col: str = "fold", seed_col: str = "seed") -> pd.DataFrame:
    """Variance of a per-run metric split into split (validation set), seed and residual.

    runs_df: one row per run with columns `metric`, `split_col`, `seed_col`; rows with a
      non-finite metric are dropped; at least 2 runs are needed.
    Design -> method:
      several splits x several seeds, one run per cell, all cells present: crossed two-way
        random-effects ANOVA, method of moments ("anova-crossed"); the residual is the
        split x seed interaction plus any other noise;
      several splits x several seeds otherwise (missing cells, replicates): statsmodels
        MixedLM with crossed variance components, REML ("mixedlm-reml");
      otherwise ("anova-one-way"): a factor with a single level is NaN (not estimable); a
        factor with one run per level cannot be told from the residual: it is NaN (inside
        the residual) when the other factor is estimated by one-way ANOVA, and it gets all
        the variance (residual NaN) when the other factor has a single level.
    Returns DataFrame rows split, seed, residual, total with columns component, variance
      (clipped at 0; NaN = not estimable), raw (unclipped moment estimate), share (of the
      sum of the three clipped components), method, note. Units: metric units squared.
    """
    need_columns(runs_df, [metric, split_col, seed_col], "runs_df")
    data = runs_df[[metric, split_col, seed_col]].copy()
    data[metric] = pd.to_numeric(data[metric], errors="coerce")
    data = data[np.isfinite(data[metric].to_numpy(dtype=float))]
    if len(data) < 2:
        raise ValstatError(f"variance components need at least 2 runs with a finite {metric}")
    y = data[metric].to_numpy(dtype=float)
    groups = {"split": data[split_col].to_numpy(), "seed": data[seed_col].to_numpy()}
    total = float(y.var(ddof=1))
    roles = {}
    for name, values in groups.items():
        levels = len(pd.unique(values))
        roles[name] = "single" if levels == 1 else "per-run" if levels == len(y) else "factor"
    factors = [name for name, role in roles.items() if role == "factor"]
    if len(factors) == 2:
        cells = data.groupby([split_col, seed_col]).size()
        if len(cells) == cells.index.levshape[0] * cells.index.levshape[1] and cells.eq(1).all():
            split, seed, resid = _two_way(y, groups["split"], groups["seed"])
            method = "anova-crossed"
        else:
            split, seed, resid = _mixedlm(y, groups["split"], groups["seed"])
            method = "mixedlm-reml"
        return _frame([_row("split", split), _row("seed", seed), _row("residual", resid)], method, total)
    rows = {name: _row(name, np.nan, f"one {name} level: not estimable") for name, role in roles.items() if role == "single"}
    per_run = [name for name, role in roles.items() if role == "per-run"]
    if factors:
        between, within = _one_way(y, groups[factors[0]])
        rows[factors[0]] = _row(factors[0], between)
        rows["residual"] = _row("residual", within)
        rows.update({name: _row(name, np.nan, f"one run per {name}: inside residual") for name in per_run})
    elif len(per_run) == 1:
        name = per_run[0]
        rows[name] = _row(name, total, f"one run per {name}: includes the residual (not separable)")
        rows["residual"] = _row("residual", np.nan, f"not separable from {name}")
    else:
        rows.update({name: _row(name, np.nan, "changes with every run: inside residual") for name in per_run})
        rows["residual"] = _row("residual", total, "split and seed not separable: all variance is residual")
    return _frame([rows[c] for c in COMPONENTS], "anova-one-way", total)


def variance_components_with_noise(runs_df: pd.DataFrame, correct_by_fold: dict, metric: str = "final_val_accuracy",
                                   split_col: str = "fold", seed_col: str = "seed") -> pd.DataFrame:
    """variance_components plus a `finite_sample` row from finite_sample_by_fold.

    correct_by_fold: {fold: (runs, images) booleans} for the runs' final epochs.
    The finite_sample row's variance is the fold-averaged independent-errors variance and its
    share is the fold-averaged finite_sample_share, i.e. a share of the within-fold variance
    (seed + residual), not of the total: it overlaps those components and does not add to them.
    """
    df = variance_components(runs_df, metric, split_col, seed_col)
    noise = finite_sample_by_fold(correct_by_fold)
    df.loc[len(df)] = [
        "finite_sample", noise["independent_errors_variance"], noise["independent_errors_variance"],
        noise["finite_sample_share"], "jordan-independent-errors",
        f"binomial noise of the finite validation set, averaged over {noise['folds']} fold(s); part of seed+residual",
    ]
    return df
