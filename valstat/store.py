"""SQLite store: one file per output folder holding every run, epoch and per-image prediction.

Tables (tidy, GUIDE §2):
  meta(key, value)                 JSON values: experiment, config hash, data description, ...
  runs(run_id, experiment, arm, seed, fold, split_seed, init_seed, order_seed, status, wall_s,
       n_train, n_val, n_truth, epochs_run, python_version, tf_version, keras_version, backend,
       finished_at, val_examples, train_examples, backend_version, device)
                                   (example lists as JSON; device e.g. "cpu", "cuda: NVIDIA H100")
  epochs(run_id, epoch, loss, accuracy, val_loss, val_accuracy, learning_rate, truth_accuracy)
  predictions(run_id, epoch, example, label, predicted, p_true)
Each finished run is written in one transaction, so a killed driver never leaves half a run.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from valstat.errors import UserError

STORE_NAME = "valstat.sqlite"

RUN_COLUMNS = [
    "run_id", "experiment", "arm", "seed", "fold", "split_seed", "init_seed", "order_seed",
    "status", "wall_s", "n_train", "n_val", "n_truth", "epochs_run", "python_version",
    "tf_version", "keras_version", "backend", "finished_at", "val_examples", "train_examples",
    "backend_version", "device",
]
# Columns added after the first schema: (name, SQL type). Opening an older store for writing
# adds them (NULL for its old runs); reading never needs them.
ADDED_RUN_COLUMNS = [("backend_version", "TEXT"), ("device", "TEXT")]
EPOCH_COLUMNS = [
    "run_id", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
    "truth_accuracy",
]
PREDICTION_COLUMNS = ["run_id", "epoch", "example", "label", "predicted", "p_true"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, experiment TEXT NOT NULL, arm TEXT NOT NULL,
    seed INTEGER NOT NULL, fold INTEGER NOT NULL, split_seed INTEGER NOT NULL,
    init_seed INTEGER NOT NULL, order_seed INTEGER NOT NULL, status TEXT NOT NULL,
    wall_s REAL, n_train INTEGER, n_val INTEGER, n_truth INTEGER, epochs_run INTEGER,
    python_version TEXT, tf_version TEXT, keras_version TEXT, backend TEXT,
    finished_at TEXT, val_examples TEXT, train_examples TEXT, backend_version TEXT, device TEXT
);
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL REFERENCES runs(run_id), epoch INTEGER NOT NULL,
    loss REAL, accuracy REAL, val_loss REAL, val_accuracy REAL, learning_rate REAL,
    truth_accuracy REAL, PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS predictions (
    run_id TEXT NOT NULL REFERENCES runs(run_id), epoch INTEGER NOT NULL,
    example INTEGER NOT NULL, label INTEGER NOT NULL, predicted INTEGER NOT NULL,
    p_true REAL, PRIMARY KEY (run_id, epoch, example)
) WITHOUT ROWID;
"""


@dataclass
class RunRecord:
    """One finished (or diverged) run, ready to be written in one transaction.

    `run` maps RUN_COLUMNS to values; `epochs` and `predictions` are lists of row tuples in
    EPOCH_COLUMNS / PREDICTION_COLUMNS order.
    """

    run: dict
    epochs: list[tuple] = field(default_factory=list)
    predictions: list[tuple] = field(default_factory=list)
    model: dict = field(default_factory=dict)  # the network's description, for meta


@dataclass
class StoreTables:
    """Everything a store holds, as DataFrames with the tidy columns above."""

    runs: pd.DataFrame
    epochs: pd.DataFrame
    predictions: pd.DataFrame
    meta: dict


def store_path(out_dir: str | Path) -> Path:
    return Path(out_dir) / STORE_NAME


def _check_sqlite_file(path: Path) -> None:
    """Refuse, without writing to it, a file that is not a readable valstat store."""
    with open(path, "rb") as handle:
        header = handle.read(16)
    if header != b"SQLite format 3\x00":
        raise UserError(f"{path} is not a SQLite database (corrupted or not a valstat store); "
                        "move it aside or choose another --out folder")


