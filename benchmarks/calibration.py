"""Calibration table: coverage of every interval valstat prints, power/size of every named test.

Runs valstat.stats.calibration.run_all (simulated designs with known truth) at --reps
replications per design (default 4000), replaces the "## calibration" section of
benchmarks/RESULTS.md with the table, and writes valstat/report/calibration.json, from which
the report's methods section quotes the coverage reached. Heavy: run under flock.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import RESULTS, machine

from valstat.stats import calibration

DATA = Path(__file__).resolve().parent.parent / "valstat" / "report" / "calibration.json"


def table(checks, reps, seconds) -> list[str]:
    lines = [f"- {machine()}: {reps} replications per design, seed 0, {seconds:.0f} s "
             f"(`python benchmarks/calibration.py`); pass = within 3 binomial s.e. of the floor "
             f"({calibration.COVERAGE_FLOOR} coverage for nominal 95 % intervals, the stated power, size 0.05); "
             "reaches floor = the rate itself is on the right side of the floor.", "",
             "| interval or test | design | kind | nominal | rate | s.e. | pass (3 s.e.) | reaches floor |",
             "|---|---|---|---|---|---|---|---|"]
    for c in checks:
        reached = c.rate <= c.floor if c.kind == "size" else c.rate >= c.floor
        lines.append(f"| {c.name} | {c.design} | {c.kind} | {c.target:.2f} | {c.rate:.3f} | {c.mcse:.3f} | "
                     f"{'yes' if c.ok() else 'NO'} | {'yes' if reached else 'no'} |")
    short = [f"{c.name} [{c.design}] {c.rate:.3f}" for c in checks
             if (c.rate > c.floor if c.kind == "size" else c.rate < c.floor)]
    lines += ["", "Short of the floor: " + ("; ".join(short) if short else "none") + "."]
    return lines


def replace_section(section: str, body: list[str]) -> None:
    """Put `body` as the whole "## section" part of RESULTS.md, leaving other sections alone."""
    lines = RESULTS.read_text().rstrip("\n").split("\n")
    heading = f"## {section}"
    if heading in lines:
        start = lines.index(heading) + 1
        stop = start
        while stop < len(lines) and not lines[stop].startswith("## "):
            stop += 1
        lines[start:stop] = body + ([""] if stop < len(lines) else [])
    else:
        lines += ["", heading] + body
    RESULTS.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    checks = calibration.run_all(reps=args.reps, seed=args.seed)
    seconds = time.perf_counter() - start
    replace_section("calibration", table(checks, args.reps, seconds))
    DATA.write_text(json.dumps({
        "reps": args.reps, "seed": args.seed, "source": "benchmarks/calibration.py",
        "coverage": {k: round(v, 3) for k, v in calibration.summarize_checks(checks).items()},
        "rows": [{"name": c.name, "design": c.design, "kind": c.kind, "target": c.target,
                  "rate": round(c.rate, 4), "reps": c.reps} for c in checks],
    }, indent=1) + "\n")
    failed = [c for c in checks if not c.ok()]
    print("\n".join(table(checks, args.reps, seconds)))
    print(f"{len(checks) - len(failed)}/{len(checks)} checks pass")


if __name__ == "__main__":
    main()
