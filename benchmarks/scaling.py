"""Sweep throughput (runs/hour) for worker x thread layouts against one process using all cores.

Each layout runs the same small sweep of the default experiment through `run_sweep` (Dask
LocalCluster, spawned workers, threads per worker = cores / workers) into a fresh store. The
baseline is 1 worker x all cores. Prints the best layout's ratio to the baseline as the last line;
valstat's default layout (execute.default_layout) should be the best one.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from common import append_result, machine


def sweep_seconds(image_size: int, epochs: int, seeds: int, workers: int) -> float:
    from valstat.config import load_experiment
    from valstat.execute import run_sweep

    experiment = load_experiment(None, {"seeds": seeds, "epochs": epochs,
                                        "image_size": image_size})
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        outcome = run_sweep(experiment, out, workers=workers)
        seconds = time.perf_counter() - start
    assert len(outcome.finished) + len(outcome.diverged) == outcome.planned
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 px only, 2 seeds x 2 arms")
    args = parser.parse_args()
    from valstat.execute import default_layout

    cores = os.cpu_count() or 1
    sizes, epochs, seeds = ([32], 4, 2) if args.quick else ([32, 64], 8, 4)
    layouts = sorted({w for w in (1, 2, 4, cores) if w <= cores})
    best_ratio = None
    for size in sizes:
        runs = 2 * seeds
        rates = {w: runs / sweep_seconds(size, epochs, seeds, w) * 3600 for w in layouts}
        baseline = rates[1]
        best = max(rates, key=rates.get)
        default_workers, _ = default_layout(cores, size)
        text = ", ".join(f"{w}x{max(1, cores // w)}: {rate:.0f} runs/h ({rate / baseline:.2f}x)"
                         for w, rate in rates.items())
        print(f"{size} px, {epochs} epochs, {runs} runs: {text}; default layout {default_workers} "
              f"workers")
        append_result("scaling", f"- {machine()}: {size} px, {epochs} epochs, {runs} runs"
                      f"{' (quick)' if args.quick else ''}: workers x threads {text}; best "
                      f"{best} workers; valstat's default {default_workers} workers")
        best_ratio = rates[best] / baseline if best_ratio is None else best_ratio
    print(f"{best_ratio:.3f}")


if __name__ == "__main__":
    main()
