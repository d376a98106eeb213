"""`Recorder`: a Keras callback for your own `model.fit` that writes a run into a valstat store.

    recorder = Recorder("reports/mine", validation_data=(x_val, y_val), arm="adam", seed=0)
    model.fit(x, y, epochs=30, callbacks=[recorder, ReduceLROnPlateau(...)])

Place it first in the list: it sets val_loss/val_accuracy in the shared logs from its own
per-image predictions, so later callbacks (the schedule, CSVLogger) see the same numbers.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from pathlib import Path

import keras
import numpy as np

from valstat.callbacks import ValidationRecorder
from valstat.errors import UserError
from valstat.splits import run_id_for
from valstat.store import Store, read_meta
from valstat.train import versions

RECORDED_EXPERIMENT = "recorded"


def _labels(targets) -> np.ndarray:
    """Integer labels (n,) from integer labels (n,) or one-hot / probability targets (n, C)."""
    targets = np.asarray(targets)
    if targets.ndim == 2 and targets.shape[1] > 1:
        return targets.argmax(axis=1).astype(np.int64)
    return targets.reshape(-1).astype(np.int64)


class Recorder(ValidationRecorder):
    """Records one `fit` call as run `arm/s{seed}/f{fold}` in the store at `out_dir`.

    validation_data: (x_val, y_val) with x_val (n, ...) model inputs and y_val (n,) int labels or
    (n, C) one-hot. class_names: optional list of C names for the report.
    """

    def __init__(self, out_dir, validation_data, arm: str = "main", seed: int = 0, fold: int = 0,
                 class_names: list[str] | None = None, experiment: str = RECORDED_EXPERIMENT):
        x_val, y_val = validation_data
        labels = _labels(y_val)
        super().__init__(np.asarray(x_val), labels, np.arange(len(labels)))
        self.out_dir = Path(out_dir)
        self.arm, self.seed, self.fold = arm, int(seed), int(fold)
        self.class_names = class_names
        self.experiment = experiment
        existing = read_meta(self.out_dir)
        if existing and existing.get("experiment") != experiment:
            raise UserError(f"{self.out_dir} holds the store of experiment "
                            f"'{existing.get('experiment')}'; record into another folder")
        self._started = 0.0
        self._initial_rate = math.nan

    def on_train_begin(self, logs=None):
        self.rows, self.predictions = [], []
        self._started = time.perf_counter()
        self._initial_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_train_end(self, logs=None):
        run_id = run_id_for(self.arm, self.seed, self.fold)
        losses = [row["loss"] for row in self.rows]
        diverged = any(not math.isfinite(loss) for loss in losses)
        info = versions()
        run = {"run_id": run_id, "experiment": self.experiment, "arm": self.arm,
               "seed": self.seed, "fold": self.fold, "split_seed": self.seed,
               "init_seed": self.seed, "order_seed": self.seed,
               "status": "diverged" if diverged else "finished",
               "wall_s": time.perf_counter() - self._started, "n_train": None,
               "n_val": int(len(self.val_labels)), "n_truth": 0, "epochs_run": len(self.rows),
               "python_version": info["python"], "tf_version": info["tensorflow"],
               "keras_version": info["keras"], "backend": info["backend"],
               "backend_version": info["backend_version"], "device": info["device"],
               "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "val_examples": [int(i) for i in self.example_ids], "train_examples": None}
        record = self.to_record(run)
        n_classes = int(self.model.output_shape[-1])
        with Store(self.out_dir) as store:
            meta = store.meta()
            arms = meta.get("arms", [])
            config = meta.get("arms_config", {})
            if self.arm not in arms:
                arms.append(self.arm)
                config[self.arm] = {
                    "data": {"val_size": int(len(self.val_labels))},
                    "training": {"learning_rate": self._initial_rate,
                                 "optimizer": type(self.model.optimizer).__name__.lower(),
                                 "epochs": len(self.rows)}}
            store.set_meta({
                "experiment": self.experiment, "arms": arms, "arms_config": config,
                "dataset": meta.get("dataset") or {
                    "source": "recorded with valstat.keras.Recorder",
                    "class_names": self.class_names or [str(c) for c in range(n_classes)]}})
            if not store.write_run(record):
                raise UserError(f"run {run_id} is already in {self.out_dir}; "
                                "pass another seed= or fold= to record a new run")

