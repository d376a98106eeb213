"""The learning-rate schedule a run used, read from its recorded rate when nobody wrote it down.

A Keras history or a store written by `valstat.keras.Recorder` records the rate each epoch but not
the ReduceLROnPlateau settings; `infer_plateau` finds the monitor and patience that explain
every cut. `valstat diagnose` and the summary of recorded stores both use it.
"""

from __future__ import annotations

import numpy as np

from valstat.stats.dynamics import KINDS, lr_cuts, plateau_cut_counts

#: Largest ReduceLROnPlateau patience tried when matching the logged rate cuts.
MAX_PATIENCE = 20
#: Keras's default min_delta, the one the inference assumes.
MIN_DELTA = 1e-4
_OTHER = KINDS.index("other")


def mode_of(monitor: str) -> str:
    """ReduceLROnPlateau's mode for a monitored metric: "max" for accuracies, else "min"."""
    return "max" if "acc" in monitor else "min"


def infer_patience(values, learning_rate, mode: str) -> int | None:
    """The largest patience p for which every cut followed p epochs without a new best of
    `values` (plateau_cut_counts finds no 'other' cut), or None when the rate was never cut
    or no p fits. values, learning_rate: shape (epochs,). p is at most the smallest gap
    between cuts (or the first cut's epoch) and MAX_PATIENCE."""
    cuts = lr_cuts(learning_rate)
    if cuts.size == 0:
        return None
    bound = int(np.min(np.diff(cuts))) if cuts.size > 1 else int(cuts[0])
    for p in range(min(bound, MAX_PATIENCE), 0, -1):
        kind = plateau_cut_counts(values, learning_rate, p, MIN_DELTA, mode)["kind"]
        if not np.any(kind == _OTHER):
            return p
    return None


def infer_plateau(columns: dict, learning_rate, monitors=("val_loss", "val_accuracy")) -> dict | None:
    """The first of `monitors` (present in `columns`: name -> shape (epochs,)) whose inferred
    patience explains every cut: {monitor, mode, patience}; None when no cut or none fits."""
    for monitor in monitors:
        values = columns.get(monitor)
        if values is None or not np.isfinite(np.asarray(values, dtype=float)).any():
            continue
        patience = infer_patience(values, learning_rate, mode_of(monitor))
        if patience is not None:
            return {"monitor": monitor, "mode": mode_of(monitor), "patience": patience}
    return None
