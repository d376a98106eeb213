"""How runs share validation images (the design), and the crossed table that an interval
generalising to new images needs; read by summary.py (mean intervals) and the report's curve
band."""

from __future__ import annotations

import numpy as np
import pandas as pd

from valstat.core.cube import Cube


#: Designs in which no two runs scored the same validation images.
OWN_SPLIT_DESIGNS = ("own split per run", "seeds x own folds")


def validation_design(runs: pd.DataFrame) -> str:
    """How the runs' validation images (column split, the same label for the same images)
    relate: "own split per run" (no two runs share images), "seeds x own folds" (no two share
    images, and seeds ran several folds each: each seed its own K-fold split), "one shared
    split" (all on the same images) or "seeds x shared splits" (folds shared by the seeds)."""
    splits = runs["split"]
    if not splits.duplicated().any():
        per_seed = runs.groupby("seed").size()
        return "seeds x own folds" if len(per_seed) > 1 and per_seed.gt(1).any() else "own split per run"
    return "one shared split" if splits.nunique() == 1 else "seeds x shared splits"


def shares_images(design: str) -> bool:
    """Whether runs of this design scored some of the same validation images."""
    return design not in OWN_SPLIT_DESIGNS


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


def images_scored(runs: pd.DataFrame) -> float | None:
    """Validation images the runs scored in all (sum of n_val), for the effective-size bounds
    of their mean accuracy; None when a run does not record its validation size."""
    n_val = pd.to_numeric(runs["n_val"], errors="coerce").to_numpy(dtype=float)
    return float(n_val.sum()) if n_val.size and np.all(n_val > 0) else None
