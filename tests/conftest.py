"""Shared fixtures: a tiny experiment, image folders written as real files, a tiny real sweep."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TESTS = Path(__file__).resolve().parent
TINY = TESTS / "data" / "tiny.toml"
REPO = TESTS.parent


def valstat(*args, cwd=None, timeout=600, env=None):
    """Run the real `valstat` entry point (env: variables set on top of this process's);
    returns CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "valstat.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, **env} if env else None)


FAILING_SITE = """
import functools

import valstat.engine.fused
import valstat.train


def _failing(train):
    @functools.wraps(train)       # same name and module: pickled to workers by reference
    def wrapped(specs, *args, **kwargs):
        first = specs[0] if isinstance(specs, list) else specs
        if first.arm.name in {arms!r}:
            raise ValueError("injected failure of arm " + first.arm.name)
        return train(specs, *args, **kwargs)
    return wrapped


valstat.train.train_one_run = _failing(valstat.train.train_one_run)
valstat.engine.fused.train_pack = _failing(valstat.engine.fused.train_pack)
"""


def valstat_with_failing_arms(arms: tuple, site_dir: Path, *args):
    """Run `valstat` where each run (or fused pack) of `arms` raises ValueError on its worker: a
    sitecustomize.py in `site_dir`, first on PYTHONPATH, wraps the training functions in every
    process, the spawned Dask workers included (they inherit the environment)."""
    site_dir.mkdir(parents=True, exist_ok=True)
    (site_dir / "sitecustomize.py").write_text(FAILING_SITE.format(arms=tuple(arms)))
    path = os.pathsep.join(filter(None, [str(site_dir), os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "valstat.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": path})


def count_rows(out, table: str = "runs") -> int:
    """Rows in one table of the store in `out`, 0 while it has none. The connection is closed
    before returning: one left open (Python's sqlite3 frees it only in a GC cycle) keeps this
    process's WAL index mapped, and after a writer is killed mid-commit a later read here would
    trust that stale index and miss the writer's last committed run."""
    from valstat.store import store_path

    if not store_path(out).exists():       # sqlite3.connect would create an empty file
        return 0
    connection = sqlite3.connect(store_path(out))
    try:
        return connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        connection.close()


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def write_image_folder(root: Path, classes=("cats", "dogs"), per_class=20, size=24, seed=0):
    """Real PNG/JPEG files in Keras layout: class-dependent brightness patterns plus noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            base = np.zeros((size, size, 3))
            base[:, : size // 2] = 200 if label == 0 else 40
            base[:, size // 2:] = 40 if label == 0 else 200
            pixels = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
            suffix = ".png" if index % 2 else ".jpg"
            Image.fromarray(pixels).save(folder / f"img_{index:03d}{suffix}")
    return root


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
    """A real 2-arm x 2-seed sweep on the built-in digits (3 epochs, 16 px), stored once."""
    out = tmp_path_factory.mktemp("tiny_sweep")
    result = valstat("run", TINY, "--out", out, "--quiet", "--workers", "2")
    assert result.returncode == 0, result.stderr
    return out
