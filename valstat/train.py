"""Train one run. The only module (with callbacks.py and model.py) that imports Keras/TensorFlow,
and it does so lazily, inside functions, so the CLI and analysis never pay the import."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone

import numpy as np

from valstat.splits import RunSpec
from valstat.store import RunRecord

_CONFIGURED_THREADS: int | None = None


def configure_threads(threads: int | None) -> None:
    """Pin TensorFlow's thread pools (must happen before TF runs its first op in the process)."""
    global _CONFIGURED_THREADS
    if threads is None or _CONFIGURED_THREADS is not None:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass  # runtime already initialised in this process; keep its pools
    _CONFIGURED_THREADS = threads


def _enable_determinism() -> None:
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def versions() -> dict:
    """python, tensorflow (None off TensorFlow), keras, backend, backend_version, device."""
    from valstat.engine.device import describe_runtime

    runtime = describe_runtime()
    return {"python": runtime["python"], "keras": runtime["keras"],
            "tensorflow": runtime["backend_version"] if runtime["backend"] == "tensorflow"
            else None, "backend": runtime["backend"],
            "backend_version": runtime["backend_version"], "device": runtime["device"]}


# Keras's PyDataset adapter reads the first batch(es) to learn the data's shapes and then calls
# on_epoch_end once before training starts (seen on the TensorFlow and JAX backends, Keras 3.15),
# so training epoch e of train_one_run uses batch_order(order_seed, e + 1). Engines that build
# batches themselves add this offset to give the same batches.
ORDER_EPOCH_OFFSET = 1


def batch_order(order_seed: int, epoch: int, n: int) -> np.ndarray:
    """Positions (n,) of the training images in epoch `epoch`'s batch order: a function of
    (order_seed, epoch) alone, shared by every engine."""
    return np.random.default_rng([order_seed, epoch]).permutation(n)


