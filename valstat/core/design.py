"""How runs share validation images (the design), and the crossed table that an interval
generalising to new images needs; read by summary.py (mean intervals) and the report's curve
band."""

from __future__ import annotations

import numpy as np
import pandas as pd

from valstat.core.cube import Cube


def validation_design(runs: pd.DataFrame) -> str:
    """How the runs' validation images relate: each run its own, one split for all, or splits x seeds."""
    splits = runs["split"]
    if not splits.duplicated().any():
        return "own split per run"
    return "one shared split" if splits.nunique() == 1 else "seeds x shared splits"


def crossed_table(runs: pd.DataFrame, metric: str, epoch_col: str, cube: Cube, design: str):
    """The crossed table for crossed_mean_interval and its new_run_columns, or None.

    runs: rows of the run table (code, split, seed, `metric`, `epoch_col`) with a value of
    `metric`. One shared split: (runs, images) per-image correctness at each run's `epoch_col`
    epoch (all runs on the same images); seeds x shared splits: (splits, seeds) of `metric`, one
    run per cell, every cell present.
    """
    if design == "one shared split":
        wanted = dict(zip(runs["code"].astype(int), runs[epoch_col].astype(int)))
        got = cube.correct_at(wanted)
        if len(got) < len(wanted):
            return None
        examples = [got[c][0] for c in wanted]
        if any(not np.array_equal(e, examples[0]) for e in examples):
            return None
        return np.vstack([got[c][1] for c in wanted]).astype(float), examples[0].size
    cells = runs.groupby(["split", "seed"]).size()
    if not cells.eq(1).all():
        return None
    table = runs.pivot(index="split", columns="seed", values=metric).to_numpy(dtype=float)
    return (table, 1) if np.all(np.isfinite(table)) else None
