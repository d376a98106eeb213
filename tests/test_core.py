"""valstat.core: the run table, the correctness cube and the settings, checked by hand."""

import numpy as np
import pandas as pd
import pytest

from valstat.core import Cube, Settings, build_core, history_core
from valstat.errors import ValstatError
from valstat.synthetic import fake_store


def test_run_table_final_best_and_collapse_by_hand():
    runs, epochs, preds, meta, _ = fake_store(arms=("a",), seeds=2, folds=1, epochs=6, seed=3)
    core = build_core(runs, epochs, preds, meta)
    for run_id, group in epochs.groupby("run_id"):
        row = core.runs.loc[run_id]
        acc = group.sort_values("epoch")["val_accuracy"].to_numpy()
        assert row["final_val_accuracy"] == acc[-1] and row["best_val_accuracy"] == acc.max()
        assert row["best_epoch"] == int(np.argmax(acc))          # first of the highest
        rate = group.sort_values("epoch")["learning_rate"].to_numpy()
        below = np.flatnonzero(rate < 0.01 * rate[0] * (1 - 1e-6))
        assert (np.isnan(row["collapse_epoch"]) if below.size == 0 else row["collapse_epoch"] == below[0])


def test_history_keeps_its_own_epoch_numbers():
    # a history logged from epoch 5 (resumed training): 1e-5 is 1% of the start, not below it,
    # so the rate collapses at the 4th row, reported as epoch 8
    history = pd.DataFrame({"epoch": [5, 6, 7, 8], "val_accuracy": [0.5, 0.6, 0.6, 0.6],
                            "learning_rate": [1e-3, 1e-4, 1e-5, 1e-6]})
    row = history_core(history, 10).runs.iloc[0]
    assert (row["collapse_epoch"], row["collapse_epochs_after"], row["best_epoch"]) == (8, 1, 6)
    assert row["lr_initial"] == 1e-3 and row["lr_final"] == 1e-6


def test_diverged_runs_are_counted_only_when_asked():
    tables = fake_store(arms=("a",), seeds=3, folds=1, epochs=4, diverged=("a", 1, 0, 2))[:4]
    assert build_core(*tables).runs["counted"].tolist() == [True, False, True]
    assert build_core(*tables, settings=Settings(count_diverged=True)).runs["counted"].all()


def test_cube_grid_needs_the_same_images_every_epoch():
    rows = [("r", e, x, 0, 0 if (e + x) % 2 else 1) for e in range(3) for x in range(4)]
    predictions = pd.DataFrame(rows, columns=["run_id", "epoch", "example", "label", "predicted"])
    epochs, examples, labels, correct = Cube.build(predictions, pd.Index(["r"])).grid(0)
    assert epochs.tolist() == [0, 1, 2] and examples.tolist() == [0, 1, 2, 3]
    assert correct.tolist() == [[False, True, False, True], [True, False, True, False],
                                [False, True, False, True]]
    moved = predictions.assign(example=np.where(predictions["epoch"] == 2, predictions["example"] + 10,
                                                predictions["example"]))
    assert Cube.build(moved, pd.Index(["r"])).grid(0) is None


def test_settings_refuse_nonsense_and_give_alpha():
    assert Settings().alpha == 0.05 and Settings(level=0.99).alpha == 0.01
    with pytest.raises(ValstatError):
        Settings(level=1.5)
    with pytest.raises(ValueError):          # ValstatError is a ValueError
        Settings(collapse_threshold=0)
