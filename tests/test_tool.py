"""valstat as a tool: version, shipped experiments, quiet runs, one writer per store, --set,
--dry-run, consistent reads, the notebook API, TensorBoard input and Parquet export."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import tomllib
from importlib.metadata import version

import pandas as pd
import pytest

from conftest import TINY, dead_pid, valstat, valstat_with_failing_arms
from test_bad_input import assert_one_line_error
from valstat.config import load_experiment
from valstat.errors import ValstatError
from valstat.history import read_history
from valstat.lock import LOCK_NAME, StoreLock
from valstat.store import load_tables, read_meta, store_path, write_tables

HEAVY = "heavy = sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)"


def python(code: str, *args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


def write_lock(out, pid, started="2026-01-02T03:04:05+00:00"):
    out.mkdir(parents=True, exist_ok=True)
    (out / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname(),
                                             "started": started}))


def files(folder):
    """name -> modification time, leaving out SQLite's own -wal/-shm files (a reader opens them)."""
    return {p.name: p.stat().st_mtime_ns for p in folder.rglob("*")
            if not p.name.endswith(("-wal", "-shm"))}


@pytest.fixture(scope="module")
def set_store(tmp_path_factory):
    """A tiny sweep (2 runs, 1 epoch) with two --set overrides, over a stale lock."""
    out = tmp_path_factory.mktemp("set_store")
    write_lock(out, dead_pid())
    result = valstat("run", TINY, "--seeds", "1", "--epochs", "1", "--out", out,
                     "--set", "training.learning_rate=1e-4", "--set", "schedule.monitor=val_loss")
    return out, result


def test_version_comes_from_package_metadata():
    expected = f"valstat {version('valstat')}\n"
    for command in (["-m", "valstat", "--version"], ["-m", "valstat.cli", "--version"]):
        result = subprocess.run([sys.executable, *command], capture_output=True, text=True)
        assert result.returncode == 0 and result.stdout == expected, result


def test_shipped_experiments_are_found_by_name_and_listed_when_missing(tmp_path):
    for name in ("default", "seed_question", "val_size"):
        assert load_experiment(name).source_file == f"{name}.toml (shipped)"
    result = valstat("run", "no_such_experiment", cwd=tmp_path)
    assert_one_line_error(result, "not found", "default, seed_question, val_size")


def test_run_is_quiet_prints_a_line_per_run_and_records_the_settings(set_store):
    out, result = set_store
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""       # no TensorFlow/absl/oneDNN/Dask lines
    lines = result.stdout.splitlines()
    assert lines[0].startswith("valstat: training on tensorflow")   # the engine, once
    lines = lines[1:]
    assert sorted(line.split()[1] for line in lines[:2]) == ["batchnorm/s0/f0", "plain/s0/f0"]
    assert all("finished" in line for line in lines[:2])
    assert lines[-1].startswith("2 runs trained, 0 already stored, 0 diverged; 2/2 runs in")
    assert not (out / LOCK_NAME).exists()     # the stale lock was taken over, then released
    tables = load_tables(out)
    assert tables.epochs.learning_rate.tolist() == pytest.approx([1e-4] * len(tables.epochs))
    settings = ["training.learning_rate=1e-4", "schedule.monitor=val_loss"]
    assert tables.meta["settings"] == settings
    assert tables.meta["arms_config"]["plain"]["schedule"]["monitor"] == "val_loss"
    overridden = load_experiment(str(TINY), {"epochs": 1, "settings": settings})
    assert tables.meta["config_hash"] == overridden.config_hash() != \
        load_experiment(str(TINY), {"epochs": 1}).config_hash()


def test_a_store_with_a_live_writer_is_refused_in_one_line(set_store, tmp_path):
    out, _ = set_store
    before = store_path(out).read_bytes()
    with StoreLock(out):
        started = json.loads((out / LOCK_NAME).read_text())["started"]
        result = valstat("run", TINY, "--seeds", "2", "--epochs", "1", "--out", out,
                         "--set", "training.learning_rate=1e-4", "--set",
                         "schedule.monitor=val_loss")
    assert_one_line_error(result, f"process {os.getpid()}", f"since {started}", "--wait")
    assert store_path(out).read_bytes() == before