def _batches(images: np.ndarray, onehot: np.ndarray, examples: np.ndarray, batch_size: int,
             order_seed: int, augment=None, augment_seed: int = 0):
    """A Keras PyDataset whose epoch-e batch order is a function of (order_seed, e) alone.

    images (N, S, S, 3) uint8, onehot (N, C), examples (N,) global image indices. With `augment`
    (AugmentConfig that changes images) each image is augmented as a function of
    (augment_seed, e, its global index). Pass it to fit with shuffle=False: Keras would
    otherwise reorder batches with Python's global random state, which Dask's threads also use.
    """
    import keras

    from valstat.augment import augment_batch, is_identity

    augmenting = augment is not None and not is_identity(augment)

    def permutation(epoch: int) -> np.ndarray:
        return batch_order(order_seed, epoch, len(images))

    class ShuffledBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epoch = 0
            self.order = permutation(0)

        def __len__(self):
            return -(-len(images) // batch_size)

        def __getitem__(self, index):
            chosen = self.order[index * batch_size:(index + 1) * batch_size]
            if augmenting:
                return (augment_batch(images[chosen], examples[chosen], augment, augment_seed,
                                      self.epoch), onehot[chosen])
            return images[chosen].astype(np.float32), onehot[chosen]

        def on_epoch_end(self):
            self.epoch += 1
            self.order = permutation(self.epoch)

    return ShuffledBatches()


# Compiled models kept by this worker process, one per (input size, classes, network, optimiser):
# the traced train and predict functions are reused by every later run with the same key.
_COMPILED: dict = {}


def _compiled_key(arm, n_classes: int) -> str:
    from dataclasses import asdict

    training = arm.training
    return json.dumps({"size": arm.data.image_size, "classes": n_classes,
                       "model": asdict(arm.model), "optimizer": training.optimizer,
                       "learning_rate": training.learning_rate, "momentum": training.momentum,
                       "loss": training.loss}, sort_keys=True)


def model_for_run(arm, n_classes: int, seed: int, reuse: bool = True):
    """A compiled AlexNet in exactly the state a fresh build_alexnet(seed) + compile gives.

    reuse=False builds and compiles a new model (a new traced graph per run, the old path);
    reuse=True keeps one compiled model per `_compiled_key` in this process and resets it:
    weights redrawn from `seed` (model.reseed_alexnet), optimizer variables (step count,
    learning rate, moments) back to their initial values. Curves are bit-identical either way.
    """
    import keras

    from valstat.model import build_alexnet, build_optimizer, reseed_alexnet

    keras.utils.set_random_seed(seed)
    key = _compiled_key(arm, n_classes)
    if reuse and key in _COMPILED:
        model, initial = _COMPILED[key]
        reseed_alexnet(model, seed)
        for variable, value in zip(model.optimizer.variables, initial):
            variable.assign(value)
        return model
    model = build_alexnet(arm.data.image_size, n_classes, arm.model, seed=seed)
    model.compile(optimizer=build_optimizer(arm.training), loss=arm.training.loss,
                  metrics=["accuracy"])
    if reuse:
        model.optimizer.build(model.trainable_variables)
        initial = [np.array(keras.ops.convert_to_numpy(v)) for v in model.optimizer.variables]
        _COMPILED[key] = (model, initial)
    return model


def train_one_run(spec: RunSpec, threads: int | None = None, reuse: bool = True) -> RunRecord:
    """Train AlexNet for one arm x seed x fold; returns the run, its epochs and predictions.

    reuse: train on this worker's compiled model for the arm (compile once per process), not a
    newly built and traced one (see model_for_run; the curves are the same bit for bit).
    """
    configure_threads(threads)
    import keras

    from valstat.callbacks import StopOnDivergence, ValidationRecorder
    from valstat.data import load_dataset
    from valstat.model import alexnet_filters, build_schedule

    arm = spec.arm
    dataset = load_dataset(spec.source, arm.data.image_size, spec.cache_dir)
    images = dataset.images  # uint8; converted to float32 per batch, not the whole data set
    onehot = np.eye(dataset.n_classes, dtype=np.float32)[dataset.labels]
    split = spec.split

    started = time.perf_counter()
    _enable_determinism()
    model = model_for_run(arm, dataset.n_classes, spec.init_seed, reuse=reuse)
    recorder = ValidationRecorder(
        images[split.val].astype(np.float32), dataset.labels[split.val], split.val,
        images[split.truth].astype(np.float32) if len(split.truth) else None,
        dataset.labels[split.truth] if len(split.truth) else None)
    divergence = StopOnDivergence()
    model.fit(_batches(images[split.train], onehot[split.train], split.train,
                       arm.training.batch_size, spec.order_seed, arm.augment, spec.augment_seed),
              epochs=arm.training.epochs, verbose=0, shuffle=False,
              callbacks=[recorder, divergence, *build_schedule(arm.schedule)])
    wall_s = time.perf_counter() - started

    info = versions()
    run = {"run_id": spec.run_id, "experiment": spec.experiment, "arm": arm.name,
           "seed": spec.seed, "fold": spec.fold, "split_seed": spec.split_seed,
           "init_seed": spec.init_seed, "order_seed": spec.order_seed,
           "augment_seed": spec.augment_seed,
           "status": "diverged" if divergence.diverged else "finished", "wall_s": wall_s,
           "n_train": int(len(split.train)), "n_val": int(len(split.val)),
           "n_truth": int(len(split.truth)), "epochs_run": len(recorder.rows),
           "python_version": info["python"], "tf_version": info["tensorflow"],
           "keras_version": info["keras"], "backend": info["backend"],
           "backend_version": info["backend_version"], "device": info["device"],
           "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "val_examples": [int(i) for i in split.val],
           "train_examples": [int(i) for i in split.train]}
    model_info = {"input": [arm.data.image_size, arm.data.image_size, 3],
                  "filters": alexnet_filters(arm.model.width), "dense_units": arm.model.dense_units,
                  "batch_norm": arm.model.batch_norm, "params": int(model.count_params())}
    if not reuse:
        keras.backend.clear_session()
    return recorder.to_record(run, model_info)
