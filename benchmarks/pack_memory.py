"""Device memory of one fused pack: what XLA's buffer assignment says the compiled programs of
K runs need (FusedEngine.program_bytes, the numbers valstat uses to size packs on a GPU).

Compiles the fused engine's epoch and scoring programs for K runs of an experiment's first arm
from abstract shapes: nothing is trained and no weights are allocated, so it runs on a CPU too
(where it gives XLA's CPU buffer assignment, an estimate of the GPU's) in about a minute.
On a GPU it is the program the GPU would run; `--run` then also trains one epoch of the pack
and reads the allocator's peak.

Usage: KERAS_BACKEND=jax python benchmarks/pack_memory.py [--experiment seed_question]
       [--k 1 4 20] [--run] [--record]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import append_result, machine  # noqa: E402

GIB = 2**30


def one_epoch_peak_bytes(experiment, k: int) -> int | None:
    """Train one epoch of K runs with train_pack and return the device allocator's peak bytes
    (None where the device keeps no statistics, as on a CPU)."""
    import jax

    from valstat.data import load_dataset
    from valstat.engine.fused import train_pack
    from valstat.splits import plan_runs

    arm = experiment.arms[0]
    arm.training.epochs = 1
    dataset = load_dataset(arm.data.source, arm.data.image_size, None)
    specs = [s for s in plan_runs(experiment, dataset.labels, dataset.n_classes, None)
             if s.arm.name == arm.name][:k]
    train_pack(specs)
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="seed_question")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 4, 20])
    parser.add_argument("--run", action="store_true", help="also train one epoch of the largest K")
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    args = parser.parse_args()

    import jax

    from valstat.config import load_experiment
    from valstat.data import load_dataset
    from valstat.engine.fused import engine_for

    experiment = load_experiment(args.experiment, {"seeds": max(args.k)})
    arm = experiment.arms[0]
    data = arm.data
    dataset = load_dataset(data.source, data.image_size, None)   # all of it sits on the device
    n_images = len(dataset.labels)
    device = jax.devices()[0]
    where = f"{device.platform} ({getattr(device, 'device_kind', device)}), jax {jax.__version__}"
    engine = engine_for(arm, dataset.n_classes)
    lines = []
    for k in args.k:
        start = time.perf_counter()
        programs = engine.program_bytes(k, data.train_size, n_images)
        epoch, score = programs["epoch"], programs["score"]
        lines.append(
            f"{machine()}; {where}: `{args.experiment}` arm `{arm.name}` ({data.image_size} px, "
            f"{engine.model.count_params() / 1e6:.1f} M parameters, batch "
            f"{arm.training.batch_size}, {n_images} images on the device), fused pack K={k}: "
            f"XLA buffer assignment {max(epoch['total'], score['total']) / GIB:.1f} GiB — epoch "
            f"program {epoch['total'] / GIB:.1f} (arguments {epoch['argument'] / GIB:.1f}, "
            f"temporaries {epoch['temp'] / GIB:.1f}, outputs reusing the donated state), scoring "
            f"program {score['total'] / GIB:.1f}; compiled in {time.perf_counter() - start:.0f} s")
        print(lines[-1], flush=True)
    if args.run:
        peak = one_epoch_peak_bytes(experiment, max(args.k))
        lines.append(f"{where}: one epoch of K={max(args.k)} trained: allocator peak "
                     + (f"{peak / GIB:.1f} GiB" if peak else "not reported by this device"))
        print(lines[-1], flush=True)
    if args.record:
        for line in lines:
            append_result("fused pack memory", line)


if __name__ == "__main__":
    main()
