"""Which validation images move the curve: per-image flips between epochs and across runs.

Input is the store's tidy predictions table (one row per run, epoch and validation image):
``run_id, epoch, example, label, predicted`` (``p_true`` optional). An image is *correct* at an
epoch when ``predicted == label``. A *flip* is a change of that flag between two consecutive
recorded epochs of one run: *lost* (right -> wrong) or *gained* (wrong -> right). Epochs are the
stored numbers; examples are the store's example ids (global image indices).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from valstat.errors import ValstatError
from valstat.stats._checks import need_columns

COLUMNS = ["run_id", "epoch", "example", "label", "predicted"]
FLIP_COLUMNS = ["example", "label", "runs", "transitions", "flips", "lost", "gained",
                "final_correct", "final_accuracy", "wrong", "predictions", "confused_with"]


def image_flips(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per validation image: how often it flips between consecutive epochs, summed over runs.

    predictions: tidy rows (run_id, epoch, example, label, predicted), any order, one group of
    runs (e.g. one arm). Returns one row per example, most unstable first, with columns
      example, label (true class index), runs (runs that validated it), transitions (consecutive
      epoch pairs seen, over runs), flips (= lost + gained), lost, gained, final_correct (runs
      right at their last recorded epoch), final_accuracy (final_correct / runs),
      wrong (predictions of a wrong class, over runs and epochs), predictions (all of them),
      confused_with (list of (class index, times predicted), most frequent first).
    Order: flips descending, then final_accuracy nearest 1/2 (runs disagree most), then example.
    """
    need_columns(predictions, COLUMNS, "predictions")
    label = predictions["label"].to_numpy(dtype=np.int64)
    predicted = predictions["predicted"].to_numpy(dtype=np.int64)
    return flips_per_image(pd.factorize(predictions["run_id"])[0],
                           predictions["epoch"].to_numpy(dtype=np.int64),
                           predictions["example"].to_numpy(dtype=np.int64), label, predicted,
                           predicted == label)


def flips_per_image(run, epoch, example, label, predicted, correct) -> pd.DataFrame:
    """image_flips on flat arrays, shape (rows,) each, one row per run, epoch and image: run
    (integer code), epoch, example, label and predicted (class indices), correct (bool: label ==
    predicted, e.g. valstat.core.Cube's). Returns image_flips' table."""
    if len(run) == 0:
        return pd.DataFrame(columns=FLIP_COLUMNS)
    order = np.lexsort((epoch, example, run))
    run, example, epoch, correct = (np.asarray(a)[order] for a in (run, example, epoch, correct))
    label, predicted = (np.asarray(a, dtype=np.int64)[order] for a in (label, predicted))
    same = np.r_[False, (run[1:] == run[:-1]) & (example[1:] == example[:-1])]
    if np.any(same[1:] & (epoch[1:] == epoch[:-1])):
        raise ValstatError("predictions hold the same (run_id, epoch, example) more than once")
    before = np.r_[False, correct[:-1]]
    last = np.r_[~same[1:], True]          # each run's last recorded epoch of the image
    examples, first, inv = np.unique(example, return_index=True, return_inverse=True)
    size = examples.size

    def count(mask):
        return np.bincount(inv[mask], minlength=size)

    out = pd.DataFrame({
        "example": examples, "label": label[first], "runs": count(~same),
        "transitions": count(same), "lost": count(same & before & ~correct),
        "gained": count(same & ~before & correct), "final_correct": count(last & correct),
        "wrong": count(~correct), "predictions": np.bincount(inv, minlength=size)})
    out["flips"] = out["lost"] + out["gained"]
    out["final_accuracy"] = out["final_correct"] / out["runs"]
    pairs, times = np.unique(np.c_[inv[~correct], predicted[~correct]], axis=0,
                             return_counts=True)
    confused = [[] for _ in range(size)]
    for (i, cls), n in sorted(zip(map(tuple, pairs), times),
                              key=lambda t: (t[0][0], -t[1], t[0][1])):
        confused[i].append((int(cls), int(n)))
    out["confused_with"] = confused
    out["_disagree"] = (out["final_accuracy"] - 0.5).abs()
    out = out.sort_values(["flips", "_disagree", "example"], ascending=[False, True, True],
                          kind="stable")
    return out[FLIP_COLUMNS].reset_index(drop=True)


def lost_and_gained(predictions: pd.DataFrame, run_id, from_epoch: int,
                    to_epoch: int) -> pd.DataFrame:
    """The exact images one run lost and gained between two of its epochs.

    Returns one row per image whose correctness differs: example, label, direction ("lost":
    right at `from_epoch`, wrong at `to_epoch`; "gained": the reverse), predicted_before,
    predicted_after (class indices); lost images first, then by example. Only images scored at
    both epochs count. ValstatError when the run has no predictions at either epoch.
    """
    need_columns(predictions, COLUMNS, "predictions")
    rows = predictions[predictions["run_id"] == run_id]
    parts = []
    for epoch in (from_epoch, to_epoch):
        part = rows[rows["epoch"] == epoch]
        if part.empty:
            raise ValstatError(f"run {run_id!r} has no per-image predictions at epoch {epoch}")
        label = part["label"].to_numpy(dtype=np.int64)
        predicted = part["predicted"].to_numpy(dtype=np.int64)
        parts.append((part["example"].to_numpy(dtype=np.int64), label, predicted, predicted == label))
    return moved_images(*parts)


def moved_images(before, after) -> pd.DataFrame:
    """lost_and_gained from two epochs of one run, each (example, label, predicted, correct):
    flat arrays, shape (images,), correct bool (label == predicted, e.g. valstat.core.Cube's).
    Only images scored at both epochs count. Returns lost_and_gained's table."""
    _, i, j = np.intersect1d(before[0], after[0], return_indices=True)
    moved = before[3][i] != after[3][j]
    i, j = i[moved], j[moved]
    out = pd.DataFrame({
        "example": np.asarray(before[0], dtype=np.int64)[i],
        "label": np.asarray(before[1], dtype=np.int64)[i],
        "direction": np.where(before[3][i], "lost", "gained"),
        "predicted_before": np.asarray(before[2], dtype=np.int64)[i],
        "predicted_after": np.asarray(after[2], dtype=np.int64)[j],
    })
    order = np.lexsort((out["example"].to_numpy(), out["direction"].ne("lost").to_numpy()))
    return out.iloc[order].reset_index(drop=True)
