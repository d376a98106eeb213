"""valstat's training throughput against a bare `model.fit` of the identical model and data.

Both run in this process, alternating, best of `--repeats`: valstat's train_one_run (per-image
validation predictions, truth-set accuracy, learning-rate record, SQLite-ready rows) against
`model.fit(x, y, validation_data=...)` with the same AlexNet, seeds, batch size and epochs.
Throughput is training images per second. Target: ratio >= 0.95. The ratio is the last line.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from common import append_result, default_specs, machine


def bare_fit(spec, dataset, threads: int) -> float:
    """Seconds for a plain Keras fit of the same network on the same images."""
    import keras

    from valstat.model import build_alexnet, build_optimizer
    from valstat.train import configure_threads

    configure_threads(threads)
    arm = spec.arm
    images = dataset.images.astype(np.float32)
    onehot = np.eye(dataset.n_classes, dtype=np.float32)[dataset.labels]
    train, val = spec.split.train, spec.split.val
    start = time.perf_counter()
    keras.utils.set_random_seed(spec.init_seed)
    model = build_alexnet(arm.data.image_size, dataset.n_classes, arm.model, seed=spec.init_seed)
    model.compile(optimizer=build_optimizer(arm.training), loss=arm.training.loss,
                  metrics=["accuracy"])
    model.fit(images[train], onehot[train], batch_size=arm.training.batch_size,
              epochs=arm.training.epochs, validation_data=(images[val], onehot[val]), verbose=0)
    seconds = time.perf_counter() - start
    keras.backend.clear_session()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 px, 5 epochs, 2 repeats")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from valstat.train import train_one_run

    size, epochs, repeats = (32, 5, 2) if args.quick else (64, 10, args.repeats)
    threads = os.cpu_count() or 1
    _, dataset, specs = default_specs(size, epochs)
    spec = specs[-1]                      # the contrast arm, which learns
    images = len(spec.split.train) * epochs
    bare_fit(spec, dataset, threads)      # warm-up: TensorFlow start-up costs neither side
    valstat_s, bare_s = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        train_one_run(spec, threads=threads)
        valstat_s.append(time.perf_counter() - start)
        bare_s.append(bare_fit(spec, dataset, threads))
    valstat_rate, bare_rate = images / min(valstat_s), images / min(bare_s)
    ratio = valstat_rate / bare_rate
    print(f"{size} px, {epochs} epochs, {len(spec.split.train)} images, {threads} threads: "
          f"valstat {valstat_rate:.0f} img/s, bare model.fit {bare_rate:.0f} img/s")
    append_result("overhead", f"- {machine()}: {size} px, {epochs} epochs{' (quick)' if args.quick else ''}: "
                  f"valstat {valstat_rate:.0f} img/s vs bare fit {bare_rate:.0f} img/s, "
                  f"ratio {ratio:.3f}")
    print(f"{ratio:.3f}")


if __name__ == "__main__":
    main()
