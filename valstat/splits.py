"""Which images train, which validate, which are kept aside as the truth set — per run.

All indices are global indices into the Dataset. The truth set never overlaps the images a run
trains or validates on, and it is the same for every run of an experiment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

from valstat.config import SEED_KINDS, Arm, Experiment
from valstat.data import BUILTIN
from valstat.errors import ValstatError


@dataclass(frozen=True)
class Split:
    """train, val, truth: 1-D int64 arrays of global image indices."""

    train: np.ndarray
    val: np.ndarray
    truth: np.ndarray


def _stratified_take(labels: np.ndarray, candidates: np.ndarray, size: int, seed: int):
    """Split `candidates` into (taken, rest) with `size` taken, stratified by label."""
    if size >= len(candidates):
        return candidates, candidates[:0]
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=size, random_state=seed)
    rest, taken = next(splitter.split(np.zeros(len(candidates)), labels[candidates]))
    return np.sort(candidates[taken]), np.sort(candidates[rest])


def truth_and_pool(labels: np.ndarray, arm: Arm, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The truth set and the pool a run's training and validation images come from."""
    data = arm.data
    everything = np.arange(len(labels))
    if data.source == BUILTIN:
        needed = data.truth_size + data.train_size + data.val_size
        if needed > len(labels):
            raise ValstatError(f"built-in digits hold {len(labels)} images; train_size "
                            f"{data.train_size} + val_size {data.val_size} + truth_size "
                            f"{data.truth_size} = {needed} is too many")
        truth, rest = _stratified_take(labels, everything, data.truth_size, data.data_seed)
        pool, _ = _stratified_take(labels, rest, data.train_size + data.val_size, data.data_seed)
        return truth, pool
    if data.holdout > 0:
        size = int(round(data.holdout * len(labels)))
        if size < n_classes:
            raise ValstatError(f"--holdout {data.holdout} keeps {size} images, fewer than the "
                            f"{n_classes} classes; use a larger fraction")
        return _stratified_take(labels, everything, size, data.data_seed)
    return everything[:0], everything


def check_split_sizes(labels: np.ndarray, pool: np.ndarray, val_size: int, folds: int,
                      n_classes: int) -> None:
    counts = np.bincount(labels[pool], minlength=n_classes)
    if val_size < n_classes:
        raise ValstatError(f"validation size {val_size} is smaller than the number of classes "
                        f"({n_classes}); a stratified validation set needs at least one per class "
                        f"(set it with --val-size)")
    if val_size > len(pool) - n_classes:
        raise ValstatError(f"validation size {val_size} is too large: only {len(pool)} images are "
                        f"available for training and validation; choose at most "
                        f"{len(pool) - n_classes} with --val-size")
    if folds > 1:
        if folds > counts.min():
            raise ValstatError(f"{folds} folds are more than the smallest class allows "
                            f"({counts.min()} images); use --folds {max(1, counts.min())} or fewer")
        if folds * val_size > len(pool):
            raise ValstatError(f"{folds} folds x validation size {val_size} needs {folds * val_size} "
                            f"distinct validation images; only {len(pool)} are available "
                            f"(lower --folds or --val-size)")


def make_split(labels: np.ndarray, pool: np.ndarray, truth: np.ndarray, val_size: int,
               folds: int, fold: int, split_seed: int) -> Split:
    """One run's split. folds == 1: a stratified random validation set of `val_size`.
    folds > 1: stratified K-fold over the pool; fold `fold`'s held-out part gives the
    validation set (subsampled to `val_size`), so validation sets of one seed are disjoint."""
    if folds == 1:
        val, train = _stratified_take(labels, pool, val_size, split_seed)
    else:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=split_seed)
        _, held = list(splitter.split(np.zeros(len(pool)), labels[pool]))[fold]
        val, _ = _stratified_take(labels, pool[held], val_size, split_seed)
        train = np.setdiff1d(pool, val)
    return Split(train=np.sort(train), val=np.sort(val), truth=truth)


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs to train one run (picklable, small)."""

    run_id: str
    experiment: str
    arm: Arm
    seed: int
    fold: int
    split_seed: int
    init_seed: int
    order_seed: int
    augment_seed: int
    split: Split
    source: str
    cache_dir: str | None


def seeds_for(seed: int, vary: list[str]) -> dict[str, int]:
    """split/init/order/augment seeds of user-facing seed `seed`; kinds not in `vary` stay 0."""
    return {f"{kind}_seed": (seed if kind in vary else 0) for kind in SEED_KINDS}


def run_id_for(arm: str, seed: int, fold: int) -> str:
    return f"{arm}/s{seed}/f{fold}"


def plan_runs(experiment: Experiment, labels: np.ndarray, n_classes: int,
              cache_dir: str | None) -> list[RunSpec]:
    """All runs of the experiment: arms x seeds x folds, arms sharing seeds and splits."""
    specs = []
    folds = experiment.sweep.folds
    for arm in experiment.arms:
        truth, pool = truth_and_pool(labels, arm, n_classes)
        check_split_sizes(labels, pool, arm.data.val_size, folds, n_classes)
        for seed in range(experiment.sweep.seeds):
            seeds = seeds_for(seed, experiment.sweep.vary)
            for fold in range(folds):
                split = make_split(labels, pool, truth, arm.data.val_size, folds, fold,
                                   seeds["split_seed"])
                specs.append(RunSpec(run_id=run_id_for(arm.name, seed, fold),
                                     experiment=experiment.name, arm=arm, seed=seed, fold=fold,
                                     split=split, source=arm.data.source, cache_dir=cache_dir,
                                     **seeds))
    return specs
