"""Selection bias: how much picking the best epoch on 30 images flatters the model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from valstat.errors import ValstatError
from valstat.stats._checks import as_bool_matrix, check_choice, check_level, check_positive_int, need_columns
from valstat.stats.intervals import mean_interval
from valstat.stats.lattice import fisher_p

RULES = {"val_accuracy": "best_val_accuracy", "val_loss": "best_val_loss", "final": "final"}


def _chosen_rows(epochs: pd.DataFrame, by: str) -> pd.DataFrame:
    """One row per run: the epoch the selection rule `by` picks (first on ties)."""
    frame = epochs if "run_id" in epochs else epochs.assign(run_id=0)
    frame = frame.sort_values(["run_id", "epoch"], kind="stable")
    if by == "final":
        return frame.groupby("run_id", sort=False).tail(1)
    grouped = frame[frame[by].notna()].groupby("run_id", sort=False)[by]
    index = grouped.idxmax() if by == "val_accuracy" else grouped.idxmin()
    return frame.loc[index.to_numpy()]


def selection_optimism(epochs_df: pd.DataFrame, by: str = "val_accuracy") -> dict:
    """Optimism of choosing an epoch by validation accuracy, validation loss, or the last one.

    epochs_df: one run, columns epoch, val_accuracy, val_loss, truth_accuracy (accuracy on
      a held-out truth set; may be all NaN). by: "val_accuracy" | "val_loss" | "final".
    Returns dict: chosen_epoch, chosen_val_accuracy, truth_accuracy_at_chosen (None if NaN),
      optimism = chosen val accuracy - truth accuracy there (fraction; None without truth).
    """
    check_choice(by, tuple(RULES), "selection rule")
    need_columns(epochs_df, ["epoch", "val_accuracy", "val_loss", "truth_accuracy"], "epochs_df")
    if len(epochs_df) == 0:
        raise ValstatError("epochs_df is empty")
    chosen = _chosen_rows(epochs_df.drop(columns=["run_id"], errors="ignore"), by)
    if chosen.empty:
        raise ValstatError(f"{by} has no finite value to choose an epoch by")
    row = chosen.iloc[0]
    truth = float(row["truth_accuracy"])
    truth = None if np.isnan(truth) else truth
    val = float(row["val_accuracy"])
    return {
        "chosen_epoch": int(row["epoch"]),
        "chosen_val_accuracy": val,
        "truth_accuracy_at_chosen": truth,
        "optimism": None if truth is None else val - truth,
    }


def optimism_per_run(epochs_all_runs_df: pd.DataFrame) -> pd.DataFrame:
    """Optimism of each selection rule for each run: columns run_id, rule, chosen_epoch, optimism."""
    need_columns(epochs_all_runs_df, ["run_id", "epoch", "val_accuracy", "val_loss", "truth_accuracy"], "epochs_df")
    parts = []
    for by, rule in RULES.items():
        rows = _chosen_rows(epochs_all_runs_df, by)
        parts.append(pd.DataFrame({
            "run_id": rows["run_id"].to_numpy(), "rule": rule, "chosen_epoch": rows["epoch"].to_numpy(),
            "optimism": (rows["val_accuracy"] - rows["truth_accuracy"]).to_numpy(dtype=float),
        }))
    return pd.concat(parts, ignore_index=True)


def optimism_summary(epochs_all_runs_df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Mean optimism per selection rule over runs, with a t interval (mean_interval) and spread.

    epochs_all_runs_df: many runs, columns run_id, epoch, val_accuracy, val_loss,
      truth_accuracy. Runs without truth accuracy at the chosen epoch are left out.
    Returns DataFrame, one row per rule (best_val_accuracy, best_val_loss, final): rule,
      mean, low, high (CI of the mean), sd, max, n_runs. Fractions of accuracy. Where every
      run gave the same value (e.g. all collapsed to one class, whose share on the validation
      and truth images is fixed) the runs show no spread for a t interval to measure, and a
      zero-width interval would claim that every new run gives exactly this value: low and
      high are NaN (not estimable) instead.
    """
    level = check_level(level)
    per_run = optimism_per_run(epochs_all_runs_df)
    rows = []
    for rule in RULES.values():
        values = per_run.loc[(per_run["rule"] == rule) & per_run["optimism"].notna(), "optimism"].to_numpy()
        row = {"rule": rule, "mean": np.nan, "low": np.nan, "high": np.nan, "sd": np.nan, "max": np.nan, "n_runs": int(values.size)}
        if values.size:
            ci = mean_interval(values, level=level, method="t")
            row.update(mean=ci["estimate"], sd=ci["sd"], max=float(values.max()))
            if np.ptp(values) > 0:
                row.update(low=ci["low"], high=ci["high"])
        rows.append(row)
    return pd.DataFrame(rows)


