"""Synthetic valstat stores for tests and benchmarks (no training, no TensorFlow).

Both builders name runs with the real scheme (valstat.splits.run_id_for) and use the Keras-exact
ReduceLROnPlateau of valstat.stats.plateau:

* fake_store: the store's tables as DataFrames, each run's per-image correctness Bernoulli with a
  known accuracy made of an arm, a split (fold) and a seed effect: for checking statistics
  against the structure that made the data.
* build_store: what `valstat run` would have written, simulated epoch by epoch so that the
  schedule feeds back into progress (accuracy on the k/n lattice, smooth val loss, a rate that
  collapses on lattice ties, one run collapsed to a single class, a truth-set column), written
  with the store writer (valstat.store.write_tables) into a store folder.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from valstat.core import EPOCH_COLUMNS, PREDICTION_COLUMNS
from valstat.splits import run_id_for
from valstat.stats.plateau import Plateau, plateau_schedule
from valstat.store import write_tables

DIGITS = [str(d) for d in range(10)]


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
                run_id = run_id_for(arm, s, f)
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
                lr = plateau_schedule(acc, 1e-3, patience=patience, mode="max")
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


def _arm_config(val_size: int, epochs: int, schedule: str, lr: float = 1e-3) -> dict:
    return {
        "data": {"source": "digits", "image_size": 32, "val_size": val_size, "train_size": 430,
                 "truth_size": 500, "holdout": 0.0, "data_seed": 0},
        "training": {"epochs": epochs, "batch_size": 32, "optimizer": "adam",
                     "learning_rate": lr, "momentum": 0.0, "loss": "categorical_crossentropy"},
        "schedule": {"kind": schedule, "monitor": "val_accuracy", "factor": 0.1, "patience": 2,
                     "min_delta": 1e-4, "min_lr": 0.0},
        "model": {"width": 1.0, "dense_units": 4096, "dropout": 0.5, "batch_norm": False},
    }


def _simulate_run(rng, difficulty, labels, val_ids, truth_ids, epochs, schedule, lr0,
                  base_skill, collapse_class=None, diverge_at=None):
    """Simulate epoch by epoch so that the schedule feeds back into progress (frozen when lr->0)."""
    n = len(val_ids)
    jitter_img = rng.normal(0, 0.35, size=n)
    plateau = Plateau(lr0, factor=0.1, patience=2, mode="max")
    progress = 0.0
    rows, preds = [], []
    n_classes = int(labels.max()) + 1
    for t in range(epochs):
        rate = float(f"{plateau.lr:.7g}")   # as ValidationRecorder logs the float32 rate
        progress += rate / 1e-3
        skill = base_skill + 3.2 * (1 - math.exp(-progress / 4.0))
        z = skill - difficulty[val_ids] + jitter_img + rng.normal(0, 0.45, size=n)
        p_true = 1 / (1 + np.exp(-z))
        predicted = np.where(z > 0, labels[val_ids],
                             (labels[val_ids] + 1 + rng.integers(0, n_classes - 1, n)) % n_classes)
        if collapse_class is not None and t >= 1:
            predicted = np.full(n, collapse_class)
            p_true = np.where(labels[val_ids] == collapse_class, 0.12, 0.098)
            p_true = p_true + rng.normal(0, 0.0005, n)
        correct = predicted == labels[val_ids]
        val_acc = float(correct.mean())
        val_loss = float(np.mean(-np.log(np.clip(p_true, 1e-7, 1))))
        z_truth = skill - difficulty[truth_ids] + rng.normal(0, 0.6, size=len(truth_ids))
        truth_acc = math.nan if not truth_ids.size else (
            float(np.mean(z_truth > 0)) if collapse_class is None else 0.1)
        train_acc = min(0.999, 1 / (1 + math.exp(-(skill + 0.8))) + rng.normal(0, 0.01))
        loss = 2.3 * math.exp(-progress / 3.5) + 0.05 + abs(rng.normal(0, 0.02))
        if diverge_at is not None and t == diverge_at:
            loss = math.nan
        if collapse_class is not None:
            train_acc, loss = 0.1 + rng.normal(0, 0.005), 2.302 + rng.normal(0, 0.001)
        rows.append((t, loss, train_acc, val_loss, val_acc, rate,
                     truth_acc if truth_ids.size else math.nan))
        preds.extend((t, int(e), int(lab), int(p), float(q)) for e, lab, p, q in
                     zip(val_ids, labels[val_ids], predicted, p_true))
        if diverge_at is not None and t == diverge_at:
            break
        if schedule == "reduce_on_plateau":
            plateau.step(val_acc, t)   # the one Keras-exact implementation valstat shares
    return rows, preds


def build_store(out_dir, arms=("baseline", "constant_lr"), seeds=4, folds=2, epochs=20,
                val_size=30, val_sizes=None, collapse=True, truth=True, class_names=None,
                experiment="synthetic", max_runs=None, diverged=False, meta=True,
                vary=("init", "order"), predictions=True, seed=0) -> Path:
    """Write a synthetic store into `out_dir` and return it.

    arms: arm names; an arm whose name contains "constant" keeps its learning rate fixed, others
    use ReduceLROnPlateau. val_sizes: {arm: n} to make arms that differ only in validation size
    (as valstat/experiments/val_size.toml does). max_runs: stop early, as an interrupted sweep would.
    collapse: the first run of the first arm collapses to one class. diverged: one run's loss
    becomes NaN at epoch 3 (status "diverged"). vary: seed kinds that change with the seed; with
    "split" in it every seed draws new validation images, without it each fold keeps its images
    across seeds (so the finite-sample variance is estimable). predictions=False writes no
    per-image rows (runs recorded from a plain Keras history).
    """
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    class_names = list(class_names or DIGITS)
    n_classes = len(class_names)
    pool = 1500
    labels = np.arange(pool) % n_classes
    difficulty = rng.normal(0, 1.2, size=pool)
    truth_ids = np.arange(1000, 1500) if truth else np.array([], dtype=int)
    val_sizes = dict(val_sizes or {})
    arms_config = {}
    for arm in arms:
        schedule = "constant" if "constant" in arm else "reduce_on_plateau"
        arms_config[arm] = _arm_config(val_sizes.get(arm, val_size), epochs, schedule)
    meta_values = {"store_kind": "sweep"}
    if meta:
        meta_values.update({
                "experiment": experiment,
                "description": "Synthetic store for tests: AlexNet-like curves on digits.",
                "config_hash": "0123456789abcdef",
                "arms": list(arms),
                "arms_config": arms_config,
                "sweep": {"seeds": seeds, "folds": folds, "vary": list(vary)},
                "dataset": {"source": "digits", "class_names": class_names,
                            "class_counts": {c: 180 for c in class_names},
                            "n_images": 1797, "n_truth": int(truth_ids.size),
                            "description": "scikit-learn digits, upscaled to 32x32 RGB"},
                "versions": {"python": "3.11.2", "tensorflow": "2.21.0", "keras": "3.15.1"},
                "model_summary": {arm: {"input": [32, 32, 3],
                                        "filters": [96, 256, 384, 384, 256],
                                        "dense_units": 4096, "params": 21_596_042}
                                  for arm in arms},
        })
    base = {s: rng.normal(-1.2, 0.5) for s in range(seeds)}
    runs, epoch_rows, prediction_rows = [], [], []
    for s in range(seeds):
        for f in range(folds):
            split_seed = s if "split" in vary else 0
            permutation = np.random.default_rng(1000 + 17 * split_seed + f).permutation(1000)
            for a_index, arm in enumerate(arms):
                if max_runs is not None and len(runs) >= max_runs:
                    break
                n_val = arms_config[arm]["data"]["val_size"]
                # the same images for every arm of one seed/fold (paired design); arms with
                # a larger validation set see a superset
                val_ids = np.sort(permutation[:n_val])
                run_rng = np.random.default_rng(10_000 * (a_index + 1) + 100 * s + f)
                schedule = arms_config[arm]["schedule"]["kind"]
                collapse_class = 3 if (collapse and a_index == 0 and s == 0 and f == 0) else None
                diverge_at = 3 if (diverged and a_index == 0 and s == seeds - 1
                                   and f == 0) else None
                rows, preds = _simulate_run(
                    run_rng, difficulty, labels, val_ids, truth_ids, epochs, schedule, 1e-3,
                    base[s] + (0.4 if "constant" in arm else 0.0), collapse_class,
                    diverge_at)
                run_id = run_id_for(arm, s, f)
                run = {"run_id": run_id, "experiment": experiment, "arm": arm, "seed": s,
                       "fold": f, "split_seed": split_seed, "init_seed": s,
                       "order_seed": s,
                       "status": "diverged" if diverge_at is not None else "finished",
                       "wall_s": 60.0 + s, "n_train": 430, "n_val": n_val,
                       "n_truth": int(truth_ids.size), "epochs_run": len(rows),
                       "python_version": "3.11.2", "tf_version": "2.21.0",
                       "keras_version": "3.15.1", "backend": "tensorflow",
                       "finished_at": "2026-11-27T10:00:00+00:00",
                       "val_examples": [int(i) for i in val_ids]}
                runs.append(run)
                epoch_rows += [(run_id, *r) for r in rows]
                prediction_rows += [(run_id, *p) for p in preds] if predictions else []
    write_tables(out_dir, pd.DataFrame(runs), pd.DataFrame(epoch_rows, columns=EPOCH_COLUMNS),
                 pd.DataFrame(prediction_rows, columns=PREDICTION_COLUMNS), meta_values)
    return out_dir
