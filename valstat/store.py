"""SQLite store: one file per output folder holding every run, epoch and per-image prediction.

Tables (tidy, GUIDE §2):
  meta(key, value)                 JSON values: experiment, config hash, data description, ...
  runs(run_id, experiment, arm, seed, fold, split_seed, init_seed, order_seed, status, wall_s,
       n_train, n_val, n_truth, epochs_run, python_version, tf_version, keras_version, backend,
       finished_at, val_examples, train_examples, augment_seed, backend_version, device)
                                   (example lists as JSON; device e.g. "cpu", "cuda: NVIDIA H100")
  epochs(run_id, epoch, loss, accuracy, val_loss, val_accuracy, learning_rate, truth_accuracy)
  predictions(run_id, epoch, example, label, predicted, p_true)
Each finished run is written in one transaction, so a killed driver never leaves half a run.
The file carries its schema version (`PRAGMA user_version`) and meta `store_kind`: "sweep"
(`valstat run`), "recorded" (`valstat.keras.Recorder`) or "imported" (`write_tables`).
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from valstat.errors import ValstatError

STORE_NAME = "valstat.sqlite"
SCHEMA_VERSION = 3   # PRAGMA user_version; 0 is a store written before versions were kept
# Run columns (name, SQL type) each step adds, bringing a store from version i to i + 1.
MIGRATIONS = (
    (),                                                        # 0 -> 1: version recorded
    (("augment_seed", "INTEGER"),),                            # 1 -> 2: fourth seed kind
    (("backend_version", "TEXT"), ("device", "TEXT")),         # 2 -> 3: the engine of a run
)
STORE_KINDS = ("sweep", "recorded", "imported")

RUN_COLUMNS = [
    "run_id", "experiment", "arm", "seed", "fold", "split_seed", "init_seed", "order_seed",
    "status", "wall_s", "n_train", "n_val", "n_truth", "epochs_run", "python_version",
    "tf_version", "keras_version", "backend", "finished_at", "val_examples", "train_examples",
    "augment_seed", "backend_version", "device",
]
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
    finished_at TEXT, val_examples TEXT, train_examples TEXT, augment_seed INTEGER,
    backend_version TEXT, device TEXT
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
        raise ValstatError(f"{path} is not a SQLite database (corrupted or not a valstat store); "
                        "move it aside or choose another --out folder")


#: Columns every valstat store's tables have had since the first schema.
REQUIRED_COLUMNS = {"runs": {"run_id", "arm", "seed", "fold"}, "epochs": {"run_id", "epoch"},
                    "predictions": {"run_id", "epoch", "example"}}


def _open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection. A store in WAL mode needs its -shm file beside it; in a folder
    this process cannot write, where SQLite cannot create it, the file is opened as immutable
    (nothing writes there while it is read)."""
    uri = path.resolve().as_uri()
    connection = None
    try:
        connection = sqlite3.connect(f"{uri}?mode=ro", uri=True)
        connection.execute("SELECT name FROM sqlite_master").fetchall()
        return connection
    except sqlite3.OperationalError:
        if connection is not None:
            connection.close()
        if os.access(path.parent, os.W_OK):
            raise
        return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True)


