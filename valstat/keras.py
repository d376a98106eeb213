"""`Recorder`: a Keras callback for your own `model.fit` that writes a run into a valstat store.

    recorder = Recorder("reports/mine", validation_data=(x_val, y_val), arm="adam", seed=0)
    model.fit(x, y, epochs=30, callbacks=[recorder, ReduceLROnPlateau(...)])

Place it first in the list: it sets val_loss/val_accuracy in the shared logs from its own
per-image predictions, so later callbacks (the schedule, CSVLogger) see the same numbers.
Any single-output Keras classifier works: softmax over C classes or one sigmoid unit, outputs as
probabilities or logits (a loss compiled with `from_logits=True`), labels as integers or one-hot.
A store knows each validation image by its content (the same pixels get the same id in every
run), so runs on different validation images are never analysed as if they shared them.
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import keras
import numpy as np

from valstat.callbacks import ValidationRecorder, predict_in_batches
from valstat.errors import ValstatError
from valstat.images import RECORDED_SOURCE
from valstat.splits import run_id_for
from valstat.store import Store, read_meta, read_stored_runs, require_kind
from valstat.train import versions

RECORDED_EXPERIMENT = "recorded"


def _labels(targets) -> np.ndarray:
    """Integer labels (n,) from integer labels (n,) / (n, 1) or one-hot targets (n, C)."""
    targets = np.asarray(targets)
    if targets.ndim == 2 and targets.shape[1] > 1:
        if not np.all((targets == 0) | (targets == 1)) or np.any(targets.sum(axis=1) != 1):
            raise ValstatError("Recorder: validation labels of shape (n, C) must be one-hot "
                            "(one 1 per row); pass integer class labels otherwise")
        return targets.argmax(axis=1).astype(np.int64)
    if targets.ndim > 2 or (targets.ndim == 2 and targets.shape[1] != 1):
        raise ValstatError(f"Recorder: validation labels of shape {targets.shape} are neither "
                        "integer labels (n,) nor one-hot (n, C)")
    flat = targets.reshape(-1)
    if flat.size == 0:
        raise ValstatError("Recorder: validation_data holds no images")
    if not np.all(np.mod(flat, 1) == 0) or flat.min() < 0:
        raise ValstatError("Recorder: validation labels must be class indices 0, 1, ... "
                        "(integers) or one-hot rows")
    return flat.astype(np.int64)


def _validation_arrays(validation_data) -> tuple:
    """(x_val, y_val) from validation_data = (x_val, y_val) or (x_val, y_val, sample_weight)."""
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise ValstatError("Recorder: validation_data must be the arrays (x_val, y_val); a "
                           "tf.data.Dataset or generator is not read, so pass its images and "
                           "labels, e.g. x_val = np.concatenate([x for x, _ in dataset])")
    if len(validation_data) == 3 and validation_data[2] is not None:
        warnings.warn("Recorder: validation sample weights are not used; valstat counts every "
                      "validation image once", stacklevel=3)
    return validation_data[0], validation_data[1]


def _fingerprints(x_val: np.ndarray) -> list[str]:
    """One key per validation image, from its pixels; the k-th repeat of an image within the set
    gets ':k' so that every image of one run keeps its own key."""
    rows = np.ascontiguousarray(x_val).reshape(len(x_val), -1)
    seen: dict = {}
    keys = []
    for row in rows:
        digest = hashlib.blake2b(row.tobytes(), digest_size=10).hexdigest()
        seen[digest] = seen.get(digest, -1) + 1
        keys.append(f"{digest}:{seen[digest]}")
    return keys


def _store_ids(keys: list[str], known: list[str]) -> tuple[np.ndarray, list[str]]:
    """(ids of `keys`, the store's list of known keys with the new ones appended): an image's id
    is its key's position in the store's list, the same in every run."""
    index = {key: i for i, key in enumerate(known)}
    known = list(known)
    for key in keys:
        if key not in index:
            index[key] = len(known)
            known.append(key)
    return np.array([index[key] for key in keys], dtype=np.int64), known


def _from_logits(model) -> bool:
    """Whether the compiled loss takes logits (a Loss object built with from_logits=True)."""
    loss = model.loss
    if isinstance(loss, (dict, list, tuple)):
        raise ValstatError("Recorder records a classifier with one output; this model was "
                        "compiled with several losses")
    return bool(isinstance(loss, keras.losses.Loss) and loss.get_config().get("from_logits"))


def _n_classes(model) -> int:
    """Classes the model scores: its output width, or 2 for a single sigmoid/logit unit."""
    shape = model.output_shape
    if isinstance(shape, (list, dict)) or isinstance(shape[0], (tuple, list)):
        raise ValstatError("Recorder records a classifier with one output; this model has several")
    return max(2, int(shape[-1] or 0))


class Recorder(ValidationRecorder):
    """Records one `fit` call as run `arm/s{seed}/f{fold}` in the store at `out_dir`.

    validation_data: (x_val, y_val) with x_val (n, ...) model inputs and y_val (n,) int labels or
    (n, C) one-hot (a third item, sample weights, is ignored). class_names: optional list of C
    names for the report.
    """

    def __init__(self, out_dir, validation_data, arm: str = "main", seed: int = 0, fold: int = 0,
                 class_names: list[str] | None = None, experiment: str = RECORDED_EXPERIMENT):
        x_val, y_val = _validation_arrays(validation_data)
        labels = _labels(y_val)
        x_val = np.asarray(x_val)
        if len(x_val) != len(labels):
            raise ValstatError(f"Recorder: validation_data holds {len(x_val)} images but "
                               f"{len(labels)} labels")
        # positions while training; the store's ids of these images when the run is written
        super().__init__(x_val, labels, np.arange(len(labels)))
        self.image_keys = _fingerprints(x_val)
        self.out_dir = Path(out_dir)
        self.arm, self.seed, self.fold = arm, int(seed), int(fold)
        self.class_names = class_names
        self.experiment = experiment
        existing = read_meta(self.out_dir)
        require_kind(existing, "recorded", self.out_dir, "record a fit into")
        if existing and existing.get("experiment") != experiment:
            raise ValstatError(f"{self.out_dir} holds the store of experiment "
                            f"'{existing.get('experiment')}'; record into another folder")
        self.n_classes = 0
        self._started = 0.0
        self._initial_rate = math.nan

    def on_train_begin(self, logs=None):
        run_id = run_id_for(self.arm, self.seed, self.fold)
        if run_id in read_stored_runs(self.out_dir):
            raise ValstatError(f"run {run_id} is already in {self.out_dir}; pass another seed= "
                               "or fold= to record a new run")
        super().on_train_begin(logs)
        self.from_logits = _from_logits(self.model)
        self.n_classes = _n_classes(self.model)
        if self.val_labels.max() >= self.n_classes:
            raise ValstatError(f"Recorder: validation labels go up to {self.val_labels.max()} but the "
                            f"model scores {self.n_classes} classes")
        self._started = time.perf_counter()
        self._initial_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        if not self.rows:
            self._check_probabilities()
        super().on_epoch_end(epoch, logs)

    def _check_probabilities(self) -> None:
        """Refuse outputs that are neither probabilities nor declared logits."""
        if self.from_logits:
            return
        outputs = predict_in_batches(self.model, self.val_images[:256])
        rows = outputs.reshape(len(outputs), -1)
        bad = np.any(rows < -1e-6) or np.any(rows > 1 + 1e-6)
        if rows.shape[1] > 1:
            bad = bad or not np.allclose(rows.sum(axis=1), 1.0, atol=1e-3)
        if bad:
            raise ValstatError("Recorder: the model's outputs are not class probabilities; end it "
                            "with softmax (or one sigmoid unit), or compile the loss with "
                            "from_logits=True")

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
               "train_examples": None}
        with Store(self.out_dir) as store:
            meta = store.meta()
            ids, known = _store_ids(self.image_keys, meta.get("recorded_images") or [])
            record = self.to_record({**run, "val_examples": [int(i) for i in ids]})
            record.predictions = [(rid, epoch, int(ids[position]), *rest)   # positions -> ids
                                  for rid, epoch, position, *rest in record.predictions]
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
                "store_kind": "recorded", "experiment": self.experiment, "arms": arms, "arms_config": config,
                "recorded_images": known,
                "dataset": meta.get("dataset") or {
                    "source": RECORDED_SOURCE,
                    "class_names": self.class_names or [str(c) for c in range(self.n_classes)]}})
            if not store.write_run(record):
                raise ValstatError(f"run {run_id} is already in {self.out_dir}; "
                                "pass another seed= or fold= to record a new run")

