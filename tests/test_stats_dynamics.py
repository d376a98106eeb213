"""valstat.stats.dynamics: LR collapse, plateau cuts after ties, one-class collapse, best epochs."""

import numpy as np
import pandas as pd
import pytest

from valstat.errors import ValstatError
from valstat.stats import best_epochs, lr_collapse, one_class_collapse, plateau_cuts_after_ties
from valstat.stats.dynamics import majority_by_group, plateau_cut_table

# GUIDE §1: 1e-3 -> 1e-4 -> 1e-5 -> 1e-6 within the first epochs
SCHEDULE = [1e-3] * 3 + [1e-4] * 2 + [1e-5] * 2 + [1e-6] * 3


def test_lr_collapse_by_hand():
    res = lr_collapse(SCHEDULE)
    # lr < 0.01 * 1e-3 = 1e-5 first at epoch 7 (1e-6); epochs 7, 8, 9 run after it
    assert res == {"epoch": 7, "epochs_after": 3, "final_lr": 1e-6, "cuts": [3, 5, 7]}


def test_lr_collapse_float32_logs_do_not_move_the_threshold():
    # Keras logs float32: float32(1e-5) is just below 0.01 * float32(1e-3), which must not count
    logged = lr_collapse(np.array(SCHEDULE, dtype=np.float32).astype(float))
    assert logged["final_lr"] == pytest.approx(1e-6)
    assert {**logged, "final_lr": 1e-6} == lr_collapse(SCHEDULE)


def test_lr_collapse_never():
    res = lr_collapse([1e-3, 1e-3, 5e-4])
    assert res["epoch"] is None and res["epochs_after"] == 0 and res["cuts"] == [2]
    with pytest.raises(ValstatError):
        lr_collapse([0.0, 0.0])
    with pytest.raises(ValstatError):
        lr_collapse([1e-3], threshold=2)


# Hand-worked Keras 3 ReduceLROnPlateau(monitor="val_accuracy", patience=2, factor=0.1, min_delta=1e-4):
# epoch : 0    1    2    3    4    5    6    7    8    9
# k/30  : 10   12   12   12   11   11   13   13   13   13
# view  : imp  imp  tie  tie  wor  wor  imp  tie  tie  tie
# wait  : 0    0    1    2→cut 1  2→cut 0  1    2→cut 1
# lr during epoch: 1e-3 x4 (0-3), 1e-4 x2 (4-5), 1e-5 x3 (6-8), 1e-6 (9)
HAND_ACC = (np.array([10, 12, 12, 12, 11, 11, 13, 13, 13, 13]) / 30).astype(np.float32).astype(float)
HAND_LR = [1e-3] * 4 + [1e-4] * 2 + [1e-5] * 3 + [1e-6]


def test_plateau_cuts_after_ties_hand_worked():
    df = pd.DataFrame({"epoch": range(10), "val_accuracy": HAND_ACC, "learning_rate": HAND_LR})
    res = plateau_cuts_after_ties(df, patience=2)
    assert (res["cuts"], res["after_ties_only"], res["after_worse"], res["other"]) == (3, 2, 1, 0)
    table = res["table"]
    assert list(table["cut_epoch"]) == [4, 6, 9] and list(table["decision_epoch"]) == [3, 5, 8]
    assert list(table["kind"]) == ["after_ties_only", "after_worse", "after_ties_only"]
    assert list(table["ties"]) == [2, 0, 2] and list(table["worse"]) == [0, 2, 0]


def test_keras_schedule_simulator_agrees_with_hand_worked_example():
    from valstat.stats.plateau import plateau_schedule

    assert np.allclose(plateau_schedule(HAND_ACC, 1e-3, patience=2, mode="max"), HAND_LR)


def test_cut_after_an_improvement_is_other_and_min_mode():
    loss = [1.0, 0.8, 0.9, 0.7, 0.75, 0.75]
    lr = [1e-3, 1e-3, 1e-3, 1e-3, 1e-4, 1e-4]  # cut at 4 decided at 3, but epoch 3 improved
    table = plateau_cut_table(loss, lr, patience=2, mode="min")
    assert list(table["kind"]) == ["other"] and table["improved"][0] == 1
    early = plateau_cut_table([0.5, 0.5], [1e-3, 1e-4], patience=2)  # window shorter than patience
    assert list(early["kind"]) == ["other"]
    with pytest.raises(ValstatError):
        plateau_cut_table(loss, lr, mode="auto")


def test_plateau_needs_the_monitor_column():
    with pytest.raises(ValstatError):
        plateau_cuts_after_ties(pd.DataFrame({"epoch": [0], "learning_rate": [1e-3]}))


def test_best_epochs_first_occurrence_and_nan():
    df = pd.DataFrame({"epoch": [0, 1, 2, 3], "val_loss": [np.nan, 0.5, 0.4, 0.4],
                       "val_accuracy": [0.6, 0.8, np.nan, 0.8]})
    assert best_epochs(df) == {"best_val_loss_epoch": 2, "best_val_loss": 0.4,
                               "best_val_accuracy_epoch": 1, "best_val_accuracy": 0.8}
    empty = best_epochs(df.assign(val_loss=np.nan))
    assert empty["best_val_loss_epoch"] is None and empty["best_val_loss"] is None
    with pytest.raises(ValstatError):
        best_epochs(df.iloc[:0])


def test_one_class_collapse():
    preds = pd.DataFrame({"epoch": [0, 0, 0, 1, 1, 1, 2, 2, 2], "predicted": [0, 1, 1, 2, 2, 2, 0, 1, 2]})
    res = one_class_collapse(preds)
    assert list(res["collapsed"]) == [False, True, False]
    assert list(res["majority_class"]) == [1, 2, 0]  # ties go to the smallest class
    assert res["majority_share"].tolist() == pytest.approx([2 / 3, 1.0, 1 / 3])
    by_run = one_class_collapse(pd.concat([preds.assign(run_id="b"), preds.assign(run_id="a", predicted=7)]))
    assert list(by_run.columns[:2]) == ["run_id", "epoch"] and len(by_run) == 6
    assert by_run[by_run["run_id"] == "a"]["collapsed"].all()
    with pytest.raises(ValstatError):
        one_class_collapse(preds.iloc[:0])


def test_majority_dense_and_sparse_paths_agree():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(50), 30)
    predicted = rng.integers(0, 5, groups.size)
    predicted[:30] = 3
    dense = majority_by_group(groups, predicted, 50)
    sparse = majority_by_group(groups, predicted, 50, max_cells=0)
    assert np.array_equal(dense[0], sparse[0]) and np.allclose(dense[1], sparse[1])
    assert dense[1][0] == 1.0 and dense[0][0] == 3