def _connect_readonly(path: Path) -> sqlite3.Connection:
    _check_sqlite_file(path)
    connection = None
    try:
        connection = _open_readonly(path)
        tables = {row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
        problems = [row[0] for row in connection.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.DatabaseError as error:
        if connection is not None:
            connection.close()
        raise ValstatError(f"{path} is damaged and cannot be read ({error}); "
                        "it was left untouched") from None
    if problems != ["ok"]:
        connection.close()
        first = problems[0].splitlines()[-1] if problems and problems[0] else "quick_check failed"
        raise ValstatError(f"{path} is damaged and cannot be read ({first}); it was left untouched: "
                        "restore it from a copy or choose another --out folder")
    missing = {"meta", "runs", "epochs", "predictions"} - tables
    if missing:
        connection.close()
        raise ValstatError(f"{path} is a SQLite file but not a valstat store "
                        f"(missing tables: {', '.join(sorted(missing))})")
    for table, required in REQUIRED_COLUMNS.items():
        lacking = required - {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
        if lacking:
            connection.close()
            raise ValstatError(f"{path} is a SQLite file but not a valstat store "
                            f"(table {table} has no column {', '.join(sorted(lacking))})")
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        connection.close()
        raise ValstatError(f"{path} was written by a newer valstat (store schema {version}, this "
                        f"version reads up to {SCHEMA_VERSION}); upgrade valstat to read it")
    return connection


def _read_meta(connection: sqlite3.Connection) -> dict:
    """The meta table as a dict, with `store_kind` filled in for stores written before it was
    kept (a config hash means a sweep; the Recorder's experiment name means recorded)."""
    meta = {key: json.loads(value) for key, value in
            connection.execute("SELECT key, value FROM meta").fetchall()}
    if meta and "store_kind" not in meta:
        meta["store_kind"] = ("sweep" if "config_hash" in meta
                              else "recorded" if meta.get("experiment") == "recorded"
                              else "imported")
    return meta


def require_kind(meta: dict | None, kind: str, out_dir, action: str) -> None:
    """Refuse (ValstatError) a store of another kind than `kind`; an empty or absent store passes.

    action: what the caller does with the store, for the message ("train a sweep into")."""
    found = (meta or {}).get("store_kind", kind)
    if found != kind:
        raise ValstatError(f"{out_dir} holds a {found} store; cannot {action} it "
                        "(use another folder)")


class Store:
    """Read-write access to one output folder's store."""

    def __init__(self, out_dir: str | Path, create: bool = True):
        self.path = store_path(out_dir)
        if self.path.exists():
            _connect_readonly(self.path).close()
        elif not create:
            raise ValstatError(f"no valstat store in {out_dir} (expected {self.path}); "
                            "run `valstat run --out DIR` first")
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise ValstatError(f"cannot create output folder {self.path.parent}: "
                                f"{error.strerror}") from None
        try:
            self.connection = sqlite3.connect(self.path, timeout=30)
            self.connection.execute("PRAGMA journal_mode=WAL")
            self._migrate()
        except sqlite3.OperationalError as error:
            raise ValstatError(f"cannot write the store {self.path}: {error}") from None

    def _migrate(self) -> None:
        """Create the tables, or move an older store forward in its recorded steps, atomically."""
        connection = self.connection
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        has_runs = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='runs'").fetchone()
        if not has_runs:
            connection.executescript(SCHEMA)
        elif version >= SCHEMA_VERSION:
            return
        connection.execute("BEGIN IMMEDIATE")
        try:
            present = {row[1] for row in connection.execute("PRAGMA table_info(runs)")}
            for steps in MIGRATIONS[version:] if has_runs else ():
                for name, kind in steps:
                    if name not in present:   # unversioned stores may hold a later column
                        connection.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def meta(self) -> dict:
        return _read_meta(self.connection)

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
        return _read_meta(connection)
    finally:
        connection.close()


def read_stored_runs(out_dir: str | Path) -> dict:
    """run_id -> wall_s of the runs in an existing store (read-only); {} if there is none."""
    path = store_path(out_dir)
    if not path.exists():
        return {}
    connection = _connect_readonly(path)
    try:
        return dict(connection.execute("SELECT run_id, wall_s FROM runs").fetchall())
    finally:
        connection.close()


def load_tables(out_dir: str | Path) -> StoreTables:
    """Read a whole store (read-only, never modifies the file) into DataFrames.

    All tables come from one read transaction, so a sweep writing meanwhile (WAL mode) is seen
    as it was at one moment: no run's epochs without its row, or the reverse."""
    path = store_path(out_dir)
    if not path.exists():
        raise ValstatError(f"no valstat store in {out_dir} (expected {path}); "
                        "run `valstat run --out DIR` first")
    connection = _connect_readonly(path)
    try:
        connection.execute("BEGIN")
        meta = _read_meta(connection)
        runs = pd.read_sql_query("SELECT * FROM runs ORDER BY arm, seed, fold", connection)
        runs = runs.reindex(columns=[*RUN_COLUMNS, *runs.columns.difference(RUN_COLUMNS)])
        epochs = pd.read_sql_query("SELECT * FROM epochs ORDER BY run_id, epoch", connection)
        predictions = pd.read_sql_query(
            "SELECT * FROM predictions ORDER BY run_id, epoch, example", connection)
        connection.rollback()
    except sqlite3.DatabaseError as error:
        raise ValstatError(f"{path} is damaged and cannot be read ({error}); "
                        "it was left untouched") from None
    finally:
        connection.close()
    return StoreTables(runs=runs, epochs=epochs, predictions=predictions, meta=meta)


def _export(out_dir, dest, suffix: str, write) -> list[Path]:
    tables = load_tables(out_dir)
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValstatError(f"cannot create {dest}: {error.strerror}") from None
    written = []
    for name, frame in (("runs", tables.runs), ("epochs", tables.epochs),
                        ("predictions", tables.predictions)):
        target = dest / f"{name}.{suffix}"
        write(frame, target)
        written.append(target)
    return written


def export_csv(out_dir: str | Path, dest: str | Path) -> list[Path]:
    """Write runs.csv, epochs.csv and predictions.csv (GUIDE §2 columns) into `dest`."""
    return _export(out_dir, dest, "csv", lambda frame, target: frame.to_csv(target, index=False))


def export_parquet(out_dir: str | Path, dest: str | Path) -> list[Path]:
    """Write runs.parquet, epochs.parquet and predictions.parquet into `dest` (needs pyarrow)."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ValstatError("--parquet needs pyarrow: pip install \"valstat[parquet]\"") from None
    return _export(out_dir, dest, "parquet",
                   lambda frame, target: frame.to_parquet(target, index=False))


def write_tables(out_dir: str | Path, runs: pd.DataFrame, epochs: pd.DataFrame,
                 predictions: pd.DataFrame, meta: dict) -> int:
    """Write tidy tables (the columns above) into the store at `out_dir`, one transaction per
    run, skipping runs already stored. The store's kind is meta's `store_kind`, else "imported".
    Returns how many runs were written."""
    epochs_by_run = dict(tuple(epochs.groupby("run_id")))
    predictions_by_run = dict(tuple(predictions.groupby("run_id")))
    empty_epochs = pd.DataFrame(columns=EPOCH_COLUMNS)
    empty_predictions = pd.DataFrame(columns=PREDICTION_COLUMNS)
    written = 0
    meta = {"store_kind": "imported", **meta}
    with Store(out_dir) as store:
        require_kind(store.meta(), meta["store_kind"], out_dir, "import tables into")
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
