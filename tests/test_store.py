"""The SQLite store: round trip, one write per run, read-only loading."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

import sqlite3

import pytest

from conftest import TINY, valstat
from valstat.errors import ValstatError
from valstat.synthetic import fake_store
from valstat.store import (EPOCH_COLUMNS, PREDICTION_COLUMNS, SCHEMA_VERSION, load_tables,
                           read_meta, store_path, write_tables)


def test_tables_round_trip_and_runs_are_never_written_twice(tmp_path):
    runs, epochs, predictions, meta, _ = fake_store(seeds=2, folds=2, epochs=3, seed=5)
    assert write_tables(tmp_path, runs, epochs, predictions, meta) == len(runs)
    assert write_tables(tmp_path, runs, epochs, predictions, meta) == 0
    tables = load_tables(tmp_path)
    assert tables.meta == {"store_kind": "imported", **meta}
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


def test_store_carries_its_schema_version_and_refuses_a_newer_one(tmp_path):
    runs, epochs, predictions, meta, _ = fake_store(seeds=1, folds=1, epochs=2, seed=1)
    write_tables(tmp_path, runs, epochs, predictions, meta)
    with sqlite3.connect(store_path(tmp_path)) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = hashlib.sha256(store_path(tmp_path).read_bytes()).hexdigest()
    with pytest.raises(ValstatError, match="newer valstat"):
        load_tables(tmp_path)
    result = valstat("stats", tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "newer valstat" in result.stderr
    assert hashlib.sha256(store_path(tmp_path).read_bytes()).hexdigest() == before


def test_kind_of_a_store_written_before_kinds_were_kept_is_inferred(tmp_path):
    runs, epochs, predictions, meta, _ = fake_store(seeds=1, folds=1, epochs=2, seed=1)
    write_tables(tmp_path / "sweep", runs, epochs, predictions, {**meta, "config_hash": "abc"})
    write_tables(tmp_path / "recorded", runs, epochs, predictions, {**meta, "experiment": "recorded"})
    for kind in ("sweep", "recorded"):
        with sqlite3.connect(store_path(tmp_path / kind)) as connection:
            connection.execute("DELETE FROM meta WHERE key = 'store_kind'")
        assert read_meta(tmp_path / kind)["store_kind"] == kind


def test_run_refuses_a_store_of_another_kind_and_leaves_it_unchanged(tmp_path):
    runs, epochs, predictions, meta, _ = fake_store(seeds=1, folds=1, epochs=2, seed=1)
    write_tables(tmp_path, runs, epochs, predictions, {**meta, "store_kind": "recorded"})
    before = hashlib.sha256(store_path(tmp_path).read_bytes()).hexdigest()
    result = valstat("run", TINY, "--out", tmp_path, "--quiet")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "recorded store" in result.stderr
    assert hashlib.sha256(store_path(tmp_path).read_bytes()).hexdigest() == before


def test_a_store_from_before_the_augment_seed_is_read_then_migrated_on_write(tmp_path):
    from valstat.store import Store

    runs, epochs, predictions, meta, _ = fake_store(seeds=1, folds=1, epochs=2, seed=1)
    write_tables(tmp_path, runs, epochs, predictions, meta)
    with sqlite3.connect(store_path(tmp_path)) as connection:
        for column in ("augment_seed", "backend_version", "device"):
            connection.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        connection.execute("PRAGMA user_version = 0")
    old = load_tables(tmp_path)
    assert old.runs.augment_seed.isna().all() and len(old.runs) == len(runs)
    Store(tmp_path).close()
    with sqlite3.connect(store_path(tmp_path)) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        columns = [row[1] for row in connection.execute("PRAGMA table_info(runs)")]
    assert {"augment_seed", "backend_version", "device"} <= set(columns)
    assert load_tables(tmp_path).runs.run_id.tolist() == old.runs.run_id.tolist()
