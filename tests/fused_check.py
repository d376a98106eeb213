"""Run with KERAS_BACKEND=jax: train the same specs fused (one pack) and one at a time
(valstat.train.train_one_run on the JAX backend) and write both as JSON to argv[1].

Usage: KERAS_BACKEND=jax python tests/fused_check.py OUT.json [experiment.toml] [seeds]
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import replace

from valstat.config import load_experiment
from valstat.data import load_dataset
from valstat.engine import fused as fused_engine
from valstat.engine.fused import MEMORY_MARGIN, engine_for, pack_specs, train_pack
from valstat.splits import plan_runs
from valstat.train import train_one_run


def main() -> None:
    out = sys.argv[1]
    experiment_file = sys.argv[2] if len(sys.argv) > 2 else "tests/data/tiny.toml"
    seeds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    experiment = load_experiment(experiment_file, {"seeds": seeds})
    with tempfile.TemporaryDirectory() as cache:
        arm = experiment.arms[0]
        dataset = load_dataset(arm.data.source, arm.data.image_size, cache)
        specs = plan_runs(experiment, dataset.labels, dataset.n_classes, cache)
        fused = [record for pack in pack_specs(specs, 8) for record in train_pack(pack)]
        alone = [train_one_run(spec) for spec in specs]
        # a learning rate that makes the loss blow up: both engines must stop at the same epoch
        wild = load_experiment(experiment_file, {"seeds": 2, "epochs": 4})
        wild.arms = wild.arms[:1]
        wild.arms[0].training.learning_rate = 1e9
        wild_specs = [replace(spec, run_id="wild-" + spec.run_id)
                      for spec in plan_runs(wild, dataset.labels, dataset.n_classes, cache)]
        fused += train_pack(wild_specs)
        alone += [train_one_run(spec) for spec in wild_specs]
        # one pack whose runs validate on different numbers of images (padded and masked)
        short_specs = [replace(spec, run_id="short-" + spec.run_id,
                               split=replace(spec.split, val=spec.split.val[:len(spec.split.val) - 7 * i]))
                       for i, spec in enumerate(specs[:2])]
        fused += train_pack(short_specs)
        alone += [train_one_run(spec) for spec in short_specs]
        # a device with room for 2.5 runs: a pack of 3 trains as sub-packs of 2 and 1
        engine = engine_for(arm, dataset.n_classes)
        n_train, n_images = len(specs[0].split.train), len(dataset.labels)
        memory = {k: engine.pack_bytes(k, n_train, n_images) for k in (1, 2, 4)}
        per_run = memory[2] - memory[1]
        fused_engine.device_free_bytes = lambda device=None: int(
            (memory[1] + 1.5 * per_run) / MEMORY_MARGIN)
        tight_specs = [replace(spec, run_id="tight-" + spec.run_id) for spec in specs[:3]]
        tight = train_pack(tight_specs)
        fused += tight
        alone += [train_one_run(spec) for spec in tight_specs]
    result = {kind: {r.run["run_id"]: {"epochs": r.epochs, "predictions": r.predictions,
                                       "status": r.run["status"], "backend": r.run["backend"],
                                       "n_val": r.run["n_val"], "engine": r.run.get("engine")}
                     for r in records}
              for kind, records in (("fused", fused), ("alone", alone))}
    result["memory"] = memory
    with open(out, "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