def test_wait_takes_over_when_the_writer_ends_and_states_the_true_count(set_store):
    out, _ = set_store
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from valstat.lock import "
                               "StoreLock; StoreLock(sys.argv[1]).acquire(); print(flush=True); "
                               "time.sleep(3)", out], stdout=subprocess.PIPE)
    holder.stdout.readline()                         # it holds the lock (and never releases it)
    started = time.monotonic()
    result = valstat("run", TINY, "--seeds", "1", "--epochs", "1", "--out", out, "--wait",
                     "--set", "training.learning_rate=1e-4", "--set", "schedule.monitor=val_loss")
    holder.wait()
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 2.5
    assert "0 runs trained, 2 already stored, 0 diverged; 2/2 runs in" in result.stdout


def test_dry_run_reports_plan_and_stored_timing_without_writing(set_store):
    out, _ = set_store
    before = files(out)
    result = valstat("run", TINY, "--seeds", "3", "--epochs", "1", "--out", out, "--dry-run",
                     "--set", "training.learning_rate=1e-4", "--set", "schedule.monitor=val_loss")
    assert result.returncode == 0, result.stderr
    text, _, tail = result.stdout.partition("\n\ndata: ")
    resolved = tomllib.loads(text)
    assert resolved["sweep"]["seeds"] == 3
    assert resolved["arms"]["batchnorm"]["model"]["batch_norm"] is True
    assert resolved["arms"]["plain"]["training"]["learning_rate"] == 1e-4
    # tiny.toml: train_size 120, val_size 30, truth_size 100 of scikit-learn's 1797 digits
    assert tail.startswith("1797 images in 10 classes (digits); each run of plain, batchnorm "
                           "uses 120 training, 30 validation and 100 truth-set images\n"
                           "6 runs planned, 2 already stored in")
    stored_mean = load_tables(out).runs.wall_s.mean()
    assert f"({stored_mean:.1f} s per run, mean of the stored runs)" in tail
    assert files(out) == before
    assert len(load_tables(out).runs) == 2


@pytest.mark.parametrize("fused, walls, expected, asked_epochs", [
    # a short first run is mostly compilation: compilation is its excess over a compiled 1-epoch
    # run; a compiled run short at its full epochs (TINY trains 3) is then timed whole
    (False, {1: [5.0, 0.4], 3: [1.1]}, (1.1, 5.0 - 0.4), [1, 1, 3]),
    # a long compiled run (12 s x 3 epochs > TIME_WHOLE_BELOW_S): the compiled 1-epoch run plus
    # 2 more epochs at the compiled 2- minus 1-epoch difference
    (False, {1: [25.0, 12.0], 2: [20.0]}, (12.0 + 2 * 8.0, 13.0), [1, 1, 2]),
    # a long first run (large images): compilation is a small part of it, scaled as it is
    (False, {1: [40.0]}, (3 * 40.0, 0.0), [1]),
    # a fused pack is always retimed: its first epoch holds the pack's compilation
    (True, {1: [40.0, 2.0], 3: [5.0]}, (5.0, 38.0), [1, 1, 3]),
    (True, {1: [40.0, 12.0], 2: [20.0]}, (12.0 + 2 * 8.0, 28.0), [1, 1, 2]),
])
def test_dry_run_time_per_task_does_not_scale_compilation_by_the_epochs(tmp_path, monkeypatch,
                                                                        fused, walls, expected, asked_epochs):
    from valstat import execute, train
    from valstat.data import load_dataset
    from valstat.engine import fused as fused_engine
    from valstat.splits import plan_runs

    experiment = load_experiment(str(TINY), {})
    dataset = load_dataset("digits", 16, tmp_path)
    specs = plan_runs(experiment, dataset.labels, dataset.n_classes, str(tmp_path))[:2]
    asked = []

    class Record:
        def __init__(self, wall_s):
            self.run = {"wall_s": wall_s}

    def timed_run(short, threads):
        asked.append(short.arm.training.epochs)
        return Record(walls[short.arm.training.epochs].pop(0))

    def timed_pack(short, threads):            # each run's wall_s is the pack's time / K
        asked.append(short[0].arm.training.epochs)
        seconds = walls[short[0].arm.training.epochs].pop(0)
        return [Record(seconds / len(short)) for _ in short]

    monkeypatch.setattr(train, "train_one_run", timed_run)
    monkeypatch.setattr(fused_engine, "train_pack", timed_pack)
    task = specs if fused else specs[:1]
    assert execute._measure(task, fused, 1, False) == pytest.approx(expected)
    assert asked == asked_epochs


