"""Achieved training GFLOP/s per input size against this machine's peak estimate.

Training FLOPs per image are counted from the model's layers (multiply-adds x 2 for
convolutions and dense layers, x 3 for forward + backward). The peak estimate is the float32
GFLOP/s of a large matrix product with all cores (numpy's BLAS) measured in the same process.
Prints the best achieved/peak ratio as the last line.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from common import append_result, default_specs, machine


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    b = np.random.default_rng(1).random((size, size), dtype=np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size ** 3 / best / 1e9


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def training_flops_per_image(model) -> float:
    """Forward multiply-adds x 2 x 3 (forward + two backward products), convs and dense."""
    import keras

    forward = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, channels_out = layer.output.shape
            kernel_h, kernel_w = layer.kernel_size
            channels_in = layer.input.shape[-1]
            forward += 2 * height * width * channels_out * kernel_h * kernel_w * channels_in
        elif isinstance(layer, keras.layers.Dense):
            forward += 2 * layer.input.shape[-1] * layer.units
    return 3.0 * forward


def measure(size: int, epochs: int, threads: int) -> tuple[float, float]:
    """(training images/s, GFLOP/s) of valstat's train_one_run at `size` px."""
    from valstat.model import build_alexnet
    from valstat.train import train_one_run

    _, dataset, specs = default_specs(size, epochs)
    spec = specs[-1]
    train_one_run(spec, threads=threads)          # warm-up (graph tracing, caches)
    start = time.perf_counter()
    train_one_run(spec, threads=threads)
    seconds = time.perf_counter() - start
    model = build_alexnet(size, dataset.n_classes, spec.arm.model, seed=0)
    rate = len(spec.split.train) * epochs / seconds
    return rate, rate * training_flops_per_image(model) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 and 64 px, 3 epochs")
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    sizes = [32, 64] if args.quick else [32, 64, 128, 227]
    peak = matmul_peak_gflops()
    print(f"peak estimate (float32 matmul, {threads} threads): {peak:.1f} GFLOP/s")
    ratios = []
    for size in sizes:
        epochs = 3 if args.quick else 5 if size <= 128 else 1   # 227 px: ~85 s an epoch
        rate, gflops = measure(size, epochs, threads)
        ratios.append(gflops / peak)
        print(f"{size} px: {rate:.0f} img/s, {gflops:.2f} GFLOP/s, {gflops / peak:.1%} of peak")
        append_result("efficiency", f"- {machine()}: {size} px, {epochs} epochs"
                      f"{' (quick)' if args.quick else ''}: "
                      f"{rate:.0f} img/s, {gflops:.2f} GFLOP/s = {gflops / peak:.1%} of the "
                      f"{peak:.0f} GFLOP/s matmul peak")
    print(f"{max(ratios):.3f}")


if __name__ == "__main__":
    main()
