"""Training engine throughput: the default experiment through `run_sweep` with a model built and
compiled per run (the path before compile-once) against one compiled model per arm and worker.

Both sweeps run in this process, one after the other, into fresh stores, with valstat's default
worker layout; the curves of the two stores are compared (they must be identical). `--quick`: 4
seeds x 2 arms x 5 epochs; full: the default experiment as shipped (20 seeds x 2 arms x 20
epochs). Prints runs/hour of each and their ratio (target >= 1.5) as the last line.

`--fused` (run with KERAS_BACKEND=jax; see gpu_check.sh): fused K runs against the same K runs
one at a time (packs of one, same engine, compiled once) at 32 px, achieved TFLOP/s against a
matrix-product peak measured in the same process, and optionally (`--sweep EXPERIMENT`) one
whole `valstat run` end to end on the GPU. `--cpu-smoke` shrinks everything to seconds so the
script can be checked on a CPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from common import append_result, machine


def sweep(seeds: int, epochs: int, reuse: bool, out: str) -> float:
    """Seconds for `valstat run` of the default experiment (all arms) into `out`."""
    from valstat.config import load_experiment
    from valstat.execute import run_sweep

    experiment = load_experiment(None, {"seeds": seeds, "epochs": epochs})
    start = time.perf_counter()
    outcome = run_sweep(experiment, out, reuse=reuse)
    seconds = time.perf_counter() - start
    assert len(outcome.finished) + len(outcome.diverged) == outcome.planned
    return seconds


def matmul_peak_tflops(precision: str, size: int = 8192, repeats: int = 5) -> float:
    """float32 matrix-product TFLOP/s on JAX's default device at `precision` (highest: true
    fp32; default: what XLA picks, TF32 on recent NVIDIA GPUs)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
    product = jax.jit(lambda x, y: jnp.matmul(x, y, precision=precision))
    product(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        product(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e12


def pack_seconds(specs, k: int) -> float:
    """Seconds to train `specs` in packs of `k` (train_pack), in this process."""
    from valstat.engine.fused import pack_specs, train_pack

    start = time.perf_counter()
    for pack in pack_specs(specs, k):
        train_pack(pack)
    return time.perf_counter() - start


def fused_main(args) -> list[str]:
    """Fused K vs one at a time, TFLOP/s, and optionally a whole sweep; returns result lines."""
    import jax

    from efficiency import training_flops_per_image
    from valstat.config import load_experiment
    from valstat.data import load_dataset
    from valstat.engine.device import resolve_device
    from valstat.engine.fused import engine_for
    from valstat.splits import plan_runs

    lines = []
    device = jax.devices()[0]
    where = f"{device.platform}: {getattr(device, 'device_kind', device)}, jax {jax.__version__}"
    size, epochs, k = (16, 2, 4) if args.cpu_smoke else (32, args.epochs, args.k)
    experiment = load_experiment(None, {"seeds": 2 * k, "epochs": epochs, "image_size": size})
    experiment.arms = experiment.arms[:1]                         # the founding arm
    with tempfile.TemporaryDirectory() as cache:
        dataset = load_dataset("digits", size, cache)
        specs = plan_runs(experiment, dataset.labels, dataset.n_classes, cache)
        first, second = specs[:k], specs[k:]
        cold_fused = pack_seconds(first, k)                       # includes compilation
        warm_fused = pack_seconds(second, k)
        cold_single = pack_seconds(first[:1], 1)
        warm_single = pack_seconds(second, 1)
        per_image = training_flops_per_image(engine_for(experiment.arms[0], dataset.n_classes)
                                             .model)
    images = k * epochs * len(first[0].split.train)
    achieved = per_image * images / warm_fused / 1e12
    peak_fp32 = matmul_peak_tflops("highest", 1024 if args.cpu_smoke else 8192)
    peak_default = matmul_peak_tflops("default", 1024 if args.cpu_smoke else 8192)
    lines.append(
        f"{where}: founding arm {size} px, {k} runs x {epochs} epochs: fused K={k} "
        f"{warm_fused:.1f} s warm ({cold_fused:.1f} s with compilation), one at a time "
        f"{warm_single:.1f} s warm ({cold_single:.1f} s for the first, compiling); ratio "
        f"{warm_single / warm_fused:.2f}x; training {achieved:.2f} TFLOP/s vs measured f32 "
        f"matmul peak {peak_fp32:.1f} (precision highest) / {peak_default:.1f} (default)")
    if args.sweep:
        overrides = {"epochs": 2, "image_size": 32, "seeds": 4} if args.cpu_smoke else {}
        sweep_experiment = load_experiment(args.sweep, overrides)
        engine = resolve_device("gpu" if device.platform != "cpu" else "cpu", fused=True)
        from valstat.execute import run_sweep

        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            outcome = run_sweep(sweep_experiment, out, engine=engine, pack_size=args.pack)
            seconds = time.perf_counter() - start
            arm = sweep_experiment.arms[0]
            from valstat.store import load_tables

            tables = load_tables(out)
        runs = len(outcome.finished) + len(outcome.diverged)
        lines.append(
            f"{where}: `valstat run {args.sweep}` end to end ({runs} runs x "
            f"{arm.training.epochs} epochs at {arm.data.image_size} px, packs of "
            f"{args.pack or runs}, compilation and worker start included): {seconds:.0f} s; "
            f"final val accuracy mean "
            f"{tables.epochs.groupby('run_id').val_accuracy.last().mean():.3f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 seeds x 2 arms x 5 epochs")
    parser.add_argument("--load", default="", help="what else ran on the machine, for the record")
    parser.add_argument("--fused", action="store_true", help="the JAX fused-seeds part")
    parser.add_argument("--cpu-smoke", action="store_true", help="--fused at toy sizes")
    parser.add_argument("--k", type=int, default=16, help="--fused: runs per pack")
    parser.add_argument("--epochs", type=int, default=10, help="--fused: epochs per run")
    parser.add_argument("--sweep", help="--fused: also time `valstat run` of this experiment")
    parser.add_argument("--pack", type=int, help="--sweep: runs per pack (default: all)")
    parser.add_argument("--figures", help="--fused: also write the result lines to this file")
    args = parser.parse_args()
    if args.fused:
        lines = fused_main(args)
        for line in lines:
            print(line)
            if not args.cpu_smoke:
                append_result("engine (GPU)", f"- {machine()}: {line}")
        if args.figures:
            with open(args.figures, "a", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")
        return
    from valstat.store import load_tables

    seeds, epochs = (4, 5) if args.quick else (20, 20)
    runs = 2 * seeds
    with tempfile.TemporaryDirectory() as before, tempfile.TemporaryDirectory() as after:
        old_s = sweep(seeds, epochs, False, before)
        new_s = sweep(seeds, epochs, True, after)
        old, new = load_tables(before), load_tables(after)
        columns = ["run_id", "epoch", "loss", "accuracy", "val_loss", "val_accuracy",
                   "learning_rate", "truth_accuracy"]
        same = old.epochs[columns].equals(new.epochs[columns]) and old.predictions.equals(
            new.predictions)
    old_rate, new_rate = runs / old_s * 3600, runs / new_s * 3600
    ratio = new_rate / old_rate
    text = (f"default experiment, {runs} runs x {epochs} epochs{' (quick)' if args.quick else ''}"
            f": compile per run {old_s:.0f} s ({old_rate:.0f} runs/h), compile once {new_s:.0f} s"
            f" ({new_rate:.0f} runs/h), ratio {ratio:.2f}; curves and predictions identical: "
            f"{'yes' if same else 'NO'}")
    print(text)
    append_result("engine", f"- {machine()}{'; ' + args.load if args.load else ''}: {text}")
    print(f"{ratio:.3f}")


if __name__ == "__main__":
    main()
