"""One curve among its reruns: where a single history falls in the distribution of many runs.

Percentiles follow scipy.stats.percentileofscore(kind="mean"): the share of reruns below the
value plus half the share equal to it, in percent (ties matter on a 1/n accuracy lattice). The
reruns' band at `level` is the central empirical interval of the reruns (quantiles
(1 - level)/2 and (1 + level)/2, numpy's linear interpolation); for whole numbers (images,
epochs, accuracies on the 1/n lattice) it is widened outward to observed values (numpy's
method "lower" for the low end, "higher" for the high end), so it never reads "1.4 images".
With R reruns it cannot resolve tails rarer than about 1/R, so the number of reruns is always
returned beside it, and so is how often a run like the reruns leaves it (outside_rate, by
leaving each rerun out of the band of the others): about 14 % of epochs at R = 20 for a
nominal 95 % band, and every epoch at R = 2.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from valstat.stats._checks import as_1d, check_level, need_columns
from valstat.stats.lattice import to_counts

METRICS = ("val_accuracy", "val_loss")


def percentile_of(value: float, reference) -> float:
    """Percentile rank (0..100) of `value` among `reference` (shape (R,), R >= 1; ties half)."""
    ref = as_1d(reference, "reference")
    return float(100.0 * (np.mean(ref < value) + 0.5 * np.mean(ref == value)))


def verdict_reruns(level: float = 0.95) -> int:
    """The fewest reruns R that can call a run unusual at `level`: a run exchangeable with them
    falls outside the range of R reruns with chance 2/(R+1), so R + 1 >= 2/(1 - level) (39 at
    0.95)."""
    return int(np.ceil(2 / (1 - check_level(level)) - 1e-9)) - 1


def place_value(value: float, reference, level: float = 0.95, whole: bool = False) -> dict:
    """Where one number falls among the reruns' numbers.

    reference: shape (R,), one value per rerun. whole: the values are whole counts (or on a
    lattice): the band's ends are observed values, rounded outward. Returns dict: value,
    reruns (R), percentile, median, low, high (central `level` band of the reruns), typical:
    whether the value lies between the k-th lowest and k-th highest rerun, k = floor((R + 1)
    (1 - level)/2), which a run exchangeable with the reruns leaves with chance at most
    1 - level (order statistics; ties only lower it). With fewer than verdict_reruns(level)
    reruns k is 0: inside their range is typical, outside it None (no verdict; not unusual).
    """
    level = check_level(level)
    ref = as_1d(reference, "reference")
    low, high = _band(ref, level, whole)
    k = max(int(np.floor((ref.size + 1) * (1 - level) / 2 + 1e-9)), 1)
    ordered = np.sort(ref)
    typical = bool(ordered[k - 1] <= value <= ordered[ref.size - k])
    if not typical and ref.size < verdict_reruns(level):
        typical = None
    return {"value": float(value), "reruns": int(ref.size),
            "percentile": percentile_of(value, ref), "median": float(np.median(ref)),
            "low": float(low), "high": float(high), "typical": typical}


def _band(ref: np.ndarray, level: float, whole: bool) -> tuple[float, float]:
    if whole:
        return (np.quantile(ref, (1 - level) / 2, method="lower"),
                np.quantile(ref, (1 + level) / 2, method="higher"))
    low, high = np.quantile(ref, [(1 - level) / 2, (1 + level) / 2])
    return low, high


def outside_rate(reference, level: float = 0.95, whole: bool = False) -> float:
    """How often a run exchangeable with the reruns falls outside their central `level` band:
    the share of reruns outside the band of the other R - 1 (leave one out; NaN for R < 2).
    reference: shape (R,), one value per rerun."""
    ref = as_1d(reference, "reference")
    if ref.size < 2:
        return float("nan")
    outside = 0
    for i in range(ref.size):
        low, high = _band(np.delete(ref, i), level, whole)
        outside += not low <= ref[i] <= high
    return outside / ref.size


def place_curve(curve: pd.DataFrame, reruns: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Per epoch, where one curve's val accuracy and val loss fall among the reruns'.

    curve: one run, columns epoch, val_accuracy, optionally val_loss (one row per epoch).
    reruns: columns run_id, epoch, val_accuracy, optionally val_loss (one row per run and epoch).
    Returns one row per (epoch of `curve`, metric present in both and finite in the curve):
      epoch, metric, value, reruns (reruns with a finite value at that epoch), percentile,
      median, low, high (central `level` band; observed values for val_accuracy), outside (-1 below the band, +1 above, 0 inside;
      <NA> where no rerun reached that epoch), outside_rate (outside_rate of the reruns there).
    """
    level = check_level(level)
    need_columns(curve, ["epoch", "val_accuracy"], "curve")
    need_columns(reruns, ["run_id", "epoch", "val_accuracy"], "reruns")
    rows = []
    by_epoch = dict(tuple(reruns.groupby("epoch")))
    for metric in METRICS:
        if metric not in curve.columns or metric not in reruns.columns:
            continue
        for epoch, value in zip(curve["epoch"].to_numpy(), curve[metric].to_numpy(dtype=float)):
            if not np.isfinite(value):
                continue
            group = by_epoch.get(epoch)
            ref = np.array([]) if group is None else group[metric].to_numpy(dtype=float)
            ref = ref[np.isfinite(ref)]
            if ref.size == 0:
                rows.append((int(epoch), metric, float(value), 0, np.nan, np.nan, np.nan,
                             np.nan, pd.NA, np.nan))
                continue
            whole = metric == "val_accuracy"
            placed = place_value(value, ref, level, whole=whole)
            side = -1 if value < placed["low"] else (1 if value > placed["high"] else 0)
            rows.append((int(epoch), metric, float(value), placed["reruns"],
                         placed["percentile"], placed["median"], placed["low"],
                         placed["high"], side, outside_rate(ref, level, whole)))
    out = pd.DataFrame(rows, columns=["epoch", "metric", "value", "reruns", "percentile",
                                      "median", "low", "high", "outside", "outside_rate"])
    out["outside"] = out["outside"].astype("Int64")
    return out


def largest_fall(val_accuracy, n: int) -> int:
    """Images lost in the largest epoch-to-epoch fall of one curve (0 if it never falls).

    val_accuracy: shape (epochs,), fractions on the 1/n lattice.
    """
    k = to_counts(val_accuracy, n)
    return int(max(0, -np.diff(k).min(initial=0)))

