"""`valstat stats` + `valstat report` time on a synthetic store (no training).

The store is written by valstat.store.write_tables from valstat.synthetic.fake_store:
1,000 runs x 30 epochs x 30 images (--quick: 100 runs). Both commands run as the real CLI in
subprocesses. Prints the total seconds as the last line.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import append_result, machine


def write_store(out: Path, seeds: int, epochs: int) -> int:
    from valstat.synthetic import fake_store
    from valstat.store import write_tables

    runs, epoch_rows, predictions, meta, _ = fake_store(
        arms=("founding", "contrast"), seeds=seeds, folds=5, epochs=epochs, val_size=30,
        n_classes=10, seed=3)
    return write_tables(out, runs, epoch_rows, predictions, meta)


def timed_cli(*args) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "valstat.cli", *map(str, args)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 runs instead of 1,000")
    args = parser.parse_args()
    seeds = 10 if args.quick else 100
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        runs = write_store(out, seeds, epochs=30)
        stats_s = timed_cli("stats", out, "--json")
        report_s = timed_cli("report", out)
    total = stats_s + report_s
    print(f"{runs} runs x 30 epochs: valstat stats {stats_s:.1f} s, valstat report {report_s:.1f} s")
    append_result("analysis", f"- {machine()}: {runs} runs x 30 epochs x 30 images"
                  f"{' (quick)' if args.quick else ''}: stats {stats_s:.1f} s, "
                  f"report {report_s:.1f} s")
    print(f"{total:.1f}")


if __name__ == "__main__":
    main()
