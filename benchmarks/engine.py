"""Training engine throughput: the default experiment through `run_sweep` on the path before the
CPU speed-ups (a model built and compiled per run, trained by Keras's model.fit) against today's
(one compiled model per arm and worker, each epoch trained in one compiled loop).

Both sweeps run in this process, one after the other, into fresh stores, with valstat's default
worker layout; the curves of the two stores are compared (they must be identical). `--quick`: 4
seeds x 2 arms x 5 epochs; full: the default experiment as shipped (20 seeds x 2 arms x 20
epochs). Prints runs/hour of each and their ratio (target >= 1.5) as the last line.
`--against REV`: the README's main command from the code at git REV (e.g. before compile-once)
against this tree, each in a fresh process, alternated `--repeats` times.

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


def sweep(seeds: int, epochs: int, old_path: bool, out: str) -> float:
    """Seconds for `valstat run` of the default experiment (all arms) into `out`."""
    from valstat.config import load_experiment
    from valstat.execute import run_sweep

    experiment = load_experiment(None, {"seeds": seeds, "epochs": epochs})
    start = time.perf_counter()
    outcome = run_sweep(experiment, out, old_path=old_path)
    seconds = time.perf_counter() - start
    assert len(outcome.finished) + len(outcome.diverged) == outcome.planned
    return seconds


def cli_sweep(tree: str, out: str) -> float:
    """Seconds for the README's main command, `valstat run --seeds 20` (default experiment),
    run from the source tree `tree` into `out`, as a user runs it (a fresh process)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": tree}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "valstat.cli", "run", "--seeds", "20", "--out", out,
                    "--quiet"], cwd=tree, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def against_main(revision: str, repeats: int) -> str:
    """The README's main command from git `revision` (the path before an engine change) and
    from this tree, alternated `repeats` times on one machine; medians and their ratio."""
    import statistics
    import subprocess
    from pathlib import Path

    from valstat.store import load_tables

    here = str(Path(__file__).resolve().parent.parent)
    commit = subprocess.run(["git", "rev-parse", "--short", revision], cwd=here, check=True,
                            capture_output=True, text=True).stdout.strip()
    times = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as scratch:
        old_tree = f"{scratch}/tree"
        subprocess.run(["git", "worktree", "add", "--detach", old_tree, commit], cwd=here,
                       check=True, capture_output=True)
        try:
            for index in range(repeats):
                for name, tree in (("old", old_tree), ("new", here)):
                    times[name].append(cli_sweep(tree, f"{scratch}/{name}{index}"))
            columns = ["run_id", "epoch", "loss", "accuracy", "val_loss", "val_accuracy",
                       "learning_rate", "truth_accuracy"]
            old, new = load_tables(f"{scratch}/old0"), load_tables(f"{scratch}/new0")
            same = old.epochs[columns].equals(new.epochs[columns])
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", old_tree], cwd=here,
                           capture_output=True)
    old_s, new_s = statistics.median(times["old"]), statistics.median(times["new"])
    listed = "; ".join(f"{name} {', '.join(f'{t:.0f}' for t in values)} s"
                       for name, values in times.items())
    return (f"`valstat run --seeds 20` (default experiment, 40 runs x 20 epochs, from the CLI), "
            f"{commit} against this tree, alternated {repeats}x ({listed}): median {old_s:.0f} s "
            f"-> {new_s:.0f} s, {old_s / new_s:.2f}x runs/h; curves identical: "
            f"{'yes' if same else 'NO'}")


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
    parser.add_argument("--against", metavar="REV",
                        help="time the README's main command from git REV against this tree")
    parser.add_argument("--repeats", type=int, default=2, help="--against: alternations")
    args = parser.parse_args()
    if args.against:
        text = against_main(args.against, args.repeats)
        print(text)
        append_result("engine", f"- {machine()}{'; ' + args.load if args.load else ''}: {text}")
        return
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
        old_s = sweep(seeds, epochs, True, before)
        new_s = sweep(seeds, epochs, False, after)
        old, new = load_tables(before), load_tables(after)
        columns = ["run_id", "epoch", "loss", "accuracy", "val_loss", "val_accuracy",
                   "learning_rate", "truth_accuracy"]
        same = old.epochs[columns].equals(new.epochs[columns]) and old.predictions.equals(
            new.predictions)
    old_rate, new_rate = runs / old_s * 3600, runs / new_s * 3600
    ratio = new_rate / old_rate
    text = (f"default experiment, {runs} runs x {epochs} epochs{' (quick)' if args.quick else ''}"
            f": compile per run + model.fit {old_s:.0f} s ({old_rate:.0f} runs/h), compile once + "
            f"compiled epoch loop {new_s:.0f} s ({new_rate:.0f} runs/h), ratio {ratio:.2f}; "
            f"curves and predictions identical: {'yes' if same else 'NO'}")
    print(text)
    append_result("engine", f"- {machine()}{'; ' + args.load if args.load else ''}: {text}")
    print(f"{ratio:.3f}")


if __name__ == "__main__":
    main()
