"""The SQLite store: round trip, one write per run, read-only loading."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from valstat.stats.simulate import fake_store
from valstat.store import EPOCH_COLUMNS, PREDICTION_COLUMNS, load_tables, store_path, write_tables


def test_tables_round_trip_and_runs_are_never_written_twice(tmp_path):
    runs, epochs, predictions, meta, _ = fake_store(seeds=2, folds=2, epochs=3, seed=5)
    assert write_tables(tmp_path, runs, epochs, predictions, meta) == len(runs)
    assert write_tables(tmp_path, runs, epochs, predictions, meta) == 0
    tables = load_tables(tmp_path)
    assert tables.meta == meta
    key = ["run_id", "epoch"]
    stored = tables.epochs[EPOCH_COLUMNS].sort_values(key).reset_index(drop=True)
    given = epochs[EPOCH_COLUMNS].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(stored, given, check_dtype=False)
    key = ["run_id", "epoch", "example"]
    stored = tables.predictions[PREDICTION_COLUMNS].sort_values(key).reset_index(drop=True)
    given = predictions[PREDICTION_COLUMNS].sort_values(key).reset_index(drop=True)
    assert (stored.run_id == given.run_id).all()
    numbers = PREDICTION_COLUMNS[1:]
    assert np.array_equal(stored[numbers].to_numpy(dtype=float), given[numbers].to_numpy(dtype=float))
    assert sorted(tables.runs.run_id) == sorted(runs.run_id)


def test_loading_never_modifies_the_file(tmp_path):
    runs, epochs, predictions, meta, _ = fake_store(seeds=1, folds=1, epochs=2, seed=1)
    write_tables(tmp_path, runs, epochs, predictions, meta)
    before = hashlib.sha256(store_path(tmp_path).read_bytes()).hexdigest()
    load_tables(tmp_path)
    assert hashlib.sha256(store_path(tmp_path).read_bytes()).hexdigest() == before
