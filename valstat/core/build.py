"""Build the run table and the correctness cube once from a store's tables."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from valstat.core.cube import Cube
from valstat.core.settings import DEFAULT, Settings
from valstat.errors import ValstatError
from valstat.stats._checks import need_columns
from valstat.stats.dynamics import lr_collapse

RUN_COLUMNS = ["run_id", "experiment", "arm", "seed", "fold", "split_seed", "init_seed", "order_seed",
               "status", "wall_s", "n_train", "n_val", "n_truth", "epochs_run"]
EPOCH_COLUMNS = ["run_id", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "truth_accuracy"]
PREDICTION_COLUMNS = ["run_id", "epoch", "example", "label", "predicted", "p_true"]


@dataclass(frozen=True)
class Core:
    """Everything the layers above `stats` read about one store, computed once.

    runs: the run table, one row per run sorted by run_id (index run_id): the store's run
      columns plus code (position, the cube's run code), split (the validation set: runs of an
      arm share it exactly when they scored the same images; see _split_identity), diverged, counted (enters the
      statistics: not diverged, or settings.count_diverged), final_val_accuracy,
      best_val_accuracy (fractions), last_epoch, best_epoch, lr_initial, lr_final,
      collapse_epoch (first epoch with the rate below settings.collapse_threshold of its
      start; NaN if never), collapse_epochs_after, collapse_lr (the rate then), ends_collapsed, ever_collapsed,
      one_class_from, one_class_class (one-class collapse; NaN without predictions).
    epochs: the store's epochs of known runs plus arm, seed, fold, status, counted, sorted
      by (run_id, epoch). predictions: the store's predictions table as given. cube:
      per-image correctness (Cube). arm_names: meta's arms in order,
      then unlisted arms found in runs.
    """

    meta: dict
    settings: Settings
    runs: pd.DataFrame
    epochs: pd.DataFrame
    predictions: pd.DataFrame
    cube: Cube
    arm_names: list

    @property
    def counted(self) -> pd.DataFrame:
        """The run table's rows that enter the statistics."""
        return self.runs[self.runs["counted"]]

    @property
    def counted_epochs(self) -> pd.DataFrame:
        """The epochs of counted runs."""
        return self.epochs[self.epochs["counted"]]

    @property
    def arms_present(self) -> list:
        """arm_names that have at least one run."""
        present = set(self.runs["arm"])
        return [a for a in self.arm_names if a in present]


def check_tables(runs, epochs, predictions, meta) -> None:
    """Refuse (ValstatError) tables that are not the store's: columns, duplicates, emptiness."""
    for frame, columns, name in ((runs, RUN_COLUMNS, "runs"), (epochs, EPOCH_COLUMNS, "epochs"),
                                 (predictions, PREDICTION_COLUMNS, "predictions")):
        if not isinstance(frame, pd.DataFrame):
            raise ValstatError(f"{name} must be a pandas DataFrame")
        need_columns(frame, columns, name)
    if not isinstance(meta, dict):
        raise ValstatError("meta must be a dict")
    if runs["run_id"].duplicated().any():
        raise ValstatError("runs holds the same run_id more than once")
    if len(runs) == 0:
        raise ValstatError("the store holds no runs yet: nothing to analyse "
                           "(wait until `valstat run` has finished at least one run)")
    if len(epochs) == 0:
        raise ValstatError("the store's runs have no recorded epochs: nothing to analyse")


def build_core(runs: pd.DataFrame, epochs: pd.DataFrame, predictions: pd.DataFrame, meta: dict,
               settings: Settings = DEFAULT) -> Core:
    """The run table, epochs and cube of one store's tables (columns RUN_COLUMNS,
    EPOCH_COLUMNS, PREDICTION_COLUMNS; predictions may be empty)."""
    check_tables(runs, epochs, predictions, meta)
    ordered = epochs.sort_values(["run_id", "epoch"], kind="stable")
    table = runs.sort_values("run_id", kind="stable").set_index("run_id", drop=False)
    table.index.name = None
    table["code"] = np.arange(len(table))
    cube = Cube.build(predictions, pd.Index(table["run_id"]))
    images = _validation_images(table, cube)
    table["split"] = pd.concat([_split_identity(group, images) for _, group in table.groupby("arm")])
    table["diverged"] = table["status"].astype(str).eq("diverged")
    table["counted"] = ~table["diverged"] | settings.count_diverged
    _add_accuracy(table, ordered)
    _add_learning_rate(table, ordered, settings.collapse_threshold)
    one_class = cube.one_class()
    one_class.index = table["run_id"].to_numpy()[one_class.index.to_numpy(dtype=int)]
    for column in one_class.columns:
        table[column] = one_class[column].reindex(table.index)
    info = table[["run_id", "arm", "seed", "fold", "status", "counted"]].reset_index(drop=True)
    merged = ordered.merge(info, on="run_id", how="inner")
    listed = list(meta.get("arms") or [])
    arm_names = listed + sorted(set(table["arm"]) - set(listed))
    return Core(dict(meta), settings, table, merged, predictions, cube, arm_names)


