"""Shared by the benchmarks: where results go and what machine produced them."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")   # before any benchmark imports TensorFlow


def machine() -> str:
    """One line: date, CPU count, platform and library versions."""
    import importlib.metadata as metadata

    def version(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "absent"

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"{stamp}, {os.cpu_count()} cores {platform.machine()}, python "
            f"{platform.python_version()}, tensorflow {version('tensorflow-cpu')}, "
            f"keras {version('keras')}, dask {version('dask')}")


def append_result(section: str, line: str) -> None:
    """Add `line` at the end of the "## section" part of RESULTS.md, leaving others alone."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    lines = text.rstrip("\n").split("\n")
    heading = f"## {section}"
    if heading not in lines:
        lines += ["", heading]
    index = lines.index(heading) + 1
    while index < len(lines) and not lines[index].startswith("## "):
        index += 1
    while index > 0 and lines[index - 1] == "":
        index -= 1
    lines.insert(index, line)
    RESULTS.write_text("\n".join(lines) + "\n")


def default_specs(image_size: int, epochs: int, seeds: int = 1, cache_dir: str | None = None):
    """The default experiment's run specs at `image_size` and `epochs` (arms x seeds)."""
    from valstat.config import load_experiment
    from valstat.data import load_dataset
    from valstat.splits import plan_runs

    experiment = load_experiment(None, {"seeds": seeds, "epochs": epochs,
                                        "image_size": image_size})
    dataset = load_dataset("digits", image_size, cache_dir)
    return experiment, dataset, plan_runs(experiment, dataset.labels, dataset.n_classes,
                                          cache_dir)