@pytest.mark.parametrize("tasks, workers, start, expected", [
    ([2.0] * 40, 2, 0.0, 40.0),              # runs shared evenly
    ([30.0, 30.0], 2, 5.0, 35.0),            # one pack per arm, each on its own worker
    ([30.0], 2, 5.0, 35.0),                  # one pack is not split between workers
    ([30.0, 10.0, 10.0, 10.0], 2, 0.0, 30.0),  # the long task alone, the short ones beside it
])
def test_dry_run_estimate_is_the_busiest_workers_share(tasks, workers, start, expected):
    from valstat.execute import SweepPlan

    plan = SweepPlan(planned=len(tasks), stored=0, workers=workers, run_s=1.0,
                     run_s_source="measured", task_s=tasks, start_s=start)
    assert plan.estimate_s == pytest.approx(expected)


@pytest.mark.parametrize("setting, fragment", [
    ("training.learning_rate=abc", "must be a number, got 'abc'"),
    ("training.optimizer=adamw", "must be one of adam, sgd, rmsprop"),
    ("training.lr=1", "unknown key 'lr'"),
    ("trainin.epochs=3", "unknown section 'trainin'"),
    ("learning_rate", "expects SECTION.KEY=VALUE"),
    ("arms.nope.training.epochs=2", "no arm 'nope'"),
    ("training.epochs=0", "at least 1"),
    ("model.dropout=1.5", "[model] dropout of arm 'plain' must be a fraction in [0, 1), got 1.5"),
    ("schedule.factor=1.0", "[schedule] factor of arm 'plain' must be a fraction in (0, 1)"),
    ("schedule.min_lr=-1e-5", "[schedule] min_lr of arm 'plain' must be 0 or more"),
    ("training.momentum=1.5", "[training] momentum of arm 'plain' must be in [0, 1]"),
    ("data.holdout=0.2", "--holdout keeps part of your own images (--data) aside"),
])
def test_bad_set_is_one_line_and_writes_nothing(tmp_path, setting, fragment):
    result = valstat("run", TINY, "--out", tmp_path / "out", "--set", setting, "--dry-run")
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "out").exists()


def test_a_failing_run_is_one_line_naming_it_and_the_same_command_resumes(tmp_path):
    out = tmp_path / "out"
    args = ("run", TINY, "--seeds", "1", "--epochs", "1", "--out", out, "--quiet")
    result = valstat_with_failing_arms(("plain",), tmp_path / "site", *args)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors == ["valstat: error: run plain/s0/f0 failed on a worker: "
                      "ValueError: injected failure of arm plain"], result.stderr
    assert ("1 run trained, 0 already stored, 0 diverged, 1 failed; 1/2 runs in "
            f"{out}. Fix the error above and run the same command again") in result.stdout
    assert "Next: valstat report" not in result.stdout
    assert list(load_tables(out).runs.run_id) == ["batchnorm/s0/f0"]
    again = valstat(*args)
    assert again.returncode == 0, again.stderr
    assert "1 run trained, 1 already stored, 0 diverged; 2/2 runs in" in again.stdout


def test_a_store_whose_every_run_failed_is_taken_over_by_a_corrected_config(tmp_path):
    out = tmp_path / "out"
    args = ("run", TINY, "--seeds", "1", "--epochs", "1", "--out", out, "--quiet")
    failed = valstat_with_failing_arms(("plain", "batchnorm"), tmp_path / "site", *args,
                                       "--set", "training.learning_rate=2e-3")
    assert failed.returncode == 1 and load_tables(out).runs.empty
    corrected = valstat(*args)
    assert corrected.returncode == 0, corrected.stderr
    assert sorted(load_tables(out).runs.run_id) == ["batchnorm/s0/f0", "plain/s0/f0"]
    assert read_meta(out)["config_hash"] == load_experiment(str(TINY), {"seeds": 1, "epochs": 1}
                                                            ).config_hash()


