"""Keras callbacks that record what a valstat store keeps, one concern each.

`ValidationRecorder` must come before any callback that reads val_loss/val_accuracy (such as
ReduceLROnPlateau): it predicts the validation images once per epoch and writes val_loss and
val_accuracy into the shared logs dict, so the stored accuracy is exactly the share of correct
per-image predictions.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from valstat.store import EPOCH_COLUMNS, RunRecord

EPSILON = 1e-7  # keras.backend.epsilon(): the clip Keras applies in categorical cross-entropy


def predict_in_batches(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Model outputs (N, C) for images (N, ...), inference mode, through the model's
    compiled predict step (much cheaper per call than an eager `model(x)`)."""
    outputs = [np.asarray(model.predict_on_batch(images[start:start + batch_size]))
               for start in range(0, len(images), batch_size)]
    return np.concatenate(outputs).astype(np.float64)


def class_probabilities(outputs: np.ndarray, from_logits: bool = False) -> np.ndarray:
    """Outputs of a classifier -> class probabilities (N, C), C >= 2.

    outputs: (N, C) softmax probabilities or logits, or (N, 1) / (N,) sigmoid probabilities or
    logits of class 1 (a binary classifier). from_logits: outputs are logits.
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim == 1 or outputs.shape[-1] == 1:
        positive = outputs.reshape(-1)
        if from_logits:
            positive = 1.0 / (1.0 + np.exp(-positive))
        return np.stack([1.0 - positive, positive], axis=1)
    if from_logits:
        shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)
    return outputs


class ValidationRecorder(keras.callbacks.Callback):
    """Per epoch: learning rate in use, per-image validation predictions, truth-set accuracy.

    val_images: (n, S, S, 3); val_labels: (n,) int; example_ids: (n,) global image indices.
    truth_images/truth_labels: optional held-out set, scored but never used for decisions.
    After training: `rows` (epoch dicts) and `predictions` (row tuples without run_id).
    `from_logits`: the model outputs logits (see `class_probabilities`).
    """

    from_logits = False

    def __init__(self, val_images, val_labels, example_ids, truth_images=None, truth_labels=None):
        super().__init__()
        self.val_images = val_images
        self.val_labels = np.asarray(val_labels, dtype=np.int64)
        self.example_ids = np.asarray(example_ids, dtype=np.int64)
        self.truth_images = truth_images
        self.truth_labels = None if truth_labels is None else np.asarray(truth_labels)
        self.rows: list[dict] = []
        self.predictions: list[tuple] = []
        self._learning_rate = math.nan

    def on_train_begin(self, logs=None):
        self.rows, self.predictions = [], []

    def on_epoch_begin(self, epoch, logs=None):
        # The optimiser holds the rate as float32; 7 significant digits give back the decimal.
        self._learning_rate = float(f"{float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)):.7g}")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        probabilities = class_probabilities(predict_in_batches(self.model, self.val_images),
                                            self.from_logits)
        predicted = probabilities.argmax(axis=1)
        p_true = probabilities[np.arange(len(self.val_labels)), self.val_labels]
        correct = predicted == self.val_labels
        logs["val_loss"] = float(np.mean(-np.log(np.clip(p_true, EPSILON, 1.0))))
        logs["val_accuracy"] = float(correct.mean())
        truth_accuracy = math.nan
        if self.truth_images is not None and len(self.truth_images):
            truth_predicted = class_probabilities(predict_in_batches(self.model, self.truth_images),
                                                  self.from_logits).argmax(axis=1)
            truth_accuracy = float(np.mean(truth_predicted == self.truth_labels))
        self.rows.append({"epoch": epoch, "loss": float(logs.get("loss", math.nan)),
                          "accuracy": float(logs.get("accuracy", math.nan)),
                          "val_loss": logs["val_loss"], "val_accuracy": logs["val_accuracy"],
                          "learning_rate": self._learning_rate,
                          "truth_accuracy": truth_accuracy})
        self.predictions.extend(
            (epoch, int(example), int(label), int(guess), float(p))
            for example, label, guess, p in zip(self.example_ids, self.val_labels, predicted,
                                                p_true))

    def to_record(self, run: dict, model: dict | None = None) -> RunRecord:
        """The recorded epochs and predictions as a store RunRecord for `run` (RUN_COLUMNS)."""
        run_id = run["run_id"]
        return RunRecord(
            run=run,
            epochs=[(run_id, *(row[c] for c in EPOCH_COLUMNS[1:])) for row in self.rows],
            predictions=[(run_id, *row) for row in self.predictions], model=model or {})


class StopOnDivergence(keras.callbacks.Callback):
    """Stops training when the training loss becomes NaN or infinite; sets `diverged`."""

    def __init__(self):
        super().__init__()
        self.diverged = False

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged = True
            self.model.stop_training = True
