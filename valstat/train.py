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
# so training epoch e of model.fit uses batch_order(order_seed, e + 1). The compiled epoch loop
# and the fused engine add the same offset, so every engine trains on the same batches.
ORDER_EPOCH_OFFSET = 1

# One call of the compiled epoch loop gets at most this many bytes of float32 images: a whole
# epoch at 32 px, about 100 images at 227 px.
CHUNK_BYTES = 64 * 2**20


def batch_order(order_seed: int, epoch: int, n: int) -> np.ndarray:
    """Positions (n,) of the training images in epoch `epoch`'s batch order: a function of
    (order_seed, epoch) alone, shared by every engine."""
    return np.random.default_rng([order_seed, epoch]).permutation(n)


class TrainingImages:
    """One run's training images and how each epoch orders (and augments) them.

    images (N, S, S, 3) uint8, onehot (N, C), examples (N,) global image indices. Epoch e's
    batches are batch_order(order_seed, e + ORDER_EPOCH_OFFSET) cut into batch_size pieces; with
    `augment` (an AugmentConfig that changes images) each image is augmented as a function of
    (augment_seed, e + ORDER_EPOCH_OFFSET, its global index), so any grouping of the images
    into batches or chunks gives the same pixels.
    """

    def __init__(self, images: np.ndarray, onehot: np.ndarray, examples: np.ndarray,
                 batch_size: int, order_seed: int, augment=None, augment_seed: int = 0):
        from valstat.augment import is_identity

        self.images, self.onehot, self.examples = images, onehot, examples
        self.batch_size, self.order_seed = batch_size, order_seed
        self.augment = None if augment is None or is_identity(augment) else augment
        self.augment_seed = augment_seed

    def order(self, epoch: int) -> np.ndarray:
        """Positions (N,) in the batch order of training epoch `epoch` (0-based)."""
        return batch_order(self.order_seed, epoch + ORDER_EPOCH_OFFSET, len(self.images))

    def pixels(self, chosen: np.ndarray, epoch: int) -> np.ndarray:
        """float32 (n, S, S, 3) input of positions `chosen` (n,) in training epoch `epoch`."""
        if self.augment is None:
            return self.images[chosen].astype(np.float32)
        from valstat.augment import augment_batch

        return augment_batch(self.images[chosen], self.examples[chosen], self.augment,
                             self.augment_seed, epoch + ORDER_EPOCH_OFFSET)

    def chunks(self, epoch: int):
        """Epoch `epoch` in order as (x (n, S, S, 3) float32, y (n, C)) pieces of whole batches,
        each at most CHUNK_BYTES of images (at least one batch)."""
        order = self.order(epoch)
        image_bytes = 4 * self.images[0].size
        step = self.batch_size * max(1, CHUNK_BYTES // (self.batch_size * image_bytes))
        for start in range(0, len(order), step):
            chosen = order[start:start + step]
            yield self.pixels(chosen, epoch), self.onehot[chosen]

    def keras_dataset(self):
        """The same batches as a Keras PyDataset for model.fit(shuffle=False): Keras would
        otherwise reorder batches with Python's global random state, which Dask's threads use."""
        import keras

        training = self

        class Batches(keras.utils.PyDataset):
            def __init__(self):
                super().__init__()
                self.epoch = -ORDER_EPOCH_OFFSET     # Keras calls on_epoch_end once before epoch 0
                self.positions = training.order(self.epoch)

            def __len__(self):
                return -(-len(training.images) // training.batch_size)

            def __getitem__(self, index):
                size = training.batch_size
                chosen = self.positions[index * size:(index + 1) * size]
                return training.pixels(chosen, self.epoch), training.onehot[chosen]

            def on_epoch_end(self):
                self.epoch += 1
                self.positions = training.order(self.epoch)

        return Batches()


def compiled_epoch_loop(model):
    """TensorFlow: a function (x (n, S, S, 3) float32, y (n, C), batch_size) that trains `model`
    on x's batches in order inside one traced graph, each step Keras's own model.train_step, so
    the weights and metrics are bit for bit those of model.fit on the same batches, without
    Keras's per-step Python loop."""
    import tensorflow as tf

    size, classes = model.input_shape[1], model.output_shape[-1]

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32),
                                  tf.TensorSpec([None, classes], tf.float32),
                                  tf.TensorSpec([], tf.int32)],
                 jit_compile=bool(model.jit_compile))
    def train_batches(x, y, batch_size):
        for start in tf.range(0, tf.shape(x)[0], batch_size):
            model.train_step((x[start:start + batch_size], y[start:start + batch_size]))

    return train_batches