def test_a_store_of_another_config_is_refused_naming_what_differs(tmp_path):
    args = ("run", TINY, "--seeds", "1", "--epochs", "1", "--out", tmp_path, "--quiet")
    first = valstat(*args, "--set", "arms.batchnorm.model.dropout=0.4")
    assert first.returncode == 0, first.stderr
    assert_one_line_error(valstat(*args), "holds runs of a different experiment config "
                          f"('tiny', {TINY}): arms.batchnorm.model.dropout 0.4 -> 0.5; use "
                          "another --out folder")
    assert len(load_tables(tmp_path).runs) == 2


def test_a_read_sees_one_moment_of_a_store_being_written(tmp_path, monkeypatch):
    from valstat.synthetic import fake_store

    runs, epochs, predictions, meta, _ = fake_store(seeds=2, folds=1, epochs=3, seed=1)
    first = runs.run_id.iloc[0]
    write_tables(tmp_path, runs[runs.run_id == first], epochs, predictions, meta)
    real_read = pd.read_sql_query

    def read_then_write(sql, connection):   # a sweep commits a run between two table reads
        frame = real_read(sql, connection)
        if "FROM runs" in sql:
            write_tables(tmp_path, runs[runs.run_id != first], epochs, predictions, meta)
        return frame

    monkeypatch.setattr(pd, "read_sql_query", read_then_write)
    tables = load_tables(tmp_path)
    assert set(tables.runs.run_id) == set(tables.epochs.run_id) == {first}
    monkeypatch.undo()
    assert len(load_tables(tmp_path).runs) == len(runs)


NOTEBOOK = """
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import valstat
tables = valstat.load(sys.argv[1])
summary = valstat.summarize(tables)
fig, ax = plt.subplots()
drawn = valstat.plot(tables, "learning_rate", ax=ax)
fig2, axes = plt.subplots(1, 2)
valstat.plot(tables, "accuracy_distribution", ax=axes)
try:
    tables.meta.experiment = "x"
    frozen = False
except AttributeError:
    frozen = True
""" + HEAVY + """
print(json.dumps({"summary": summary.to_dict(), "heavy": heavy,
                  "same_figure": drawn is fig,
                  "lines": len(ax.get_lines()) + len(ax.collections),
                  "panels_used": [len(a.get_lines()) + len(a.collections) for a in axes],
                  "runs": len(tables.runs), "epochs": len(tables.epochs),
                  "predictions": len(tables.predictions), "arms": list(tables.meta.arms),
                  "frozen": frozen}))
"""


def test_notebook_api_loads_summarizes_and_draws_into_given_axes_without_tensorflow(tmp_path):
    from valstat.synthetic import fake_store

    runs, epochs, predictions, meta, _ = fake_store(seeds=3, folds=1, epochs=4, seed=3)
    write_tables(tmp_path, runs, epochs, predictions, meta)
    result = python(NOTEBOOK, tmp_path)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    assert got["heavy"] == [] and got["same_figure"] and got["lines"] > 0 and got["frozen"]
    assert all(count > 0 for count in got["panels_used"])
    assert (got["runs"], got["epochs"], got["predictions"]) == \
        (len(runs), len(epochs), len(predictions))
    assert got["arms"] == meta["arms"]
    stats = valstat("stats", tmp_path, "--json")
    assert got["summary"] == json.loads(stats.stdout)
    import valstat as api

    with pytest.raises(ValstatError, match=r"drawn from the image files by `valstat report`"):
        api.plot(api.load(tmp_path), "unstable_images")


TENSORBOARD_FIT = """
import json, os, sys
import numpy as np, keras
rng = np.random.default_rng(0)
x = rng.normal(size=(80, 4)).astype("float32"); y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int32")
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
history = model.fit(x[:60], y[:60], validation_data=(x[60:], y[60:]), epochs=6, verbose=0,
                    callbacks=[keras.callbacks.TensorBoard(log_dir=sys.argv[1]),
                               keras.callbacks.ReduceLROnPlateau(monitor="val_accuracy",
                                                                 factor=0.1, patience=1)])
print(json.dumps({k: [float(v) for v in values] for k, values in history.history.items()}))
"""

