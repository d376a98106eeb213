"""Fused seeds on Keras's JAX backend: K runs of one arm train as one compiled program.

Each run keeps its own identity: its weights, optimizer state (learning rate included: Keras keeps
it among the optimizer variables) and dropout seed state are stacked on a leading axis of size K
and stepped by `jax.jit(jax.vmap(step))`, where `step` is the pure Keras step
(`model.stateless_call` + `optimizer.stateless_apply`). The batches of run k in epoch e are
valstat's `batch_order(order_seed_k, e + ORDER_EPOCH_OFFSET, n_train)`, exactly those of
train_one_run, gathered on the device. Its ReduceLROnPlateau decisions are taken on the host
by `valstat.stats.plateau.Plateau` (the one Keras-exact implementation); a run whose training
loss turns non-finite is recorded up to that epoch and then frozen. Every epoch scores each run's validation images and the arm's truth images.

Compile once: one engine per (arm network and optimiser, classes) per process; jax.jit compiles
its epoch, tail-step and scoring programs once per pack shape (K, steps, batch) and reuses them.
Packs hold runs of one arm with the same number of training images (same batches, so batch
statistics and dropout masks are exactly those of a run trained alone); validation sets of
different sizes are padded to the largest and masked.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone

import numpy as np

from valstat.errors import ValstatError
from valstat.splits import RunSpec
from valstat.store import RunRecord

EPSILON = 1e-7        # keras.backend.epsilon(), as ValidationRecorder clips p_true
SCORE_CHUNK = 128     # images per model per scoring call (bounds device memory at 227 px)
MEMORY_MARGIN = 0.85  # share of the device's free memory a pack's epoch program may plan for

_ENGINES: dict = {}


def pack_specs(specs: list[RunSpec], pack_size: int) -> list[list[RunSpec]]:
    """Group specs into packs of at most `pack_size` runs of one arm with equal training size,
    keeping the given order within each group. Every spec lands in exactly one pack."""
    groups: dict = {}
    for spec in specs:
        groups.setdefault((spec.arm.name, len(spec.split.train)), []).append(spec)
    return [group[start:start + pack_size] for group in groups.values()
            for start in range(0, len(group), pack_size)]


class FusedEngine:
    """The compiled programs for one arm's network and optimiser (any pack size K).

    State per run is three lists of arrays (trainable, non-trainable, optimizer variables) in
    the order of model.trainable_variables / model.non_trainable_variables / optimizer.variables;
    a pack stacks them to shape (K, *variable.shape).
    """

    def __init__(self, arm, n_classes: int):
        import jax
        import jax.numpy as jnp
        import keras

        from valstat.model import build_alexnet, build_optimizer

        self.arm = arm
        model = build_alexnet(arm.data.image_size, n_classes, arm.model, seed=0)
        optimizer = build_optimizer(arm.training)
        optimizer.build(model.trainable_variables)
        self.model, self.optimizer = model, optimizer
        paths = [v.path for v in optimizer.variables]
        self.lr_index = paths.index(optimizer._learning_rate.path)
        self.initial_optimizer = [np.asarray(v.value) for v in optimizer.variables]

        def step(trainable, non_trainable, opt_vars, x_uint8, y, active):
            """One batch of one run: x (B, S, S, 3) uint8, y (B, C) one-hot; returns the new
            state (unchanged where not active), the batch's mean loss and correct count."""
            x = x_uint8.astype("float32")

            def loss_fn(trainable_):
                y_pred, non_trainable_ = model.stateless_call(trainable_, non_trainable, x,
                                                              training=True)
                loss = jnp.mean(keras.losses.categorical_crossentropy(y, y_pred))
                return loss, (y_pred, non_trainable_)

            (loss, (y_pred, new_non_trainable)), grads = jax.value_and_grad(
                loss_fn, has_aux=True)(trainable)
            new_trainable, new_opt = optimizer.stateless_apply(opt_vars, grads, trainable)

            def keep(new, old):
                return [jnp.where(active, a, b) for a, b in zip(new, old)]

            correct = jnp.sum(jnp.argmax(y_pred, -1) == jnp.argmax(y, -1))
            return (keep(new_trainable, trainable), keep(new_non_trainable, non_trainable),
                    keep(new_opt, opt_vars), loss, correct)

        vstep = jax.vmap(step)

        def epoch(trainable, non_trainable, opt_vars, images, onehot, order, active):
            """All full batches of one epoch for K runs: order (K, steps, B) image indices.
            Returns the state and per-run (sum of batch loss x batch size, correct count)."""
            def body(carry, indices):
                tv, ntv, ov, loss_sum, correct_sum = carry
                x, y = images[indices], onehot[indices]
                tv, ntv, ov, loss, correct = vstep(tv, ntv, ov, x, y, active)
                return (tv, ntv, ov, loss_sum + loss * indices.shape[1],
                        correct_sum + correct), None

            k = order.shape[0]
            zeros = jnp.zeros((k,), "float32")
            carry = (trainable, non_trainable, opt_vars, zeros, jnp.zeros((k,), "int32"))
            carry, _ = jax.lax.scan(body, carry, jnp.swapaxes(order, 0, 1))
            return carry

        def tail(trainable, non_trainable, opt_vars, images, onehot, indices, active):
            x, y = images[indices], onehot[indices]
            return vstep(trainable, non_trainable, opt_vars, x, y, active)

        def predict(trainable, non_trainable, x_uint8):
            y_pred, _ = model.stateless_call(trainable, non_trainable,
                                             x_uint8.astype("float32"), training=False)
            return y_pred

        donate = (0, 1, 2) if jax.default_backend() != "cpu" else ()
        self.epoch = jax.jit(epoch, donate_argnums=donate)
        self.tail = jax.jit(tail, donate_argnums=donate)
        self.predict_own = jax.jit(jax.vmap(predict, in_axes=(0, 0, 0)))
        self.predict_shared = jax.jit(jax.vmap(predict, in_axes=(0, 0, None)))
        self._memory_line: dict = {}   # (n_train, n_images) -> (bytes at K=1, bytes per run)

    def initial_state(self, seeds: list[int]):
        """Stacked (trainable, non_trainable, optimizer) arrays for runs initialised from
        `seeds` (K,): exactly the weights build_alexnet(seed=s) draws."""
        import jax.numpy as jnp

        from valstat.model import reseed_alexnet

        per_run = []
        for seed in seeds:
            reseed_alexnet(self.model, seed)
            per_run.append(([np.asarray(v.value) for v in self.model.trainable_variables],
                            [np.asarray(v.value) for v in self.model.non_trainable_variables]))
        trainable = [jnp.asarray(np.stack([run[0][i] for run in per_run]))
                     for i in range(len(per_run[0][0]))]
        non_trainable = [jnp.asarray(np.stack([run[1][i] for run in per_run]))
                         for i in range(len(per_run[0][1]))]
        opt_vars = [jnp.asarray(np.stack([value] * len(seeds)))
                    for value in self.initial_optimizer]
        return trainable, non_trainable, opt_vars

    def score(self, trainable, non_trainable, images, own: np.ndarray | None = None,
              shared: np.ndarray | None = None) -> np.ndarray:
        """Softmax outputs (K, n, C) float64, inference mode: for `own` (K, n) image indices
        (a different set per run) or `shared` (n,) indices scored by every run. Chunks of
        SCORE_CHUNK images, the last padded, so each shape compiles once."""
        n = own.shape[1] if own is not None else len(shared)
        outputs = []
        for start in range(0, n, SCORE_CHUNK):
            stop = min(n, start + SCORE_CHUNK)
            width = min(SCORE_CHUNK, n)
            if own is not None:
                chunk = own[:, start:stop]
                chunk = np.pad(chunk, ((0, 0), (0, width - chunk.shape[1])), mode="edge")
                out = self.predict_own(trainable, non_trainable, images[chunk])
            else:
                chunk = np.pad(shared[start:stop], (0, width - (stop - start)), mode="edge")
                out = self.predict_shared(trainable, non_trainable, images[chunk])
            outputs.append(np.asarray(out)[:, :stop - start])
        return np.concatenate(outputs, axis=1).astype(np.float64)

    def program_bytes(self, k: int, n_train: int, n_images: int) -> dict:
        """XLA's buffer assignment, in bytes, of the two programs a pack of K runs holds on the
        device in turn: {"epoch": ..., "score": ...}, each {argument, output, temp, alias,
        total = argument + output + temp - alias}. From abstract shapes: nothing is allocated
        or run. The epoch program's state is donated, as on a GPU, so outputs reuse it."""
        import jax
        import jax.numpy as jnp

        def stacked(variables):
            return [jax.ShapeDtypeStruct((k, *v.shape), jnp.dtype(v.dtype)) for v in variables]

        def parts(compiled):
            stats = compiled.memory_analysis()
            out = {"argument": stats.argument_size_in_bytes, "output": stats.output_size_in_bytes,
                   "temp": stats.temp_size_in_bytes, "alias": stats.alias_size_in_bytes}
            out["total"] = out["argument"] + out["output"] + out["temp"] - out["alias"]
            return out

        size, batch = self.arm.data.image_size, self.arm.training.batch_size
        trainable = stacked(self.model.trainable_variables)
        non_trainable = stacked(self.model.non_trainable_variables)
        images = jax.ShapeDtypeStruct((n_images, size, size, 3), jnp.uint8)
        epoch = jax.jit(self.epoch.__wrapped__, donate_argnums=(0, 1, 2)).lower(
            trainable, non_trainable, stacked(self.optimizer.variables), images,
            jax.ShapeDtypeStruct((n_images, self.model.output_shape[-1]), jnp.float32),
            jax.ShapeDtypeStruct((k, max(1, n_train // batch), batch), jnp.int32),
            jax.ShapeDtypeStruct((k,), jnp.bool_)).compile()
        chunk = jax.ShapeDtypeStruct((k, min(SCORE_CHUNK, n_images), size, size, 3), jnp.uint8)
        score = self.predict_own.lower(trainable, non_trainable, chunk).compile()
        # the scoring program runs while the optimizer state and the image set (arguments of
        # the epoch program) stay on the device
        scored = parts(score)
        scored["total"] += n_images * size * size * 3 + sum(
            k * math.prod(v.shape) * jnp.dtype(v.dtype).itemsize for v in self.optimizer.variables)
        return {"epoch": parts(epoch), "score": scored}

    def pack_bytes(self, k: int, n_train: int, n_images: int) -> int:
        """Planned device bytes of a pack of K runs: the larger of its two programs."""
        return max(p["total"] for p in self.program_bytes(k, n_train, n_images).values())

    def runs_that_fit(self, free_bytes: int, n_train: int, n_images: int) -> int:
        """The most runs one pack may hold so that its programs plan for at most
        MEMORY_MARGIN x `free_bytes`: memory is linear in K (shared images + K x one run's
        state and activations), measured at K = 1 and 2. At least 1."""
        key = (n_train, n_images)          # the line is measured once; free memory varies
        if key not in self._memory_line:
            one = self.pack_bytes(1, n_train, n_images)
            self._memory_line[key] = (one, self.pack_bytes(2, n_train, n_images) - one)
        one, per_run = self._memory_line[key]
        return max(1, int((MEMORY_MARGIN * free_bytes - (one - per_run)) // max(per_run, 1)))


def device_free_bytes(device=None) -> int | None:
    """Bytes the JAX device may still allocate (its allocator's limit less what is in use);
    None where the device keeps no such statistics (a CPU)."""
    import jax

    stats = (device or jax.local_devices()[0]).memory_stats() or {}
    if "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))


def engine_for(arm, n_classes: int) -> FusedEngine:
    from valstat.train import _compiled_key

    key = _compiled_key(arm, n_classes)
    if key not in _ENGINES:
        _ENGINES[key] = FusedEngine(arm, n_classes)
    return _ENGINES[key]


def _monitor_mode(monitor: str) -> str:
    """Keras's mode="auto": accuracy is maximised, a loss minimised."""
    return "max" if monitor.endswith("accuracy") else "min"


def train_pack(specs: list[RunSpec], threads: int | None = None) -> list[RunRecord]:
    """Train K runs of one arm (equal training-set size) as one fused program on the JAX
    backend; returns one RunRecord per spec, in order, each as train_one_run would build it.
    On a device with a memory limit (a GPU) the pack trains as consecutive sub-packs of the
    most runs whose epoch program fits its free memory (FusedEngine.runs_that_fit). A device
    out of memory all the same is one ValstatError line naming a smaller --pack."""
    import jax

    device = _worker_device()
    try:
        if device is None:
            return _train_fitting(specs, jax.local_devices()[0])
        with jax.default_device(device):
            return _train_fitting(specs, device)
    except Exception as error:  # XLA reports OOM as a RuntimeError/XlaRuntimeError
        text = str(error)
        if "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower():
            raise ValstatError(f"the device ran out of memory training {len(specs)} runs of arm "
                            f"'{specs[0].arm.name}' as one pack; use --pack "
                            f"{max(1, len(specs) // 2)}") from None
        raise


def _worker_device():
    """The GPU this Dask worker should use when its process sees several (a SLURM job with
    `gpus = N` runs N workers named ...-0 .. ...-(N-1)): the one its name's number picks;
    None when the process sees one device or runs outside a named worker."""
    import re

    import jax

    devices = jax.local_devices()
    if len(devices) < 2:
        return None
    try:
        from distributed import get_worker

        name = str(get_worker().name)
    except (ImportError, ValueError):
        return None
    number = re.search(r"(\d+)$", name)
    return devices[int(number.group(1)) % len(devices)] if number else None


def _train_fitting(specs: list[RunSpec], device) -> list[RunRecord]:
    free = device_free_bytes(device)
    if free is None or len(specs) == 1:
        return _train_pack(specs)
    from valstat.data import load_dataset

    arm = specs[0].arm
    dataset = load_dataset(specs[0].source, arm.data.image_size, specs[0].cache_dir)
    fit = engine_for(arm, dataset.n_classes).runs_that_fit(free, len(specs[0].split.train),
                                                           len(dataset.labels))
    return [record for start in range(0, len(specs), fit)
            for record in _train_pack(specs[start:start + fit])]


def _train_pack(specs: list[RunSpec]) -> list[RunRecord]:
    import jax
    import jax.numpy as jnp
    import keras

    from valstat.data import load_dataset
    from valstat.engine.device import describe_runtime
    from valstat.model import alexnet_filters
    from valstat.stats.plateau import Plateau
    from valstat.train import ORDER_EPOCH_OFFSET, batch_order

    if keras.backend.backend() != "jax":
        raise ValstatError("the fused engine needs Keras's JAX backend in its worker "
                        f"(KERAS_BACKEND=jax); this worker runs {keras.backend.backend()}")
    arm = specs[0].arm
    n_train = len(specs[0].split.train)
    for spec in specs:
        if spec.arm.name != arm.name or len(spec.split.train) != n_train:
            raise ValueError("a pack holds runs of one arm with equal training-set size")
    started = time.perf_counter()
    dataset = load_dataset(specs[0].source, arm.data.image_size, specs[0].cache_dir)
    engine = engine_for(arm, dataset.n_classes)
    images = jnp.asarray(dataset.images)                                  # (N, S, S, 3) uint8
    onehot = jnp.asarray(np.eye(dataset.n_classes, dtype=np.float32)[dataset.labels])
    labels = dataset.labels
    k, batch = len(specs), arm.training.batch_size
    steps, rest = divmod(n_train, batch)
    trainable, non_trainable, opt_vars = engine.initial_state([s.init_seed for s in specs])

    n_val = [len(s.split.val) for s in specs]
    val = np.zeros((k, max(n_val)), dtype=np.int64)                       # padded, masked below
    for i, spec in enumerate(specs):
        val[i, :n_val[i]] = spec.split.val
        val[i, n_val[i]:] = spec.split.val[0]
    truth = np.asarray(specs[0].split.truth, dtype=np.int64)
    schedule = arm.schedule
    plateaus = [Plateau(arm.training.learning_rate, schedule.factor, schedule.patience,
                        schedule.min_delta, 0, schedule.min_lr, _monitor_mode(schedule.monitor))
                for _ in specs] if schedule.kind == "reduce_on_plateau" else None
    lr = np.full(k, np.float32(arm.training.learning_rate), dtype=np.float32)
    active = np.ones(k, dtype=bool)
    rows = [[] for _ in specs]
    predictions = [[] for _ in specs]

    for epoch in range(arm.training.epochs):
        if not active.any():
            break
        opt_vars[engine.lr_index] = jnp.asarray(lr)
        order = np.stack([np.asarray(spec.split.train)[
            batch_order(spec.order_seed, epoch + ORDER_EPOCH_OFFSET, n_train)]
                          for spec in specs])                               # (K, n_train)
        live = jnp.asarray(active)
        loss_sum = np.zeros(k)
        correct = np.zeros(k)
        if steps:
            trainable, non_trainable, opt_vars, loss_steps, correct_steps = engine.epoch(
                trainable, non_trainable, opt_vars, images, onehot,
                jnp.asarray(order[:, :steps * batch].reshape(k, steps, batch)), live)
            loss_sum += np.asarray(loss_steps, dtype=np.float64)
            correct += np.asarray(correct_steps)
        if rest:
            trainable, non_trainable, opt_vars, loss_tail, correct_tail = engine.tail(
                trainable, non_trainable, opt_vars, images, onehot,
                jnp.asarray(order[:, steps * batch:]), live)
            loss_sum += np.asarray(loss_tail, dtype=np.float64) * rest
            correct += np.asarray(correct_tail)
        val_probs = engine.score(trainable, non_trainable, images, own=val)
        truth_probs = (engine.score(trainable, non_trainable, images, shared=truth)
                       if len(truth) else None)
        for i, spec in enumerate(specs):
            if not active[i]:
                continue
            probs = val_probs[i, :n_val[i]]
            val_labels = labels[spec.split.val]
            predicted = probs.argmax(axis=1)
            p_true = probs[np.arange(n_val[i]), val_labels]
            val_loss = float(np.mean(-np.log(np.clip(p_true, EPSILON, 1.0))))
            val_accuracy = float(np.mean(predicted == val_labels))
            truth_accuracy = (float(np.mean(truth_probs[i].argmax(axis=1) == labels[truth]))
                              if truth_probs is not None else math.nan)
            loss = float(np.float32(loss_sum[i] / n_train))
            rows[i].append((spec.run_id, epoch, loss, float(correct[i] / n_train), val_loss,
                            val_accuracy, float(f"{lr[i]:.7g}"), truth_accuracy))
            predictions[i].extend(
                (spec.run_id, epoch, int(e), int(t), int(g), float(p))
                for e, t, g, p in zip(spec.split.val, val_labels, predicted, p_true))
            if not math.isfinite(loss):
                active[i] = False            # recorded, then stopped, as StopOnDivergence does
                continue
            if plateaus is not None:
                monitored = val_accuracy if schedule.monitor == "val_accuracy" else val_loss
                lr[i] = np.float32(plateaus[i].step(monitored, epoch))
    jax.block_until_ready(trainable)
    wall_s = time.perf_counter() - started
    runtime = describe_runtime()
    finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
    model_info = {"input": [arm.data.image_size, arm.data.image_size, 3],
                  "filters": alexnet_filters(arm.model.width),
                  "dense_units": arm.model.dense_units, "batch_norm": arm.model.batch_norm,
                  "params": int(engine.model.count_params())}
    records = []
    for i, spec in enumerate(specs):
        diverged = any(not math.isfinite(row[2]) for row in rows[i])
        run = {"run_id": spec.run_id, "experiment": spec.experiment, "arm": arm.name,
               "seed": spec.seed, "fold": spec.fold, "split_seed": spec.split_seed,
               "init_seed": spec.init_seed, "order_seed": spec.order_seed,
               "augment_seed": spec.augment_seed,
               "status": "diverged" if diverged else "finished",
               "wall_s": wall_s / k,          # the pack's time, shared equally by its runs
               "n_train": n_train, "n_val": n_val[i], "n_truth": int(len(truth)),
               "epochs_run": len(rows[i]), "python_version": runtime["python"],
               "tf_version": None, "keras_version": runtime["keras"],
               "backend": runtime["backend"], "backend_version": runtime["backend_version"],
               "device": runtime["device"], "engine": f"fused-{k}",
               "finished_at": finished, "val_examples": [int(e) for e in spec.split.val],
               "train_examples": [int(e) for e in spec.split.train]}
        records.append(RunRecord(run=run, epochs=rows[i], predictions=predictions[i],
                                 model=model_info))
    return records
