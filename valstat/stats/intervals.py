"""Confidence intervals: one run's accuracy (binomial) and a metric's mean over runs."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint

from valstat.errors import ValstatError
from valstat.stats._checks import as_1d, check_choice, check_level, check_positive_int

# valstat name -> statsmodels proportion_confint name
BINOMIAL_METHODS = {
    "wilson": "wilson",
    "clopper-pearson": "beta",
    "jeffreys": "jeffreys",
    "agresti-coull": "agresti_coull",
    "wald": "normal",
}
MEAN_METHODS = ("t", "percentile", "bca")
# Below this many runs the mean's interval allows for a one-class collapse mode the runs may
# not show (collapse_mean_interval); from it on, the t interval covers (calibration table).
COLLAPSE_AWARE_BELOW = 20

# scipy >= 1.15 names the generator `rng`; older versions call it `random_state`.
_BOOTSTRAP_RNG_ARG = "rng" if "rng" in inspect.signature(sps.bootstrap).parameters else "random_state"

# Bootstrap work is done in chunks of at most this many drawn numbers (memory bound).
_CHUNK_CELLS = 2_000_000


def _counts(k, n):
    """Check and broadcast counts: integers with n >= 1 and 0 <= k <= n."""
    k_arr = np.asarray(k, dtype=float)
    n_arr = np.asarray(n, dtype=float)
    if k_arr.size == 0 or n_arr.size == 0:
        raise ValstatError("k and n must not be empty")
    if not (np.all(np.isfinite(k_arr)) and np.all(np.isfinite(n_arr))):
        raise ValstatError("k and n must be finite whole numbers")
    if np.any(k_arr != np.round(k_arr)) or np.any(n_arr != np.round(n_arr)):
        raise ValstatError("k (images correct) and n (images) must be whole numbers")
    if np.any(n_arr <= 0):
        raise ValstatError(f"n must be >= 1, got {n_arr.min():g}")
    if np.any(k_arr < 0) or np.any(k_arr > n_arr):
        raise ValstatError("k must satisfy 0 <= k <= n (images correct cannot exceed images)")
    k_arr, n_arr = np.broadcast_arrays(k_arr, n_arr)
    return k_arr.copy(), n_arr.copy()


def binomial_interval(k, n, level: float = 0.95, method: str = "wilson"):
    """Interval for a proportion k/n (one model's accuracy on n images).

    k: images correct, scalar or array (any shape, broadcast against n).
    n: images, scalar or array, >= 1.
    method: wilson | clopper-pearson | jeffreys | agresti-coull | wald
      (statsmodels ``proportion_confint``; Jeffreys is clamped to 0 at k=0 and 1 at k=n,
      which statsmodels does not do). Every bound is clipped to [0, 1]. Wilson covers 95 % on
      average over p but at worst 0.84 for p in [0.9, 0.999] at n = 10, 30, 100 (exact
      enumeration); Clopper-Pearson never below the level.
    Returns (low, high): floats for scalar input, arrays of the broadcast shape otherwise.
    """
    level = check_level(level)
    if isinstance(method, str):
        method = method.lower().replace("_", "-")
    check_choice(method, BINOMIAL_METHODS, "interval method")
    scalar = np.ndim(k) == 0 and np.ndim(n) == 0
    k_arr, n_arr = _counts(k, n)
    low, high = proportion_confint(k_arr, n_arr, alpha=1.0 - level, method=BINOMIAL_METHODS[method])
    low = np.clip(np.asarray(low, dtype=float), 0.0, 1.0)
    high = np.clip(np.asarray(high, dtype=float), 0.0, 1.0)
    if method == "jeffreys":
        low = np.where(k_arr == 0, 0.0, low)
        high = np.where(k_arr == n_arr, 1.0, high)
    if scalar:
        return float(low), float(high)
    return low, high


def _unit_layout(values, units):
    """Sort values by unit: return (sorted values, start index per unit, size per unit)."""
    unit_arr = np.asarray(units)
    if unit_arr.shape != values.shape:
        raise ValstatError(f"units must have the same length as values ({values.size}), got {unit_arr.size}")
    _, codes = np.unique(unit_arr, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    return values[order], starts, sizes


def _unit_means(sorted_values, starts, sizes):
    return np.add.reduceat(sorted_values, starts) / sizes


def _bootstrap_means(values, n_boot, rng, layout=None):
    """Means of `n_boot` bootstrap resamples, shape (n_boot,).

    Without a layout: resample values with replacement. With a unit layout (hierarchical):
    resample units with replacement, then values within each chosen unit; the statistic is
    the mean over chosen units of their resampled means.
    """
    out = np.empty(n_boot)
    if layout is None:
        n = values.size
        step = max(1, _CHUNK_CELLS // n)
        for start in range(0, n_boot, step):
            stop = min(n_boot, start + step)
            idx = rng.integers(0, n, size=(stop - start, n))
            out[start:stop] = values[idx].mean(axis=1)
        return out
    sorted_values, starts, sizes = layout
    n_units, widest = sizes.size, int(sizes.max())
    slots = np.arange(widest)
    step = max(1, _CHUNK_CELLS // (n_units * widest))
    for start in range(0, n_boot, step):
        stop = min(n_boot, start + step)
        chosen = rng.integers(0, n_units, size=(stop - start, n_units))
        size = sizes[chosen][..., None]
        within = np.floor(rng.random((stop - start, n_units, widest)) * size).astype(np.int64)
        mask = slots < size
        picked = np.where(mask, sorted_values[starts[chosen][..., None] + np.minimum(within, size - 1)], 0.0)
        out[start:stop] = (picked.sum(axis=2) / size[..., 0]).mean(axis=1)
    return out


def _bca_bounds(boot, estimate, jackknife, level):
    """BCa bounds from bootstrap statistics and leave-one-out (jackknife) statistics."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z0 = sps.norm.ppf(np.mean(boot < estimate))
        dev = jackknife.mean() - jackknife
        accel = np.sum(dev**3) / (6.0 * np.sum(dev**2) ** 1.5)
        z = sps.norm.ppf([(1 - level) / 2, (1 + level) / 2])
        alphas = sps.norm.cdf(z0 + (z0 + z) / (1 - accel * (z0 + z)))
    if not np.all(np.isfinite(alphas)):
        return np.nan, np.nan
    low, high = np.percentile(boot, alphas * 100)
    return float(low), float(high)


def _scipy_bca(values, level, n_boot, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sps.bootstrap(
            (values,),
            lambda x, axis: np.mean(x, axis=axis),
            vectorized=True,
            n_resamples=n_boot,
            confidence_level=level,
            method="BCa",
            **{_BOOTSTRAP_RNG_ARG: np.random.default_rng(seed)},
        )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def effective_size_bounds(estimate: float, se: float, df: float, scored: float, level: float = 0.95):
    """Korn & Graubard (1998) interval for a mean accuracy whose standard error `se` (with `df`
    degrees of freedom) comes from a design, not from one binomial count: Clopper-Pearson at
    the effective number of images n* = estimate·(1 - estimate)/se², at most `scored` (the
    images scored in all, the most a binomial count could rest on; also n* where se = 0 or the
    estimate is 0 or 1), times (z/t_df)² for the estimated se. Unlike estimate ± t·se it is
    never of zero width (runs that tie on k/n) and reaches further toward 0.5 than toward 1
    near accuracy 1, where a mean of few images' skewed accuracies sits.
    estimate: fraction in [0, 1]; se: >= 0; df: > 0 (inf allowed); scored: > 0 images.
    Returns (low, high), fractions.
    """
    level = check_level(level)
    if not (0 <= estimate <= 1 and se >= 0 and scored > 0 and df > 0):
        raise ValstatError("effective_size_bounds needs 0 <= estimate <= 1, se >= 0, df > 0 and scored > 0, got "
                           f"{estimate!r}, {se!r}, {df!r}, {scored!r}")
    alpha = 1 - level
    variance = se * se
    binomial = estimate * (1 - estimate)
    n_eff = scored if variance <= 0 or binomial <= 0 else min(scored, binomial / variance)
    if np.isfinite(df):
        n_eff *= (sps.norm.ppf(1 - alpha / 2) / sps.t.ppf(1 - alpha / 2, df)) ** 2
    x = estimate * n_eff
    low = 0.0 if x <= 0 else float(sps.beta.ppf(alpha / 2, x, n_eff - x + 1))
    high = 1.0 if x >= n_eff else float(sps.beta.ppf(1 - alpha / 2, x + 1, n_eff - x))
    return low, high


def _prediction_hull(t_low, t_high, estimate, sd_new, df, images, level):
    """One new run's interval: the hull of the t prediction interval and the effective-size
    bound on the same sd and df with at most the run's `images`. Near accuracy 1 a run's
    accuracy is skewed: the effective-size bound reaches down to the runs that miss several
    images, the t bound up to the run that misses none (a lattice value the beta bound never
    reaches); either alone missed (t: 0.84 with 2 seeds on 10 images at 0.93)."""
    low, high = effective_size_bounds(estimate, sd_new, df, images, level)
    return min(t_low, low), max(t_high, high)


def shared_image_covariance(examples, correct, units=None) -> float:
    """Variance the mean of runs shares through validation images several of them scored.

    examples, correct: one array per run (same shapes), the image ids it scored and whether it
    got each right (0/1). Runs that each drew their own split from one finite pool of images
    share some of them, and that pool's sampling error is in every run: with y_ri = mu + a_r +
    b_i + e_ri, runs (or units' means) covary by sigma_b² times their images' product weights.
    sigma_b² (the images' spread in difficulty, fraction²) is the mean over every pair of runs
    scoring one image of (y_ri - m_r)(y_r'i - m_r'), m_r the run's accuracy, clipped at 0. A
    t interval over the runs (or units) treats them as independent; the mean's variance is
    its se² plus the mean covariance of two units, which this returns (0 when no two units
    share an image). units: optional, shape (runs,), as mean_interval's (the mean is of unit
    means, each unit's runs weighted equally within it).
    """
    if len(examples) != len(correct):
        raise ValstatError("give one array of image ids and one of correctness per run")
    ids = [np.asarray(e) for e in examples]
    ys = [np.asarray(c, dtype=float) for c in correct]
    if any(i.shape != y.shape for i, y in zip(ids, ys)):
        raise ValstatError("each run's image ids and correctness must have the same shape")
    _, codes = np.unique(np.arange(len(ids)) if units is None else np.asarray(units), return_inverse=True)
    images, image_index = np.unique(np.concatenate(ids), return_inverse=True)
    sizes = np.array([i.size for i in ids])
    run_of = np.repeat(np.arange(len(ids)), sizes)
    deviation = np.concatenate([y - y.mean() for y in ys])
    first = np.bincount(image_index, weights=deviation, minlength=images.size)
    second = np.bincount(image_index, weights=deviation**2, minlength=images.size)
    runs_on = np.bincount(image_index, minlength=images.size).astype(float)
    pairs = float(np.sum(runs_on * (runs_on - 1) / 2))
    n_units = int(codes.max()) + 1
    if pairs == 0 or n_units < 2:
        return 0.0
    sigma_b2 = max(float(np.sum((first**2 - second) / 2)) / pairs, 0.0)
    # each unit's weight on each image (c_u,i) and their sum over units, one row per (unit, image)
    weight = 1.0 / (np.bincount(codes)[codes[run_of]] * sizes[run_of])
    _, cell = np.unique(codes[run_of] * images.size + image_index, return_inverse=True)
    per_cell = np.bincount(cell, weights=weight)
    total = np.bincount(image_index, weights=weight, minlength=images.size)
    cross = float(total @ total - per_cell @ per_cell)
    return sigma_b2 * cross / (n_units * (n_units - 1))


def mean_interval(values, level: float = 0.95, method: str = "t", units=None, n_boot: int = 10000, seed: int = 0,
                  scored: float | None = None, shared_variance: float = 0.0) -> dict:
    """Interval for the mean of a metric over runs, plus the spread of one run.

    values: shape (runs,), the metric per run (e.g. final val accuracy, a fraction).
    method: "t" | "percentile" | "bca". Which to use: "t" (valstat's reports use it) at
      the usual 5-30 runs; the bootstrap methods under-cover there (simulated 0.91-0.94 at
      10-20 runs, percentile worst) and suit many runs (about 50 or more) whose mean is
      clearly non-normal (e.g. a few runs collapsed to chance). All three treat runs as
      independent: for runs sharing validation images use crossed_mean_interval. BCa uses scipy.stats.bootstrap (without units) or a
      hierarchical BCa with a leave-one-unit-out jackknife (with units); on degenerate data
      (all equal, NaN result) it falls back to percentile and says so in `note`.
    units: optional, shape (runs,), the resampling unit per run (e.g. seed). With units the
      estimate is the mean of unit means; bootstrap methods resample units, then runs within
      each chosen unit; the t method uses the unit means (df = units - 1).
    scored: with method "t", the values are accuracies (fractions) and `scored` the images
      they were scored on in all (sum over runs): the CI is then effective_size_bounds (Korn
      and Graubard's Clopper-Pearson at the effective number of images) on the t interval's
      estimate, se and df, which keeps its coverage near accuracy 1 and has no zero width
      when the runs tie; the prediction interval is the hull of t's and that bound on
      sd·sqrt(1 + 1/n) with at most one run's images (scored / n).
    shared_variance: with method "t", added to the mean's se² (shared_image_covariance: runs
      whose own splits came from one pool of images share that pool's sampling error); the
      result then has it under "shared_variance".
    Returns dict: estimate, low, high (CI of the mean), method (used), level, n (values),
      n_units (None without units), sd (ddof=1 over values), pi_low, pi_high (t prediction
      interval for one new run: estimate ± t·sd·sqrt(1+1/n); with `scored`, its hull with the
      effective-size bound), note.
    """
    level = check_level(level)
    method = check_choice(str(method).lower(), MEAN_METHODS, "mean-interval method")
    values = as_1d(values, "values")
    n_boot = check_positive_int(n_boot, "n_boot")
    n = values.size
    layout = None if units is None else _unit_layout(values, units)
    means = values if layout is None else _unit_means(*layout)
    estimate = float(means.mean())
    result = {
        "estimate": estimate, "low": np.nan, "high": np.nan, "method": method, "level": level,
        "n": int(n), "n_units": None if layout is None else int(means.size),
        "sd": np.nan, "pi_low": np.nan, "pi_high": np.nan, "note": "",
    }
    if n >= 2:
        sd = float(values.std(ddof=1))
        t_pi = sps.t.ppf((1 + level) / 2, n - 1) * sd * np.sqrt(1 + 1 / n)
        pi_low, pi_high = estimate - t_pi, estimate + t_pi
        if scored is not None:
            pi_low, pi_high = _prediction_hull(pi_low, pi_high, estimate, sd * np.sqrt(1 + 1 / n), n - 1,
                                               scored / n, level)
        result.update(sd=sd, pi_low=float(pi_low), pi_high=float(pi_high))
    if means.size < 2:
        what = "one value" if layout is None else "one unit"
        result["note"] = f"{what}: no interval for the mean"
        return result
    if method == "t":
        shared_variance = max(float(shared_variance), 0.0)
        se = float(np.sqrt(means.var(ddof=1) / means.size + shared_variance))
        if shared_variance > 0:
            result["shared_variance"] = shared_variance
        if scored is None:
            half = sps.t.ppf((1 + level) / 2, means.size - 1) * se
            result.update(low=float(estimate - half), high=float(estimate + half))
        else:
            low, high = effective_size_bounds(estimate, se, means.size - 1, scored, level)
            result.update(low=low, high=high, method="effective-size")
        return result
    rng = np.random.default_rng(seed)
    low = high = np.nan
    if method == "bca":
        if layout is None:
            low, high = _scipy_bca(values, level, n_boot, seed)
        else:
            boot = _bootstrap_means(values, n_boot, rng, layout)
            jack = (means.sum() - means) / (means.size - 1)
            low, high = _bca_bounds(boot, estimate, jack, level)
        if np.isfinite(low) and np.isfinite(high):
            result.update(low=low, high=high)
            return result
        why = "constant data" if np.ptp(values) == 0 else "this data (NaN result)"
        result.update(method="percentile", note=f"BCa undefined on {why}; fell back to percentile")
    boot = _bootstrap_means(values, n_boot, rng, layout)
    low, high = np.percentile(boot, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    result.update(low=float(low), high=float(high))
    return result


def crossed_mean_interval(table, level: float = 0.95, new_run_columns: int = 1, scored: float | None = None) -> dict:
    """Interval for a grand mean over two crossed random factors (two-way ANOVA, no replicates).

    For runs that share validation images the mean's uncertainty has a part from the images
    (or splits) that more seeds never shrink; this interval includes it and so generalises
    to new images. Two uses:
      one split shared by all seeds: table (seeds, images) of 0/1 correctness,
        new_run_columns = images (a new run = a new seed scored on that many new images);
      seeds x shared folds: table (folds, seeds) of run accuracies, new_run_columns = 1
        (a new run = a new seed on a new fold).
    table: shape (rows, columns), rows and columns >= 2, all finite. With mean squares
    MS_r, MS_c, MS_e (rows, columns, residual) the components are s_r = (MS_r - MS_e)/C,
    s_c = (MS_c - MS_e)/R and s_e = MS_e, each clipped at 0 (a clipped one drops out);
    Var(mean) = s_r/R + s_c/C + s_e/(RC), and for one new run
    Var(new - mean) = s_r + (s_c + s_e)/m + Var(mean), m = new_run_columns. Degrees of
    freedom by Satterthwaite on the mean squares used.
    scored: the table's values are accuracies and `scored` the images behind its mean in all
    (seeds x images; seeds x folds x validation size): the CI is then effective_size_bounds on
    the estimate, se and Satterthwaite df (the t interval, estimate ± t·se, missed the mean on
    new images near accuracy 1: 0.87 at 20 seeds on 10 images); the prediction interval is
    the hull of t's and the effective-size bound on Var(new - mean) and its df, with at most
    the images one new run scores (m · scored / table cells).
    Returns dict: estimate, low, high (CI of the mean), df, se, pi_low, pi_high (one new
    run), components {rows, columns, residual} (clipped), level. Units of the table values.
    """
    level = check_level(level)
    m = check_positive_int(new_run_columns, "new_run_columns")
    y = np.asarray(table, dtype=float)
    if y.ndim != 2 or min(y.shape) < 2:
        raise ValstatError(f"table must be 2-D with at least 2 rows and 2 columns, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValstatError("table contains NaN or infinite values (the design must be complete)")
    R, C = y.shape
    grand = y.mean()
    rows, cols = y.mean(axis=1), y.mean(axis=0)
    ms = np.array([C * np.sum((rows - grand) ** 2) / (R - 1), R * np.sum((cols - grand) ** 2) / (C - 1),
                   np.sum((y - rows[:, None] - cols[None, :] + grand) ** 2) / ((R - 1) * (C - 1))])
    dfs = np.array([R - 1, C - 1, (R - 1) * (C - 1)], dtype=float)
    # each component as coefficients on (MS_r, MS_c, MS_e)
    comp = np.array([[1 / C, 0, -1 / C], [0, 1 / R, -1 / R], [0, 0, 1]])
    keep = (comp @ ms > 0) | (np.arange(3) == 2)
    comp = np.where(keep[:, None], comp, 0.0)

    def satterthwaite(weights):
        coef = weights @ comp
        var = float(coef @ ms)
        denom = float(np.sum((coef * ms) ** 2 / dfs))
        return var, (var**2 / denom if denom > 0 else np.inf)

    var_mean, df_mean = satterthwaite(np.array([1 / R, 1 / C, 1 / (R * C)]))
    var_new, df_new = satterthwaite(np.array([1 + 1 / R, 1 / m + 1 / C, 1 / m + 1 / (R * C)]))
    se = float(np.sqrt(max(var_mean, 0.0)))
    half = sps.t.ppf((1 + level) / 2, df_mean) * se
    pi_half = sps.t.ppf((1 + level) / 2, df_new) * np.sqrt(max(var_new, 0.0))
    pi_low, pi_high = grand - pi_half, grand + pi_half
    clipped = comp @ ms
    low, high = grand - half, grand + half
    if scored is not None:
        low, high = effective_size_bounds(float(grand), se, df_mean, scored, level)
        # one new run scores m columns' share of the images behind one cell of the table
        pi_low, pi_high = _prediction_hull(pi_low, pi_high, float(grand), float(np.sqrt(max(var_new, 0.0))),
                                           df_new, m * scored / y.size, level)
    return {
        "estimate": float(grand), "low": float(low), "high": float(high), "df": float(df_mean),
        "se": se, "pi_low": float(pi_low), "pi_high": float(pi_high), "level": level,
        "components": {"rows": float(clipped[0]), "columns": float(clipped[1]), "residual": float(clipped[2])},
    }


def collapse_mean_interval(values, one_class, share_range, level: float = 0.95, units=None,
                           scored: float | None = None, learned_table=None) -> dict:
    """Interval for the mean over runs allowing for a collapse mode the runs may not show.

    A run that ends predicting one class scores exactly the share of that class among the
    validation images, so the population mean is (1 - pi)·mu_learned + pi·mu_one_class with
    pi the chance that a run collapses. Each side of the interval spends alpha/2 = (1 -
    level)/2 in two halves (Bonferroni): a one-sided Clopper-Pearson bound on pi (exact, so
    0 collapsed of 10 still bounds pi by 1 - (alpha/4)^(1/10), 35 % at level 0.95) and a
    one-sided t bound on the learned runs' mean; mu_one_class lies in `share_range`. The
    bounds are the extremes of the mixture over pi in [pi_low, pi_high]. With fewer than 2
    learned runs (units) their mean is bounded by [0, 1] only, so a sample in which (nearly)
    every run collapsed never gives a narrow interval: it shows one mode, not its chance.
    It over-covers where runs rarely collapse (0.99 at level 0.95, calibration table), and most
    of that is the price of covering at every collapse chance: with 0 of n runs collapsed, as
    P(0 of n) = (1 - pi)^n, any such interval must reach down to a chance of at least
    1 - (alpha/2)^(1/n) (31 % at n = 10, against the 35 % used here).
    units: optional, shape (runs,), the seed of each run where each seed ran several folds.
      Runs of one seed are not independent, so the seeds are the sample: pi is bounded below
      by the Clopper-Pearson bound on the seeds whose runs all collapsed and above by that on
      the seeds with any collapsed run (P(all) <= pi <= P(any)); the learned mean by a t bound
      over the seeds' means of their learned runs (df = such seeds - 1; this is the
      run-weighted learned mean when a seed's collapses are unrelated to its learned
      accuracy); the estimate is the mean of seed means, as mean_interval with units.
    One new run (pi_low, pi_high) either collapses, scoring within share_range, or learns,
    scoring within the learned runs' prediction interval at `level` (mean_interval's, with
    `scored`; [0, 1] where their mean is bounded by [0, 1] only); the hull of the two covers it
    whatever pi is, where a t interval over all runs would claim certainty when they all
    collapsed (sd 0).
    scored: the images the runs scored in all (same number per run): the learned runs' mean is
      then bounded by mean_interval's effective-size bound on their share of them (so two
      learned runs that tie on k/n do not bound it to one value).
    learned_table: shape (learned runs, images), the learned runs' per-image correctness (0/1)
      where every run scored one shared split: their mean and one new learned run are then
      bounded by crossed_mean_interval on it (new images: image and seed parts) instead of t
      over their accuracies, which sees only the seeds.
    values: shape (runs,), accuracy per run (fractions); one_class: shape (runs,), booleans,
    the run ended predicting one class; share_range: (lowest, highest) share of one class in
    the runs' validation sets (fractions).
    Returns dict: estimate, low, high, method "collapse-mixture", level, n, n_units (None
      without units), sd, pi_low, pi_high, collapsed (runs), collapse_low, collapse_high
      (bounds on the collapse chance at level 1 - alpha/2), learned_low, learned_high,
      share_range, note (why the learned mean is bounded by [0, 1] only, else "").
    """
    level = check_level(level)
    values = as_1d(values, "values")
    flags = np.asarray(one_class)
    if flags.shape != values.shape or flags.dtype != bool:
        raise ValstatError(f"one_class must be {values.size} booleans, one per run")
    c_low, c_high = (float(s) for s in share_range)
    if not 0 <= c_low <= c_high <= 1:
        raise ValstatError(f"share_range must be (low, high) with 0 <= low <= high <= 1, got {share_range!r}")
    collapsed = int(flags.sum())
    result = mean_interval(values, level=level, method="t", units=units)
    half = (1 - level) / 2  # one side's alpha, split between the collapse chance and the learned mean
    if units is None:
        p_low, p_high = binomial_interval(collapsed, values.size, 1 - half, "clopper-pearson")
        learned_units = None
    else:
        _, codes = np.unique(np.asarray(units), return_inverse=True)
        all_collapsed = np.bincount(codes, weights=flags) == np.bincount(codes)
        any_collapsed = np.bincount(codes, weights=flags) > 0
        p_low = binomial_interval(int(all_collapsed.sum()), all_collapsed.size, 1 - half, "clopper-pearson")[0]
        p_high = binomial_interval(int(any_collapsed.sum()), any_collapsed.size, 1 - half, "clopper-pearson")[1]
        learned_units = codes[~flags]
    learned = values[~flags]
    learned_scored = None if scored is None else scored * learned.size / values.size
    if learned_table is not None:
        learned_table = np.asarray(learned_table, dtype=float)
        if learned_table.ndim != 2 or learned_table.shape[0] != learned.size:
            raise ValstatError(f"learned_table must have one row per learned run ({learned.size}), "
                               f"got shape {learned_table.shape}")

    def learned_bounds(at_level, by_units):
        if learned_table is not None and learned.size >= 2:
            return crossed_mean_interval(learned_table, level=at_level, new_run_columns=learned_table.shape[1],
                                         scored=learned_scored)
        return mean_interval(learned, level=at_level, method="t", units=by_units, scored=learned_scored)

    t_res = learned_bounds(1 - half, learned_units) if learned.size else {}
    if np.isfinite(t_res.get("low", np.nan)):
        l_low, l_high = max(t_res["low"], 0.0), min(t_res["high"], 1.0)
        note = ""
    else:
        l_low, l_high = 0.0, 1.0
        note = ("fewer than 2 learned runs: their mean bounded by [0, 1]" if units is None else
                "fewer than 2 seeds with a learned run: the learned runs' mean bounded by [0, 1]")
    ends = np.array([p_low, p_high])
    low = float(np.min((1 - ends) * l_low + ends * c_low))
    high = float(np.max((1 - ends) * l_high + ends * c_high))
    if not note:
        learned_pi = learned_bounds(level, None)
        new_low, new_high = max(learned_pi["pi_low"], 0.0), min(learned_pi["pi_high"], 1.0)
    else:
        new_low, new_high = 0.0, 1.0
    result.update(low=low, high=high, pi_low=float(min(new_low, c_low)), pi_high=float(max(new_high, c_high)),
                  method="collapse-mixture", collapsed=collapsed,
                  collapse_low=float(p_low), collapse_high=float(p_high), learned_low=float(l_low),
                  learned_high=float(l_high), share_range=[c_low, c_high], note=note)
    return result