DIAGNOSE_PROBE = """
import sys
from valstat.cli import main
code = main(sys.argv[1:])
""" + HEAVY + """
print("HEAVY:" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


def test_diagnose_reads_a_keras_tensorboard_log_without_tensorflow(tmp_path):
    fit = python(TENSORBOARD_FIT, tmp_path / "logs", timeout=600)
    assert fit.returncode == 0, fit.stderr[-2000:]
    history = json.loads(fit.stdout.splitlines()[-1])
    for target in (tmp_path / "logs" / "validation", tmp_path / "logs"):
        result = python(DIAGNOSE_PROBE, "diagnose", target, "--json")
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip().endswith("HEAVY:")
        curve = pd.DataFrame(json.loads(result.stdout)["epochs"])
        assert list(curve["epoch"]) == list(range(6))
        assert curve["val_accuracy"].tolist() == pytest.approx(history["val_accuracy"], rel=1e-6)
        read = read_history(target)
        for column in ("val_accuracy", "val_loss", "loss", "accuracy", "learning_rate"):
            assert read[column].tolist() == pytest.approx(history[column], rel=1e-6), column
    event_file = next((tmp_path / "logs" / "validation").glob("*tfevents*"))
    result = python(DIAGNOSE_PROBE, "diagnose", event_file, "--json")
    assert result.returncode == 0, result.stderr
    assert pd.DataFrame(json.loads(result.stdout)["epochs"])["val_accuracy"].tolist() == \
        pytest.approx(history["val_accuracy"], rel=1e-6)


MISSING = """
import sys
sys.modules[sys.argv[1]] = None      # as if the optional package were not installed
from valstat.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_missing_optional_packages_name_their_extra(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "events.out.tfevents.1.host").write_bytes(b"")
    result = python(MISSING, "tensorboard", "diagnose", tmp_path / "logs")
    assert_one_line_error(result, 'pip install "valstat[tensorboard]"')
    from valstat.synthetic import fake_store

    write_tables(tmp_path / "store", *fake_store(seeds=2, folds=1, epochs=2, seed=0)[:4])
    result = python(MISSING, "pyarrow", "export", tmp_path / "store", "--parquet", tmp_path / "pq")
    assert_one_line_error(result, 'pip install "valstat[parquet]"')


def test_garbage_event_file_is_one_line(tmp_path):
    (tmp_path / "events.out.tfevents.1.host").write_bytes(
        (40).to_bytes(8, "little") + b"\0" * 4 + b"\xff" * 40 + b"\0" * 4)
    result = valstat("diagnose", tmp_path)
    assert_one_line_error(result, "not a readable TensorBoard event file")
    (tmp_path / "events.out.tfevents.1.host").write_text("junk\n")    # shorter than one record
    result = valstat("diagnose", tmp_path / "events.out.tfevents.1.host")
    assert_one_line_error(result, "not a readable TensorBoard event file (no records)")


def test_export_parquet_beside_csv(tmp_path):
    from valstat.synthetic import fake_store

    runs, epochs, predictions, meta, _ = fake_store(seeds=2, folds=1, epochs=3, seed=4)
    write_tables(tmp_path / "store", runs, epochs, predictions, meta)
    result = valstat("export", tmp_path / "store", "--parquet", tmp_path / "pq",
                     "--csv", tmp_path / "csv")
    assert result.returncode == 0, result.stderr
    tables = load_tables(tmp_path / "store")
    for name in ("runs", "epochs", "predictions"):
        frame = pd.read_parquet(tmp_path / "pq" / f"{name}.parquet")
        pd.testing.assert_frame_equal(frame, getattr(tables, name))
        assert (tmp_path / "csv" / f"{name}.csv").exists()
    assert read_meta(tmp_path / "store") == tables.meta


def test_store_lock_is_released_when_a_sweep_fails(tmp_path):
    result = valstat("run", TINY, "--out", tmp_path, "--data", tmp_path / "missing", "--quiet")
    assert_one_line_error(result)
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_relative_image_folder_in_an_experiment_file_is_beside_that_file(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "photos").mkdir(parents=True)
    (project / "exp.toml").write_text('[data]\nsource = "photos"\n[arms.a]\n[arms.b.data]\nsource = "../project/photos"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    experiment = load_experiment("../project/exp.toml")
    sources = {arm.name: arm.data.source for arm in experiment.arms}
    assert sources == {"a": str(project / "photos"), "b": str(project / "photos")}
    # --data on the command line stays relative to the working folder
    assert load_experiment("../project/exp.toml", {"data": "mine"}).arms[0].data.source == str(elsewhere / "mine")
