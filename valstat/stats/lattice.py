"""The 1/n lattice of validation accuracy: which epoch-to-epoch moves are only noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from valstat.errors import ValstatError
from valstat.stats._checks import as_1d, as_bool_matrix, check_level, check_positive_int, need_columns
from valstat.stats.intervals import binomial_interval
from valstat.stats.paired import (independent_difference_interval, mcnemar_exact_p, mcnemar_midp_p,
                                  paired_difference_interval)

# |accuracy·n - k| allowed for a logged accuracy to count as k/n (Keras logs float32).
LATTICE_TOLERANCE = 1e-4


def lattice_step(n) -> float:
    """Spacing of the accuracy lattice on n validation images: 1/n (a fraction)."""
    return 1.0 / check_positive_int(n, "n")


def to_counts(val_accuracy, n: int) -> np.ndarray:
    """Images correct k = accuracy·n, rounded; ValstatError when a value is off the 1/n lattice.

    val_accuracy: shape (epochs,), fractions in [0, 1]. Returns int array, shape (epochs,).
    """
    acc = as_1d(val_accuracy, "val_accuracy")
    if np.any(acc < 0) or np.any(acc > 1):
        raise ValstatError("val_accuracy must be fractions in [0, 1]")
    scaled = acc * n
    k = np.rint(scaled)
    off = np.abs(scaled - k) > LATTICE_TOLERANCE
    if np.any(off):
        first = int(np.flatnonzero(off)[0])
        raise ValstatError(
            f"val_accuracy {acc[first]!r} (epoch {first}) is not a multiple of 1/{n}: "
            f"is the validation size really {n}? (valstat can infer it with infer_val_size)"
        )
    return k.astype(np.int64)


def fisher_p(k1, k2, n):
    """Two-sided Fisher exact p-values for k1/n vs k2/n as independent binomials, vectorised.

    k1, k2, n: integer arrays of one shape. scipy.stats.fisher_exact is called once per
    distinct (k1, k2, n) triple, so long curves on a small lattice stay cheap.
    """
    triples = np.stack(np.broadcast_arrays(np.asarray(k1), np.asarray(k2), np.asarray(n)), axis=-1).reshape(-1, 3)
    if triples.size == 0:
        return np.zeros(np.shape(k1))
    unique, inverse = np.unique(triples.astype(np.int64), axis=0, return_inverse=True)
    p_unique = np.array(
        [sps.fisher_exact([[a, m - a], [b, m - b]]).pvalue for a, b, m in unique], dtype=float
    )
    return p_unique[inverse.reshape(-1)].reshape(np.shape(triples[:, 0]))


def curve_changes(val_accuracy, n: int, correct=None, level: float = 0.95) -> pd.DataFrame:
    """Each epoch-to-epoch move of one validation-accuracy curve, tested against noise.

    val_accuracy: shape (epochs,), fractions on the 1/n lattice; n: validation images.
    correct: optional, shape (epochs, n) booleans, per-image correctness each epoch. With it,
      each change is tested by the mid-p McNemar test on the two epochs' per-image correctness
      (p_exact: the exact McNemar p, which largest_drop uses). Without it, Fisher's exact test
      compares k_{t-1}/n with k_t/n as independent binomials (p_exact = p_value); that is
      conservative, because the same images are scored twice.
    Returns DataFrame, one row per epoch (numbered from 0): epoch, val_accuracy, k, n,
      low, high (Wilson band at `level`), change_images (k_t - k_{t-1}; NaN at epoch 0),
      lost, gained (images that went right->wrong / wrong->right; NaN without `correct`),
      p_value, p_exact, within_noise (p_value >= 1 - level; <NA> at epoch 0).
    """
    level = check_level(level)
    n = check_positive_int(n, "n")
    k = to_counts(val_accuracy, n)
    epochs = k.size
    low, high = binomial_interval(k, n, level, "wilson")
    change = np.full(epochs, np.nan)
    change[1:] = np.diff(k)
    lost = np.full(epochs, np.nan)
    gained = np.full(epochs, np.nan)
    p = np.full(epochs, np.nan)
    p_exact = np.full(epochs, np.nan)
    if correct is not None:
        c = as_bool_matrix(correct, "correct")
        if c.shape != (epochs, n):
            raise ValstatError(f"correct must have shape (epochs, n) = ({epochs}, {n}), got {c.shape}")
        if np.any(c.sum(axis=1) != k):
            raise ValstatError("correct disagrees with val_accuracy: per-epoch sums of correct images differ from k")
        lost[1:] = np.sum(c[:-1] & ~c[1:], axis=1)
        gained[1:] = np.sum(~c[:-1] & c[1:], axis=1)
        p[1:] = mcnemar_midp_p(lost[1:], gained[1:])
        p_exact[1:] = mcnemar_exact_p(lost[1:], gained[1:])
    elif epochs > 1:
        p[1:] = p_exact[1:] = fisher_p(k[:-1], k[1:], n)
    within = pd.array(np.r_[np.nan, p[1:] >= 1 - level] if epochs else [], dtype="boolean")
    if epochs:
        within[0] = pd.NA
    return pd.DataFrame({
        "epoch": np.arange(epochs), "val_accuracy": k / n, "k": k, "n": n,
        "low": low, "high": high, "change_images": change, "lost": lost, "gained": gained,
        "p_value": p, "p_exact": p_exact, "within_noise": within,
    })


def smallest_flagged_loss(n: int, alpha: float, k_before=None, discordant=None):
    """Smallest net loss of images the test would flag at `alpha`, or None if none would be.

    With `discordant` (images changing answer between the two epochs, McNemar path): the
    smallest j (lost - gained, with lost + gained = discordant) whose exact McNemar p < alpha.
    Otherwise (Fisher path) the smallest j with Fisher's p for k_before/n vs
    (k_before - j)/n below alpha. n: validation images.
    """
    if discordant is not None:
        d = int(discordant)
        j = np.arange(d % 2, d + 1, 2)
        flagged = mcnemar_exact_p((d - j) // 2, (d + j) // 2) < alpha
    else:
        k = int(k_before)
        j = np.arange(1, k + 1)
        flagged = fisher_p(np.full(j.size, k), k - j, np.full(j.size, n)) < alpha
    return int(j[np.argmax(flagged)]) if flagged.any() else None


def largest_drop(changes_df: pd.DataFrame, level: float = 0.95) -> dict | None:
    """The largest epoch-to-epoch fall of a curve (first one on ties), or None if it never falls.

    changes_df: output of curve_changes. The fall is the largest of all `scanned` moves
    (epochs - 1), not one chosen in advance, so its verdict and interval are Bonferroni-
    adjusted for the scan, on the exact test (p_exact: exact McNemar, or Fisher):
    p_adjusted = min(1, p·scanned), within_noise = p_adjusted >= 1 -
    level, and the interval is at level 1 - (1 - level)/scanned (it covers every move's true
    change at once with probability >= level).
    Returns dict: from_epoch, to_epoch, images (negative count), within_noise, p_value (one
      move, exact), p_adjusted, scanned, within_noise_unadjusted (p_value >= 1 - level), smallest_flagged (the smallest net
      loss in images this test would have flagged after the adjustment, None if none could:
      for McNemar given the images that changed answer, discordant), discordant (None on the
      Fisher path), test ("mcnemar" | "fisher"), low, high (interval for the change in
      accuracy, a fraction): with per-image data (lost/gained present) Newcombe's paired score
      interval (1998b, method 10, the paired analogue of the score interval McNemar's test
      inverts); otherwise Newcombe's hybrid score interval for two independent proportions
      (statsmodels, method "newcomb").
    """
    level = check_level(level)
    need_columns(changes_df, ["epoch", "k", "n", "change_images", "lost", "gained", "p_exact"], "changes_df")
    change = changes_df["change_images"].to_numpy(dtype=float)
    if change.size == 0 or not np.nanmin(change, initial=0.0) < 0:
        return None
    scanned = int(np.isfinite(change).sum())
    alpha = (1 - level) / scanned
    row = changes_df.iloc[int(np.nanargmin(change))]
    prev = changes_df.iloc[int(np.nanargmin(change)) - 1]
    n, k_now, k_prev = int(row["n"]), int(row["k"]), int(prev["k"])
    discordant = None
    if np.isfinite(row["lost"]):
        lost, gained = int(row["lost"]), int(row["gained"])
        discordant = lost + gained
        both = k_prev - lost
        low, high = paired_difference_interval(both, gained, lost, n - both - lost - gained, 1 - alpha)
    else:
        low, high = independent_difference_interval(k_now, n, k_prev, n, 1 - alpha)
    p = float(row["p_exact"])
    p_adjusted = min(1.0, p * scanned)
    return {
        "from_epoch": int(prev["epoch"]), "to_epoch": int(row["epoch"]), "images": int(row["change_images"]),
        "within_noise": bool(p_adjusted >= 1 - level), "p_value": p, "p_adjusted": p_adjusted,
        "scanned": scanned, "within_noise_unadjusted": bool(p >= 1 - level),
        "smallest_flagged": smallest_flagged_loss(n, alpha, k_prev, discordant), "discordant": discordant,
        "test": "fisher" if discordant is None else "mcnemar", "low": low, "high": high,
    }


def infer_val_size(val_accuracies, max_n: int = 1000) -> int:
    """Smallest n such that every logged accuracy times n is within 1e-4 of a whole number.

    val_accuracies: any shape, fractions (NaN ignored). Accuracies that are all 0 or 1 give 1.
    Raises ValstatError if no n <= max_n fits.
    """
    max_n = check_positive_int(max_n, "max_n")
    acc = np.asarray(val_accuracies, dtype=float).reshape(-1)
    acc = np.unique(acc[np.isfinite(acc)])
    if acc.size == 0:
        raise ValstatError("no finite validation accuracies to infer the validation size from")
    if np.any(acc < 0) or np.any(acc > 1):
        raise ValstatError("validation accuracies must be fractions in [0, 1]")
    sizes = np.arange(1, max_n + 1)
    scaled = acc[:, None] * sizes[None, :]
    fits = np.all(np.abs(scaled - np.rint(scaled)) <= LATTICE_TOLERANCE, axis=0)
    if not fits.any():
        raise ValstatError(f"the accuracies fit no validation size up to {max_n} images")
    return int(sizes[np.argmax(fits)])