def history_core(epochs: pd.DataFrame, n_val: int | None, settings: Settings = DEFAULT) -> Core:
    """One Keras history (a tidy epochs table: epoch, val_accuracy, optional loss, accuracy,
    val_loss, learning_rate) as the Core of a one-run store (run_id "history"), so that
    `valstat diagnose` reads the same run table as `stats` and `report`."""
    frame = epochs.assign(run_id="history")
    for column in EPOCH_COLUMNS:
        if column not in frame:
            frame[column] = np.nan
    run = {c: np.nan for c in RUN_COLUMNS}
    run.update(run_id="history", experiment="history", arm="history", seed=0, fold=0, split_seed=0,
               init_seed=0, order_seed=0, status="finished", n_val=n_val, epochs_run=len(frame))
    predictions = pd.DataFrame({c: pd.Series(dtype=float) for c in PREDICTION_COLUMNS})
    return build_core(pd.DataFrame([run]), frame[EPOCH_COLUMNS], predictions, {"arms": ["history"]}, settings)


def _validation_images(table: pd.DataFrame, cube: Cube) -> dict:
    """run_id -> the run's validation images as a sorted tuple of example ids: its stored
    val_examples, else the examples of its last predicted epoch; runs with neither are left out."""
    out = {}
    last = {int(cube.run[g]): g for g in cube.last_groups()}
    stored = table["val_examples"] if "val_examples" in table else pd.Series(None, index=table.index)
    for run_id, code, examples in zip(table["run_id"], table["code"], stored):
        if isinstance(examples, str):
            examples = json.loads(examples)
        if isinstance(examples, (list, tuple, np.ndarray)) and len(examples):
            out[run_id] = tuple(sorted(int(e) for e in examples))
        elif code in last:
            g = last[code]
            out[run_id] = tuple(sorted(cube.example[cube.start[g]:cube.start[g] + cube.size[g]].tolist()))
    return out


def _split_identity(arm_runs: pd.DataFrame, images: dict) -> pd.Series:
    """The validation set each run of one arm used, as a label: two runs share a label exactly
    when they scored the same images (`images`, from _validation_images). The label is the
    first such run's fold, or split_seed:fold when the arm's split seeds differ. Where some run's
    images are unknown, the split seeds and folds alone decide."""
    named = arm_runs["fold"] if arm_runs["split_seed"].nunique() <= 1 else \
        arm_runs["split_seed"].astype(str) + ":" + arm_runs["fold"].astype(str)
    named = named.astype(str)
    if not all(r in images for r in arm_runs["run_id"]):
        return named
    labels: dict = {}
    for run_id, name in zip(arm_runs["run_id"], named):
        key = images[run_id]
        if key not in labels:
            labels[key] = name if name not in labels.values() else f"{name}#{len(labels)}"
    return pd.Series([labels[images[r]] for r in arm_runs["run_id"]], index=arm_runs.index)


def _add_accuracy(table: pd.DataFrame, ordered: pd.DataFrame) -> None:
    """final/best val accuracy and their epochs (best: first of the highest) per run."""
    last = ordered.groupby("run_id", sort=False).tail(1).set_index("run_id")
    table["final_val_accuracy"] = last["val_accuracy"].astype(float).reindex(table.index)
    table["best_val_accuracy"] = ordered.groupby("run_id")["val_accuracy"].max().astype(float).reindex(table.index)
    table["last_epoch"] = last["epoch"].reindex(table.index)
    best_rows = ordered[ordered["val_accuracy"].notna()]
    best_rows = best_rows.loc[best_rows.groupby("run_id", sort=False)["val_accuracy"].idxmax()]
    table["best_epoch"] = best_rows.set_index("run_id")["epoch"].reindex(table.index)


def _add_learning_rate(table: pd.DataFrame, ordered: pd.DataFrame, threshold: float) -> None:
    """Per run with a finite, positive starting rate: initial and final rate, collapse epoch."""
    ids = ordered["run_id"].to_numpy()
    lr = ordered["learning_rate"].to_numpy(dtype=float)
    epoch = ordered["epoch"].to_numpy()
    bounds = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True]) if len(ids) else np.zeros(1, int)
    rows = {}
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        rate = lr[lo:hi]
        if not (np.all(np.isfinite(rate)) and rate[0] > 0):
            continue
        info = lr_collapse(rate, threshold)
        at = info["epoch"]
        rows[ids[lo]] = (rate[0], info["final_lr"], np.nan if at is None else epoch[lo + at],
                         np.nan if at is None else info["epochs_after"], np.nan if at is None else rate[at])
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=[
        "lr_initial", "lr_final", "collapse_epoch", "collapse_epochs_after", "collapse_lr"], dtype=float)
    for column in frame.columns:
        table[column] = frame[column].reindex(table.index)