def _connect_readonly(path: Path) -> sqlite3.Connection:
    _check_sqlite_file(path)
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        tables = {row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
        connection.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as error:
        raise UserError(f"{path} is damaged and cannot be read ({error}); "
                        "it was left untouched") from None
    missing = {"meta", "runs", "epochs", "predictions"} - tables
    if missing:
        connection.close()
        raise UserError(f"{path} is a SQLite file but not a valstat store "
                        f"(missing tables: {', '.join(sorted(missing))})")
    return connection


class Store:
    """Read-write access to one output folder's store."""

    def __init__(self, out_dir: str | Path, create: bool = True):
        self.path = store_path(out_dir)
        if self.path.exists():
            _connect_readonly(self.path).close()
        elif not create:
            raise UserError(f"no valstat store in {out_dir} (expected {self.path}); "
                            "run `valstat run --out DIR` first")
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise UserError(f"cannot create output folder {self.path.parent}: "
                                f"{error.strerror}") from None
        try:
            self.connection = sqlite3.connect(self.path, timeout=30)
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.executescript(SCHEMA)
            present = {row[1] for row in self.connection.execute("PRAGMA table_info(runs)")}
            with self.connection:
                for name, kind in ADDED_RUN_COLUMNS:
                    if name not in present:
                        self.connection.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
        except sqlite3.OperationalError as error:
            raise UserError(f"cannot write the store {self.path}: {error}") from None

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def meta(self) -> dict:
        rows = self.connection.execute("SELECT key, value FROM meta").fetchall()
        return {key: json.loads(value) for key, value in rows}

    def set_meta(self, values: dict) -> None:
        with self.connection:
            self.connection.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(key, json.dumps(value)) for key, value in values.items()])

    def finished_run_ids(self) -> set[str]:
        return {row[0] for row in self.connection.execute("SELECT run_id FROM runs")}

    def write_run(self, record: RunRecord) -> bool:
        """Write one run atomically; returns False (and writes nothing) if it is already stored."""
        run = dict(record.run)
        for key in ("val_examples", "train_examples"):
            if isinstance(run.get(key), (list, tuple)):
                run[key] = json.dumps([int(i) for i in run[key]])
        columns = ", ".join(RUN_COLUMNS)
        marks = ", ".join("?" for _ in RUN_COLUMNS)
        with self.connection:
            exists = self.connection.execute(
                "SELECT 1 FROM runs WHERE run_id = ?", (run["run_id"],)).fetchone()
            if exists:
                return False
            self.connection.execute(f"INSERT INTO runs ({columns}) VALUES ({marks})",
                                    [run.get(c) for c in RUN_COLUMNS])
            self.connection.executemany(
                f"INSERT INTO epochs VALUES ({', '.join('?' for _ in EPOCH_COLUMNS)})",
                record.epochs)
            self.connection.executemany(
                f"INSERT INTO predictions VALUES ({', '.join('?' for _ in PREDICTION_COLUMNS)})",
                record.predictions)
        return True


def read_meta(out_dir: str | Path) -> dict | None:
    """The meta of an existing store (read-only, the file is not touched), or None if absent."""
    path = store_path(out_dir)
    if not path.exists():
        return None
    connection = _connect_readonly(path)
    try:
        return {key: json.loads(value) for key, value in
                connection.execute("SELECT key, value FROM meta").fetchall()}
    finally:
        connection.close()


def load_tables(out_dir: str | Path) -> StoreTables:
    """Read a whole store (read-only, never modifies the file) into DataFrames."""
    path = store_path(out_dir)
    if not path.exists():
        raise UserError(f"no valstat store in {out_dir} (expected {path}); "
                        "run `valstat run --out DIR` first")
    connection = _connect_readonly(path)
    try:
        meta = {key: json.loads(value) for key, value in
                connection.execute("SELECT key, value FROM meta").fetchall()}
        runs = pd.read_sql_query("SELECT * FROM runs ORDER BY arm, seed, fold", connection)
        epochs = pd.read_sql_query("SELECT * FROM epochs ORDER BY run_id, epoch", connection)
        predictions = pd.read_sql_query(
            "SELECT * FROM predictions ORDER BY run_id, epoch, example", connection)
    except sqlite3.DatabaseError as error:
        raise UserError(f"{path} is damaged and cannot be read ({error}); "
                        "it was left untouched") from None
    finally:
        connection.close()
    return StoreTables(runs=runs, epochs=epochs, predictions=predictions, meta=meta)


def export_csv(out_dir: str | Path, dest: str | Path) -> list[Path]:
    """Write runs.csv, epochs.csv and predictions.csv (GUIDE §2 columns) into `dest`."""
    tables = load_tables(out_dir)
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create {dest}: {error.strerror}") from None
    written = []
    for name, frame in (("runs", tables.runs), ("epochs", tables.epochs),
                        ("predictions", tables.predictions)):
        target = dest / f"{name}.csv"
        frame.to_csv(target, index=False)
        written.append(target)
    return written


def write_tables(out_dir: str | Path, runs: pd.DataFrame, epochs: pd.DataFrame,
                 predictions: pd.DataFrame, meta: dict) -> int:
    """Write tidy tables (the columns above) into the store at `out_dir`, one transaction per
    run, skipping runs already stored. Returns how many runs were written."""
    epochs_by_run = dict(tuple(epochs.groupby("run_id")))
    predictions_by_run = dict(tuple(predictions.groupby("run_id")))
    empty_epochs = pd.DataFrame(columns=EPOCH_COLUMNS)
    empty_predictions = pd.DataFrame(columns=PREDICTION_COLUMNS)
    written = 0
    with Store(out_dir) as store:
        store.set_meta(meta)
        for run in runs.to_dict("records"):
            run_id = run["run_id"]
            record = RunRecord(
                run=run,
                epochs=list(epochs_by_run.get(run_id, empty_epochs)[EPOCH_COLUMNS]
                            .itertuples(index=False, name=None)),
                predictions=list(predictions_by_run.get(run_id, empty_predictions)
                                 [PREDICTION_COLUMNS].itertuples(index=False, name=None)))
            written += store.write_run(record)
    return written
