"""Time valstat.summary.summarize on synthetic store tables (no training).

Full size: 2 arms x 100 seeds x 5 folds = 1,000 runs x 100 epochs x 30 images (3 M prediction
rows). --quick: 2 x 10 x 5 = 100 runs x 30 epochs. Appends a line under "## stats" in
benchmarks/RESULTS.md and prints the seconds as the last line.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone

import numpy as np

from valstat.stats import mean_interval
from valstat.synthetic import fake_store
from valstat.summary import summarize

from common import append_result

def time_bootstrap(repeats: int) -> dict:
    """Best seconds of mean_interval over 100 values with n_boot=10,000, per method."""
    values = np.random.default_rng(0).normal(0.7, 0.05, 100)
    units = np.repeat(np.arange(10), 10)
    out = {}
    for label, kwargs in (("percentile", {"method": "percentile"}), ("bca", {"method": "bca"}),
                          ("bca+units", {"method": "bca", "units": units})):
        best = float("inf")
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            mean_interval(values, n_boot=10_000, **kwargs)
            best = min(best, time.perf_counter() - start)
        out[label] = best
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 runs x 30 epochs instead of 1,000 x 100")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls; the best is reported")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    boot = time_bootstrap(args.repeats)
    print("mean_interval, 100 values, n_boot=10000: " + ", ".join(f"{k} {v:.3f} s" for k, v in boot.items()))
    seeds, epochs = (10, 30) if args.quick else (100, 100)
    runs, ep, preds, meta, _ = fake_store(arms=("base", "alt"), seeds=seeds, folds=5, epochs=epochs,
                                          val_size=30, n_classes=10, diverged=("base", 0, 0, 3), seed=1)
    times = []
    for _ in range(max(1, args.repeats)):
        start = time.perf_counter()
        summary = summarize(runs, ep, preds, meta)
        times.append(time.perf_counter() - start)
    json.dumps(summary.to_dict(), allow_nan=False)
    best = min(times)
    size = f"{len(runs)} runs x {epochs} epochs x 30 images ({len(preds):,} prediction rows)"
    print(f"summarize: {size}; best of {len(times)}: {best:.3f} s")
    if not args.no_record:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        boot_text = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in boot.items())
        append_result("stats", f"- {stamp} summarize, {size}: {best:.2f} s best of {len(times)}; "
                      f"mean_interval n_boot=10000 over 100 values: {boot_text} "
                      f"({platform.machine()}, python {platform.python_version()})")
    print(f"{best:.3f}")


if __name__ == "__main__":
    main()
