"""Training dynamics of one run: learning-rate cuts, one-class collapse, best epochs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from valstat.errors import ValstatError
from valstat.stats._checks import as_1d, check_choice, check_positive_int, need_columns

# Relative margin for rate comparisons: a logged rate counts as lower only beyond it
# (Keras logs float32, so 1e-5 is logged just below 0.01 * float32(1e-3)).
_CUT_RTOL = 1e-6


def lr_cuts(learning_rate) -> np.ndarray:
    """Epochs (from 0) whose recorded learning rate is lower than the previous epoch's."""
    lr = as_1d(learning_rate, "learning_rate", allow_nan=True)
    return np.flatnonzero(lr[1:] < lr[:-1] * (1 - _CUT_RTOL)) + 1


def lr_collapse(learning_rate, threshold: float = 0.01) -> dict:
    """When the learning rate has fallen below `threshold` times its initial value.

    learning_rate: shape (epochs,), the rate recorded at each epoch (epochs numbered from 0).
    Returns dict: epoch (first epoch with lr < threshold·lr[0], or None; a relative 1e-6
      margin keeps float32 logs of lr0·threshold itself from counting), epochs_after
      (epochs run from that epoch to the end, counting it: epochs - epoch; 0 if None),
      final_lr, cuts (list of epochs whose rate is lower than the previous epoch's).
    """
    lr = as_1d(learning_rate, "learning_rate")
    if lr[0] <= 0:
        raise ValstatError(f"the initial learning rate must be > 0, got {lr[0]!r}")
    if not 0 < threshold < 1:
        raise ValstatError(f"threshold must be in (0, 1), got {threshold!r}")
    below = np.flatnonzero(lr < threshold * lr[0] * (1 - _CUT_RTOL))
    epoch = int(below[0]) if below.size else None
    return {
        "epoch": epoch,
        "epochs_after": 0 if epoch is None else int(lr.size - epoch),
        "final_lr": float(lr[-1]),
        "cuts": [int(e) for e in lr_cuts(lr)],
    }


def majority_by_group(groups, predicted, n_groups: int, max_cells: int = 20_000_000) -> tuple[np.ndarray, np.ndarray]:
    """Most common predicted class and its share per group, vectorised.

    groups: shape (rows,), int group codes in [0, n_groups); predicted: shape (rows,), class
    per row. Returns (majority_class, majority_share), each shape (n_groups,); the smallest
    class wins ties; empty groups get share NaN. Counting uses a dense groups x classes
    table up to `max_cells` cells, a sparse pandas count beyond.
    """
    classes, codes = np.unique(np.asarray(predicted), return_inverse=True)
    k = classes.size
    if n_groups * k <= max_cells:
        counts = np.bincount(np.asarray(groups) * k + codes.reshape(-1), minlength=n_groups * k).reshape(n_groups, k)
        top, total = counts.argmax(axis=1), counts.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return classes[top], counts.max(axis=1) / total
    frame = pd.DataFrame({"g": groups, "c": codes.reshape(-1)}).value_counts().rename("n").reset_index()
    frame = frame.sort_values(["g", "n", "c"], ascending=[True, False, True]).drop_duplicates("g")
    share = np.full(n_groups, np.nan)
    top = np.zeros(n_groups, dtype=np.int64)
    sizes = np.bincount(np.asarray(groups), minlength=n_groups)
    share[frame["g"]] = frame["n"].to_numpy() / sizes[frame["g"]]
    top[frame["g"]] = frame["c"].to_numpy()
    return classes[top], share


def one_class_collapse(predictions_df: pd.DataFrame) -> pd.DataFrame:
    """Per epoch: did the network predict the same class for every validation image?

    predictions_df: columns epoch, predicted (and run_id: then one row per run and epoch).
    Returns DataFrame: [run_id,] epoch, collapsed (bool), majority_class, majority_share
      (fraction of validation images given the most common predicted class).
    """
    need_columns(predictions_df, ["epoch", "predicted"], "predictions_df")
    if len(predictions_df) == 0:
        raise ValstatError("predictions_df is empty")
    keys = ["run_id", "epoch"] if "run_id" in predictions_df.columns else ["epoch"]
    grouped = predictions_df.groupby(keys, sort=True)
    out = grouped.size().reset_index()[keys]
    top, share = majority_by_group(grouped.ngroup().to_numpy(), predictions_df["predicted"].to_numpy(), len(out))
    out["collapsed"] = share == 1.0
    out["majority_class"] = top
    out["majority_share"] = share
    return out