def plateau_epochs(k, n: int, level: float = 0.95) -> np.ndarray:
    """Epochs whose accuracy is within noise of the best: Fisher's exact test of each epoch's
    k/n against the best k/n does not reject at `level`. k: shape (epochs,) images right.
    Returns a bool mask, shape (epochs,) (the best epoch is always on the plateau)."""
    k = np.asarray(k, dtype=int)
    values, index = np.unique(k, return_inverse=True)   # one exact test per distinct count
    p = fisher_p(np.full(values.size, k.max()), values, np.full(values.size, int(n)))
    return p[index.reshape(-1)] >= 1 - level


def expected_max_noise(n, epochs, true_accuracy, n_sim: int = 20000, seed: int = 0) -> dict:
    """Optimism from picking the best of `epochs` noisy scores when nothing really changes.

    Simulates max over `epochs` independent Binomial(n, true_accuracy)/n scores, `n_sim` times.
    Returns dict: expected_max (mean of the simulated maxima), expected_optimism
      (expected_max - true_accuracy), low, high (2.5 and 97.5 percentiles of the simulated
      optimism of one run), n, epochs, true_accuracy. Fractions of accuracy.
    """
    n = check_positive_int(n, "n")
    epochs = check_positive_int(epochs, "epochs")
    n_sim = check_positive_int(n_sim, "n_sim")
    p = float(true_accuracy)
    if not 0 <= p <= 1:
        raise ValstatError(f"true_accuracy must be in [0, 1], got {true_accuracy!r}")
    draws = np.random.default_rng(seed).binomial(n, p, size=(n_sim, epochs))
    optimism = draws.max(axis=1) / n - p
    low, high = np.percentile(optimism, [2.5, 97.5])
    return {
        "expected_max": float(optimism.mean() + p), "expected_optimism": float(optimism.mean()),
        "low": float(low), "high": float(high), "n": n, "epochs": epochs, "true_accuracy": p,
    }


def resampled_noise_optimism(correct, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Noise part of best-epoch optimism from per-image results, epochs kept correlated.

    correct: shape (epochs, images) booleans, one run's per-image correctness at the epochs
      that compete for best (e.g. those within noise of the best; all on the same images).
    Images are resampled with replacement jointly across epochs (an image keeps its whole
    row of epochs, so the epochs' correlation is kept); per resample the noise of epoch t is
    acc*_t - acc_t, scaled by sqrt(n/(n - 1)) (the bootstrap's variance is (n - 1)/n of the
    unbiased one). Under "these epochs share one true accuracy" the optimism of picking the
    best is max_t of that noise.
    Returns dict: expected_optimism (mean over resamples), low, high (percentiles at
      `level` of one run's noise optimism), epochs, n, method. Fractions of accuracy.
    Nearly identical epochs (after the learning rate collapses) give almost 0; independent
    epochs give about expected_max_noise's figure.
    """
    c = as_bool_matrix(correct, "correct", min_rows=1, min_cols=2)
    n_boot = check_positive_int(n_boot, "n_boot")
    level = check_level(level)
    epochs, n = c.shape
    acc = c.mean(axis=1)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    noise = (c[:, idx].mean(axis=2) - acc[:, None]) * np.sqrt(n / (n - 1))
    optimism = noise.max(axis=0)
    low, high = np.percentile(optimism, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return {"expected_optimism": float(optimism.mean()), "low": float(low), "high": float(high),
            "epochs": int(epochs), "n": int(n), "method": "image bootstrap, epochs resampled jointly"}
