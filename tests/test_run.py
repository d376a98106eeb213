"""End-to-end `valstat run` on real data: stored curves, lattice, resume, export, determinism."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import numpy as np
import pandas as pd
import pytest

from conftest import TINY, valstat, write_image_folder
from valstat.store import load_tables, read_meta, store_path


def test_sweep_stores_every_run_epoch_and_prediction(tiny_sweep):
    tables = load_tables(tiny_sweep)
    runs, epochs, predictions = tables.runs, tables.epochs, tables.predictions
    assert sorted(runs.run_id) == sorted(f"{arm}/s{seed}/f0" for arm in ("plain", "batchnorm")
                                         for seed in (0, 1))
    assert set(runs.status) <= {"finished", "diverged"}
    assert (runs[["split_seed", "init_seed", "order_seed"]].to_numpy().T == runs.seed.to_numpy()).all()
    assert runs.python_version.notna().all() and runs.keras_version.notna().all()
    assert runs.tf_version.notna().all() and (runs.wall_s > 0).all()
    assert len(epochs) == 4 * 3 and set(epochs.epoch) == {0, 1, 2}
    assert len(predictions) == 4 * 3 * 30
    assert epochs.learning_rate.iloc[0] == pytest.approx(0.001)
    assert tables.meta["arms"] == ["plain", "batchnorm"]


def test_val_accuracy_is_share_of_correct_predictions_on_the_lattice(tiny_sweep):
    tables = load_tables(tiny_sweep)
    correct = (tables.predictions.assign(ok=lambda d: d.label == d.predicted)
               .groupby(["run_id", "epoch"]).ok.agg(["mean", "size"]).reset_index())
    merged = tables.epochs.merge(correct, on=["run_id", "epoch"])
    assert len(merged) == len(tables.epochs)
    assert np.array_equal(merged.val_accuracy.to_numpy(), merged["mean"].to_numpy())
    k = merged.val_accuracy * merged["size"]
    assert np.allclose(k, np.round(k), atol=1e-12)
    # val_loss is the mean cross-entropy of the stored per-image p_true (Keras clips at 1e-7)
    losses = (tables.predictions.assign(ce=lambda d: -np.log(np.clip(d.p_true, 1e-7, 1)))
              .groupby(["run_id", "epoch"]).ce.mean().reset_index())
    merged = tables.epochs.merge(losses, on=["run_id", "epoch"])
    assert np.allclose(merged.val_loss, merged.ce, rtol=1e-9)


def test_truth_set_never_overlaps_training_or_validation_images(tiny_sweep):
    tables = load_tables(tiny_sweep)
    assert tables.epochs.truth_accuracy.notna().all()
    for _, run in tables.runs.iterrows():
        truth = set(tables.meta["truth_examples"][run.arm])
        train, val = set(json.loads(run.train_examples)), set(json.loads(run.val_examples))
        assert len(truth) == 100 and len(train) == 120 and len(val) == 30
        assert not truth & train and not truth & val and not train & val
    # truth accuracy is a share of 100 images
    k = tables.epochs.truth_accuracy * 100
    assert np.allclose(k, np.round(k))


def test_rerun_resumes_and_more_seeds_add_runs(tmp_path):
    out = tmp_path / "store"
    first = valstat("run", TINY, "--seeds", "1", "--epochs", "2", "--out", out, "--quiet",
                    "--workers", "1")
    assert first.returncode == 0, first.stderr
    again = valstat("run", TINY, "--seeds", "1", "--epochs", "2", "--out", out, "--quiet")
    assert again.returncode == 0 and "0 runs trained, 2 already stored" in again.stdout
    more = valstat("run", TINY, "--seeds", "2", "--epochs", "2", "--out", out, "--quiet",
                   "--workers", "1")
    assert more.returncode == 0 and "2 runs trained, 2 already stored" in more.stdout
    with sqlite3.connect(store_path(out)) as connection:
        assert connection.execute("SELECT COUNT(*) FROM runs").fetchone() == (4,)
        assert connection.execute("SELECT COUNT(*) FROM epochs").fetchone() == (8,)
        assert connection.execute(
            "SELECT COUNT(*) FROM (SELECT DISTINCT run_id, epoch FROM epochs)").fetchone() == (8,)
    # fewer seeds than the store was planned with: nothing to train, and the plan stays at 2
    fewer = valstat("run", TINY, "--seeds", "1", "--epochs", "2", "--out", out, "--quiet")
    assert fewer.returncode == 0 and "0 runs trained, 2 already stored" in fewer.stdout
    assert "was planned for 2 seeds and holds 4 runs; this command asks for only 1 seed, so" in fewer.stdout
    assert read_meta(out)["sweep"]["seeds"] == 2
    dry = valstat("run", TINY, "--seeds", "1", "--epochs", "2", "--out", out, "--dry-run")
    assert dry.returncode == 0 and "was planned for 2 seeds" in dry.stdout


def test_user_folder_end_to_end_and_export(tmp_path):
    data = write_image_folder(tmp_path / "photos", classes=("cats", "dogs", "猫"), per_class=16)
    out = tmp_path / "out"
    result = valstat("run", TINY, "--data", "photos", "--seeds", "1", "--epochs", "2",
                     "--val-size", "9", "--out", out, "--quiet", "--workers", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    tables = load_tables(out)
    # the folder is stored as an absolute path, so reports find it from any folder
    assert {config["data"]["source"] for config in tables.meta["arms_config"].values()} == {
        str(data.resolve())}
    assert str(data.resolve()) in tables.meta["description"]
    assert "built-in digits (430 training" not in tables.meta["description"]
    plan = valstat("run", TINY, "--data", data, "--seeds", "1", "--epochs", "2", "--val-size",
                   "9", "--out", out, "--workers", "1", "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert (f"data: 48 images in 3 classes ({data.resolve()}); each run of plain, batchnorm "
            "uses 39 training, 9 validation and 0 truth-set images\n") in plan.stdout
    assert tables.meta["dataset"]["class_names"] == ["cats", "dogs", "猫"]
    assert tables.meta["dataset"]["class_counts"] == {"cats": 16, "dogs": 16, "猫": 16}
    assert (tables.runs.n_val == 9).all() and (tables.runs.n_train == 39).all()
    assert (tables.runs.n_truth == 0).all() and tables.epochs.truth_accuracy.isna().all()
    labels = tables.predictions.groupby("label").example.nunique()
    assert labels.to_dict() == {0: 3, 1: 3, 2: 3}      # stratified: 3 of each class

    exported = valstat("export", out, "--csv", tmp_path / "csv")
    assert exported.returncode == 0, exported.stderr
    runs = pd.read_csv(tmp_path / "csv" / "runs.csv")
    assert list(runs.columns[:8]) == ["run_id", "experiment", "arm", "seed", "fold",
                                      "split_seed", "init_seed", "order_seed"]
    assert list(pd.read_csv(tmp_path / "csv" / "epochs.csv").columns[:7]) == [
        "run_id", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"]
    assert list(pd.read_csv(tmp_path / "csv" / "predictions.csv").columns) == [
        "run_id", "epoch", "example", "label", "predicted", "p_true"]


def test_folds_give_disjoint_validation_sets(tmp_path):
    out = tmp_path / "folds"
    result = valstat("run", TINY, "--seeds", "1", "--folds", "3", "--epochs", "1",
                     "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    runs = load_tables(out).runs
    for _, arm_runs in runs.groupby("arm"):
        sets = [set(json.loads(v)) for v in arm_runs.val_examples]
        assert len(sets) == 3 and all(len(s) == 30 for s in sets)
        assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    # arms share the split: the same validation images for the same seed and fold
    by_arm = runs.pivot(index="fold", columns="arm", values="val_examples")
    assert (by_arm["plain"] == by_arm["batchnorm"]).all()


def test_same_seed_and_fold_give_bit_identical_curves(tmp_path):
    from valstat.config import load_experiment
    from valstat.data import load_dataset
    from valstat.splits import plan_runs
    from valstat.train import train_one_run

    experiment = load_experiment(str(TINY), {"seeds": 1, "epochs": 2})
    dataset = load_dataset("digits", 16, tmp_path)
    spec = plan_runs(experiment, dataset.labels, dataset.n_classes, str(tmp_path))[1]
    first, second = train_one_run(spec, threads=1), train_one_run(spec, threads=1)

    def digest(record):
        return hashlib.sha256(repr((record.epochs, record.predictions)).encode()).hexdigest()

    assert first.epochs == second.epochs and digest(first) == digest(second)


def test_holdout_carves_a_stratified_truth_set_from_user_data(tmp_path):
    data = write_image_folder(tmp_path / "photos", classes=("a", "b"), per_class=20)
    out = tmp_path / "out"
    result = valstat("run", TINY, "--data", data, "--holdout", "0.25", "--seeds", "1",
                     "--epochs", "2", "--val-size", "6", "--out", out, "--quiet",
                     "--workers", "1")
    assert result.returncode == 0, result.stderr
    tables = load_tables(out)
    truth = set(tables.meta["truth_examples"]["plain"])
    assert len(truth) == 10 and (tables.runs.n_truth == 10).all()
    assert (tables.runs.n_train == 24).all()
    for _, run in tables.runs.iterrows():
        assert not truth & set(json.loads(run.train_examples))
        assert not truth & set(json.loads(run.val_examples))
    k = tables.epochs.truth_accuracy * 10
    assert np.allclose(k, np.round(k))
