"""How runs share validation images (the design), and the interval of their mean accuracy that
follows from it (mean_accuracy_interval); read by summary.py (final and best accuracy) and the
report's curve band (every epoch)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from valstat.core.cube import Cube
from valstat.stats import collapse_mean_interval, crossed_mean_interval, mean_interval, shared_image_covariance


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


def seed_units(runs: pd.DataFrame):
    """Each run's seed where seeds ran several runs each (folds of a seed are one unit of the
    mean), else None: shape (runs,)."""
    seeds = runs["seed"].to_numpy()
    return seeds if 1 < len(np.unique(seeds)) < seeds.size else None


def _pool_covariance(runs: pd.DataFrame, epoch_col: str, cube: Cube, units) -> float:
    """shared_image_covariance of runs on their own splits, from their per-image predictions at
    their `epoch_col` epoch (own splits drawn from one pool of images overlap); 0 without them."""
    wanted = dict(zip(runs["code"].astype(int), runs[epoch_col].astype(int)))
    got = cube.correct_at(wanted) if cube is not None else {}
    if len(got) < len(wanted):
        return 0.0
    return shared_image_covariance([got[c][0] for c in wanted], [got[c][1] for c in wanted], units)


def mean_accuracy_interval(runs: pd.DataFrame, metric: str, epoch_col: str, cube: Cube, level: float,
                           one_class=None, shares=None) -> dict:
    """Interval of the runs' mean `metric` (an accuracy) and for one new run, by their design.

    runs: rows (code, split, seed, n_val, `metric`, `epoch_col`) with a finite `metric`.
    Own splits: the t interval, with seeds as units where seeds ran several folds each, and
    with the covariance runs share through images two of their splits both hold (own splits
    drawn from one pool of images overlap: _pool_covariance). Runs
    sharing images: the same t interval kept as "conditional" (these images only) and the
    crossed interval (new images) in its place; where the design is incomplete only the
    conditional one exists and "scope" says so. With `one_class` (per run: predicted one class
    at its `epoch_col` epoch, shape (runs,)) and `shares` ((lowest, highest) share of one
    class), collapse_mean_interval instead of t or crossed: on own splits or one shared split
    (there the learned runs' crossed table bounds their mean on new images). Every CI of the
    mean is the effective-size bound where the runs record their validation sizes
    (images_scored).
    Returns the stats interval dict plus design, scope and, as they apply, units, conditional
    (dict), note, components (dict).
    """
    values = runs[metric].to_numpy(dtype=float)
    units = seed_units(runs)
    design = validation_design(runs)
    scored = images_scored(runs)
    shared = shares_images(design) and len(runs) >= 2
    crossed = crossed_table(runs, metric, epoch_col, cube, design) if shared else None
    if one_class is not None and shared and (design != "one shared split" or crossed is None):
        one_class = None
    pooled = not shared and one_class is None
    res = mean_interval(values, level=level, method="t", units=units, scored=scored,
                        shared_variance=_pool_covariance(runs, epoch_col, cube, units) if pooled else 0.0)
    conditional = {**{k: res[k] for k in ("low", "high", "pi_low", "pi_high", "method")},
                   "scope": "these validation images"}
    if one_class is not None:
        learned_table = crossed[0][~np.asarray(one_class)] if shared else None
        res = collapse_mean_interval(values, one_class, shares, level=level, units=units, scored=scored,
                                     learned_table=learned_table)
    if units is not None:
        res["units"] = "seed"
    res.update(design=design, scope="new validation images")
    if not shared:
        return res
    res["conditional"] = conditional
    if crossed is None:
        res.update(scope="these validation images",
                   note="runs share validation images and the design is incomplete: the interval "
                        "holds for these images only")
    elif one_class is None:
        cm = crossed_mean_interval(crossed[0], level=level, new_run_columns=crossed[1], scored=scored)
        res.update({k: cm[k] for k in ("low", "high", "pi_low", "pi_high", "df", "components")},
                   method="crossed-anova")
    return res