def fit(model, training: TrainingImages, epochs: int, callbacks: list, epoch_loop=None) -> None:
    """model.fit(training, epochs, callbacks) with Keras's semantics: metrics reset each epoch,
    callbacks' epoch hooks with the epoch's mean loss and accuracy, stop when a callback sets
    model.stop_training. epoch_loop (from compiled_epoch_loop) trains each epoch's batches in
    one graph call per chunk; None: Keras's own model.fit (any backend)."""
    import keras

    if epoch_loop is None:
        model.fit(training.keras_dataset(), epochs=epochs, verbose=0, shuffle=False,
                  callbacks=callbacks)
        return
    hooks = keras.callbacks.CallbackList(callbacks, model=model, epochs=epochs)
    model.stop_training = False
    hooks.on_train_begin()
    for epoch in range(epochs):
        model.reset_metrics()
        hooks.on_epoch_begin(epoch)
        for x, y in training.chunks(epoch):
            epoch_loop(x, y, training.batch_size)
        hooks.on_epoch_end(epoch, {name: float(value)
                                   for name, value in model.get_metrics_result().items()})
        if model.stop_training:
            break
    hooks.on_train_end()


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
    """(model, epoch_loop): a compiled AlexNet in exactly the state a fresh
    build_alexnet(seed) + compile gives, and its compiled_epoch_loop (None off TensorFlow).

    reuse=False builds and compiles a new model (a new traced graph per run, the old path);
    reuse=True keeps one compiled model and epoch loop per `_compiled_key` in this process and
    resets the model: weights redrawn from `seed` (model.reseed_alexnet), optimizer variables
    (step count, learning rate, moments) back to their initial values. Curves are bit-identical
    either way.
    """
    import keras

    from valstat.model import build_alexnet, build_optimizer, reseed_alexnet

    key = _compiled_key(arm, n_classes)
    if reuse and key in _COMPILED:
        model, initial, epoch_loop = _COMPILED[key]
        reseed_alexnet(model, seed)
        for variable, value in zip(model.optimizer.variables, initial):
            variable.assign(value)
        return model, epoch_loop
    # Only here: every op of a run draws from its own seeds, and setting TensorFlow's global
    # seed clears its kernel cache (the next epoch then took 0.35 s instead of 0.07 s at 32 px).
    keras.utils.set_random_seed(seed)
    model = build_alexnet(arm.data.image_size, n_classes, arm.model, seed=seed)
    model.compile(optimizer=build_optimizer(arm.training), loss=arm.training.loss,
                  metrics=["accuracy"])
    epoch_loop = compiled_epoch_loop(model) if keras.backend.backend() == "tensorflow" else None
    if reuse:
        model.optimizer.build(model.trainable_variables)
        initial = [np.array(keras.ops.convert_to_numpy(v)) for v in model.optimizer.variables]
        _COMPILED[key] = (model, initial, epoch_loop)
    return model, epoch_loop


def train_one_run(spec: RunSpec, threads: int | None = None, reuse: bool = True,
                  keras_fit: bool = False) -> RunRecord:
    """Train AlexNet for one arm x seed x fold; returns the run, its epochs and predictions.

    reuse: train on this worker's compiled model for the arm (compile once per process), not a
    newly built and traced one (see model_for_run). keras_fit: train with Keras's model.fit
    even on TensorFlow, not the compiled epoch loop (see fit). The curves are the same bit for
    bit either way.
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
    model, epoch_loop = model_for_run(arm, dataset.n_classes, spec.init_seed, reuse=reuse)
    recorder = ValidationRecorder(
        images[split.val].astype(np.float32), dataset.labels[split.val], split.val,
        images[split.truth].astype(np.float32) if len(split.truth) else None,
        dataset.labels[split.truth] if len(split.truth) else None)
    divergence = StopOnDivergence()
    training = TrainingImages(images[split.train], onehot[split.train], split.train,
                              arm.training.batch_size, spec.order_seed, arm.augment,
                              spec.augment_seed)
    fit(model, training, arm.training.epochs,
        [recorder, divergence, *build_schedule(arm.schedule)], None if keras_fit else epoch_loop)
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