def best_epochs(epochs_df: pd.DataFrame) -> dict:
    """Epochs of the lowest val_loss and the highest val_accuracy (first occurrence of each).

    epochs_df: one run, columns epoch, val_loss, val_accuracy (NaN values are skipped).
    Returns dict: best_val_loss_epoch, best_val_accuracy_epoch, best_val_accuracy,
      best_val_loss (None where the column has no finite value).
    """
    need_columns(epochs_df, ["epoch", "val_loss", "val_accuracy"], "epochs_df")
    if len(epochs_df) == 0:
        raise ValstatError("epochs_df is empty")
    out = {}
    for column, pick in (("val_loss", np.nanargmin), ("val_accuracy", np.nanargmax)):
        values = epochs_df[column].to_numpy(dtype=float)
        if np.isfinite(values).any():
            i = int(pick(np.where(np.isfinite(values), values, np.nan)))
            out[f"best_{column}_epoch"] = int(epochs_df["epoch"].iloc[i])
            out[f"best_{column}"] = float(values[i])
        else:
            out[f"best_{column}_epoch"] = out[f"best_{column}"] = None
    return out


def _label_epochs(values, min_delta, mode):
    """Keras 3 ReduceLROnPlateau view of each epoch: 'improved', 'tie' or 'worse'.

    Improvement is strict: v > best + min_delta (max mode) or v < best - min_delta (min
    mode); best starts at -inf / +inf. A non-improvement within min_delta of the best is a
    tie, anything further (or NaN) is worse.
    """
    sign = 1.0 if mode == "max" else -1.0
    best = -np.inf
    labels = []
    for v in sign * np.asarray(values, dtype=float):
        if v > best + min_delta:
            best = v
            labels.append("improved")
        elif v >= best - min_delta:
            labels.append("tie")
        else:
            labels.append("worse")
    return labels


KINDS = ("after_ties_only", "after_worse", "other")


def plateau_cut_counts(values, learning_rate, patience: int = 2, min_delta: float = 1e-4, mode: str = "max",
                       lag: int = 1) -> dict:
    """Arrays behind plateau_cut_table, one entry per cut (see there): cut_epoch (position),
    decision_epoch, ties, worse, improved, kind (index into KINDS)."""
    check_choice(mode, ("max", "min"), "mode")
    patience = check_positive_int(patience, "patience")
    labels = np.array(_label_epochs(values, float(min_delta), mode))
    cuts = lr_cuts(learning_rate)
    decision = cuts - int(lag)
    lo = np.clip(decision - patience + 1, 0, None)
    hi = np.clip(decision + 1, 0, None)
    counts = {}
    for name in ("tie", "worse", "improved"):
        cum = np.r_[0, np.cumsum(labels == name)]
        counts[name] = cum[np.minimum(hi, labels.size)] - cum[np.minimum(lo, labels.size)]
    short = (hi - lo) < patience
    kind = np.where(short | (counts["improved"] > 0), 2, np.where(counts["worse"] > 0, 1, 0))
    return {"cut_epoch": cuts, "decision_epoch": decision, "ties": counts["tie"], "worse": counts["worse"],
            "improved": counts["improved"], "kind": kind}


def plateau_cut_table(values, learning_rate, patience: int = 2, min_delta: float = 1e-4, mode: str = "max", lag: int = 1) -> pd.DataFrame:
    """Per learning-rate cut: the `patience` monitored epochs that led to it, as ties/worse.

    values, learning_rate: shape (epochs,). A cut first seen at epoch c was decided at the end
    of epoch c - lag (lag 1: the logged rate is the one used during the epoch, as Keras 3's
    ReduceLROnPlateau logs it before reducing). Returns DataFrame: cut_epoch, decision_epoch,
    ties, worse, improved (counts over the window), kind ('after_ties_only' | 'after_worse' |
    'other': the window holds an improvement or is short, so Keras would not have cut there).
    """
    counts = plateau_cut_counts(values, learning_rate, patience, min_delta, mode, lag)
    table = pd.DataFrame({k: v for k, v in counts.items() if k != "kind"})
    table["kind"] = np.array(KINDS, dtype=object)[counts["kind"]] if len(table) else pd.Series(dtype=object)
    return table


def plateau_cuts_after_ties(epochs_df: pd.DataFrame, monitor: str = "val_accuracy", patience: int = 2,
                            min_delta: float = 1e-4, mode: str = "max", lag: int = 1) -> dict:
    """How many ReduceLROnPlateau cuts followed only ties (no worse epoch) of the monitor.

    epochs_df: one run, columns epoch, learning_rate and `monitor`; Keras 3 semantics (see
    plateau_cut_table for lag and the labels). On a 1/n accuracy lattice ties are common, and
    a tie is not an improvement, so `patience` ties in a row cut the rate.
    Returns dict: cuts, after_ties_only, after_worse, other, table (DataFrame per cut).
    """
    need_columns(epochs_df, ["epoch", "learning_rate", monitor], "epochs_df")
    frame = epochs_df.sort_values("epoch")
    table = plateau_cut_table(frame[monitor].to_numpy(dtype=float), frame["learning_rate"].to_numpy(dtype=float),
                              patience, min_delta, mode, lag)
    table["cut_epoch"] = frame["epoch"].to_numpy()[table["cut_epoch"].to_numpy(dtype=int)]
    counts = table["kind"].value_counts()
    return {
        "cuts": int(len(table)),
        "after_ties_only": int(counts.get("after_ties_only", 0)),
        "after_worse": int(counts.get("after_worse", 0)),
        "other": int(counts.get("other", 0)),
        "table": table,
    }
