"""The TensorFlow path's two speed-ups keep the curves of the path before them, bit for bit:
compile once (a worker's reused compiled model instead of one built and compiled per run) and
the compiled epoch loop (all of an epoch's steps in one traced graph instead of Keras's model.fit
loop), with or without augmentation, however the epoch is cut into chunks."""

from __future__ import annotations

from dataclasses import replace

from conftest import TINY
from valstat.config import AugmentConfig, load_experiment
from valstat.data import load_dataset
from valstat.splits import plan_runs


def tiny_specs(tmp_path, seeds=2):
    experiment = load_experiment(str(TINY), {"seeds": seeds})
    dataset = load_dataset("digits", 16, tmp_path)
    return plan_runs(experiment, dataset.labels, dataset.n_classes, str(tmp_path))


def assert_same_runs(records, reference):
    expected = {record.run["run_id"]: record for record in reference}
    for record in records:
        want = expected[record.run["run_id"]]
        assert record.epochs == want.epochs
        assert record.predictions == want.predictions
        assert record.run["status"] == want.run["status"]


def test_compile_once_and_the_epoch_loop_give_the_runs_of_keras_fit(tmp_path):
    from valstat import train

    specs = tiny_specs(tmp_path)            # 2 arms (plain, batch-norm) x 2 seeds
    old_path = [train.train_one_run(spec, threads=1, reuse=False, keras_fit=True)
                for spec in specs]
    train._COMPILED.clear()
    # interleave arms and seeds, and run one spec twice: the reset must be complete every time
    order = [specs[0], specs[2], specs[1], specs[3], specs[0]]
    reused = [train.train_one_run(spec, threads=1, reuse=True) for spec in order]
    assert len(train._COMPILED) == 2        # one compiled model per arm, not per run
    assert_same_runs(reused, old_path)
    # different seeds really differ (the reset is not a no-op)
    assert reused[0].epochs != reused[2].epochs
    # 120 training images in batches of 32: the last batch of 24 is trained too
    assert all(len(record.epochs) == 3 for record in reused)


def test_the_epoch_loop_matches_keras_fit_with_augmentation_and_small_chunks(tmp_path,
                                                                             monkeypatch):
    from valstat import train

    spec = tiny_specs(tmp_path, seeds=1)[0]
    arm = replace(spec.arm, augment=AugmentConfig(horizontal_flip=True, rotation_range=15.0))
    spec = replace(spec, arm=arm, run_id="flip/" + spec.run_id)
    by_fit = train.train_one_run(spec, threads=1, keras_fit=True)
    whole_epochs = train.train_one_run(spec, threads=1)
    # one batch of 16 px images per compiled call: 4 calls per epoch instead of 1
    monkeypatch.setattr(train, "CHUNK_BYTES", 32 * 16 * 16 * 3 * 4)
    chunked = train.train_one_run(spec, threads=1)
    assert_same_runs([whole_epochs, chunked], [by_fit])
    plain = train.train_one_run(replace(spec, arm=replace(arm, augment=AugmentConfig())),
                                threads=1)
    assert plain.epochs != by_fit.epochs    # the augmentation reached the training images
