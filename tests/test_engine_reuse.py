"""Compile once (TensorFlow path): a worker's reused compiled model gives the same curves,
bit for bit, as a model built and compiled for the run."""

from __future__ import annotations


from conftest import TINY
from valstat.config import load_experiment
from valstat.data import load_dataset
from valstat.splits import plan_runs


def tiny_specs(tmp_path, seeds=2):
    experiment = load_experiment(str(TINY), {"seeds": seeds})
    dataset = load_dataset("digits", 16, tmp_path)
    return plan_runs(experiment, dataset.labels, dataset.n_classes, str(tmp_path))


def test_reused_compiled_model_gives_bit_identical_runs(tmp_path):
    from valstat import train

    specs = tiny_specs(tmp_path)            # 2 arms (plain, batch-norm) x 2 seeds
    fresh = [train.train_one_run(spec, threads=1, reuse=False) for spec in specs]
    train._COMPILED.clear()
    # interleave arms and seeds, and run one spec twice: the reset must be complete every time
    order = [specs[0], specs[2], specs[1], specs[3], specs[0]]
    reused = [train.train_one_run(spec, threads=1, reuse=True) for spec in order]
    assert len(train._COMPILED) == 2        # one compiled model per arm, not per run
    expected = {record.run["run_id"]: record for record in fresh}
    for record in reused:
        want = expected[record.run["run_id"]]
        assert record.epochs == want.epochs
        assert record.predictions == want.predictions
        assert record.run["status"] == want.run["status"]
    # different seeds really differ (the reset is not a no-op)
    assert reused[0].epochs != reused[2].epochs
