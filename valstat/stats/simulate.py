"""Synthetic store tables with known structure, for tests and benchmarks (no training).

fake_store builds runs / epochs / predictions DataFrames with the store's columns, where each
run's per-image correctness is Bernoulli with a known accuracy made of an arm effect, a split
(fold) effect and a seed effect, and the learning rate follows Keras 3 ReduceLROnPlateau.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from valstat.stats.plateau import plateau_schedule


def keras_plateau_schedule(values, lr0: float, factor: float = 0.1, patience: int = 2, min_delta: float = 1e-4,
                           mode: str = "max") -> np.ndarray:
    """Learning rate used in each epoch under Keras 3 ReduceLROnPlateau (cooldown 0, min_lr 0).

    values: shape (epochs,), the monitored metric logged at the end of each epoch.
    Returns shape (epochs,): the rate in use during each epoch (a cut decided at the end of
    epoch t shows from epoch t + 1). Delegates to valstat.stats.plateau, the one
    implementation the training engine also uses.
    """
    return plateau_schedule(values, lr0, factor=factor, patience=patience, min_delta=min_delta,
                            mode=mode)


def fake_store(arms=("base", "alt"), seeds: int = 3, folds: int = 2, epochs: int = 10, val_size: int = 30,
               n_classes: int = 3, accuracy: float = 0.7, arm_effects=None, split_sd: float = 0.05,
               seed_sd: float = 0.03, truth: bool = True, diverged=None, shared_split: bool = True,
               patience: int = 2, seed: int = 0):
    """Runs, epochs, predictions (DataFrames) and meta for a synthetic experiment.

    Every arm runs every (seed, fold). Run accuracy p = accuracy + arm effect + split effect
    (per fold, sd split_sd) + seed effect (per seed, sd seed_sd), clipped to [0.02, 0.98];
    each epoch each validation image is right with probability p, independently. Folds use
    disjoint validation images (shared by all seeds and arms if shared_split, else per seed).
    truth_accuracy is p (the run's true accuracy) or NaN. diverged: optional (arm, seed, fold,
    epochs) for a run that stops early predicting class 0 for every image.
    Returns (runs, epochs, predictions, meta, truth) where truth holds the effects used.
    """
    rng = np.random.default_rng(seed)
    arm_effects = dict(arm_effects or {})
    split_effect = rng.normal(0, split_sd, folds)
    seed_effect = rng.normal(0, seed_sd, seeds)
    run_rows, epoch_parts, pred_parts = [], [], []
    for arm in arms:
        for s in range(seeds):
            for f in range(folds):
                run_id = f"{arm}-s{s}-f{f}"
                p = float(np.clip(accuracy + arm_effects.get(arm, 0.0) + split_effect[f] + seed_effect[s], 0.02, 0.98))
                n_epochs = epochs
                status = "finished"
                if diverged is not None and tuple(diverged[:3]) == (arm, s, f):
                    n_epochs, status = int(diverged[3]), "diverged"
                block = f if shared_split else s * folds + f
                examples = block * val_size + np.arange(val_size)
                labels = examples % n_classes
                correct = rng.random((n_epochs, val_size)) < p
                wrong = (labels + 1 + rng.integers(0, max(1, n_classes - 1), (n_epochs, val_size))) % n_classes
                predicted = np.where(correct, labels, wrong)
                if status == "diverged":
                    predicted[:] = 0
                    correct = predicted == labels
                acc = correct.mean(axis=1)
                lr = keras_plateau_schedule(acc, 1e-3, patience=patience)
                epoch_parts.append(pd.DataFrame({
                    "run_id": run_id, "epoch": np.arange(n_epochs),
                    "loss": 1.0 / (1 + np.arange(n_epochs)), "accuracy": np.minimum(1.0, p + 0.01 * np.arange(n_epochs)),
                    "val_loss": 1.0 - 0.5 * acc + 0.01 * np.arange(n_epochs), "val_accuracy": acc,
                    "learning_rate": lr, "truth_accuracy": p if truth else np.nan,
                }))
                pred_parts.append(pd.DataFrame({
                    "run_id": run_id, "epoch": np.repeat(np.arange(n_epochs), val_size),
                    "example": np.tile(examples, n_epochs), "label": np.tile(labels, n_epochs),
                    "predicted": predicted.reshape(-1), "p_true": np.where(correct, 0.8, 0.1).reshape(-1),
                }))
                run_rows.append({
                    "run_id": run_id, "experiment": "fake", "arm": arm, "seed": s, "fold": f,
                    "split_seed": 0 if shared_split else s, "init_seed": s, "order_seed": s, "status": status,
                    "wall_s": 1.0, "n_train": 400, "n_val": val_size, "n_truth": 100 if truth else 0,
                    "epochs_run": n_epochs,
                })
    meta = {
        "experiment": "fake", "arms": list(arms),
        "dataset": {"class_names": [f"c{i}" for i in range(n_classes)]},
        "arms_config": {a: {"training": {"learning_rate": 1e-3},
                            "schedule": {"patience": patience, "factor": 0.1, "monitor": "val_accuracy"},
                            "data": {"val_size": val_size}} for a in arms},
    }
    effects = {"split_effect": split_effect, "seed_effect": seed_effect, "arm_effects": arm_effects}
    return (pd.DataFrame(run_rows), pd.concat(epoch_parts, ignore_index=True),
            pd.concat(pred_parts, ignore_index=True), meta, effects)
