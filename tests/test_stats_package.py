"""valstat.stats as a package: public API, no heavy imports, and the synthetic store."""

import subprocess
import sys

import numpy as np
import pytest

import valstat.stats as stats
from valstat.synthetic import fake_store
from valstat.core import EPOCH_COLUMNS, PREDICTION_COLUMNS, RUN_COLUMNS


def test_importing_stats_and_summary_loads_no_keras_tensorflow_or_matplotlib():
    code = ("import sys, valstat.stats, valstat.summary, valstat.synthetic; "
            "bad = [m for m in ('keras', 'tensorflow', 'matplotlib') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_public_api_is_documented():
    for name in stats.__all__:
        func = getattr(stats, name)
        assert callable(func) and func.__doc__ and len(func.__doc__.strip()) > 20, name


def test_fake_store_has_store_columns_and_known_structure():
    runs, epochs, preds, meta, effects = fake_store(seeds=2, folds=3, epochs=4, val_size=10,
                                                    diverged=("base", 1, 2, 2), truth=False)
    assert list(runs.columns) == RUN_COLUMNS and list(epochs.columns) == EPOCH_COLUMNS
    assert list(preds.columns) == PREDICTION_COLUMNS
    assert len(runs) == 2 * 2 * 3 and set(runs["status"]) == {"finished", "diverged"}
    assert len(epochs) == 11 * 4 + 2 and len(preds) == len(epochs) * 10
    acc = preds.assign(ok=preds["label"] == preds["predicted"]).groupby(["run_id", "epoch"])["ok"].mean()
    assert np.allclose(acc.to_numpy(), epochs.set_index(["run_id", "epoch"])["val_accuracy"].loc[acc.index])
    diverged = preds[preds["run_id"] == "base/s1/f2"]
    assert (diverged["predicted"] == 0).all()
    assert epochs["truth_accuracy"].isna().all()
    assert meta["arms"] == ["base", "alt"] and len(effects["split_effect"]) == 3
    # folds use disjoint images shared by every seed and arm
    by_fold = preds.merge(runs[["run_id", "fold"]]).groupby("fold")["example"].nunique()
    assert list(by_fold) == [10, 10, 10]


@pytest.mark.parametrize("shared", [True, False])
def test_fake_store_split_sharing(shared):
    runs, _, preds, _, _ = fake_store(arms=("a",), seeds=2, folds=1, epochs=1, val_size=5, shared_split=shared)
    examples = preds.groupby("run_id")["example"].apply(tuple)
    assert (examples.nunique() == 1) == shared
