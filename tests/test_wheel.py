"""The built wheel, installed into a fresh virtual environment, run from outside the repository.

The fresh environment sees this environment's third-party packages through a .pth line (so
TensorFlow is not downloaded again; .pth files there are not run, so an editable valstat stays
out), and valstat comes from the wheel alone: the test checks where it is imported from.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from conftest import REPO, TINY

pytestmark = pytest.mark.wheel


def run(*args, cwd, timeout=600):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env={k: v for k, v in os.environ.items()
                                                if k not in ("PYTHONPATH", "VIRTUAL_ENV")})


def fresh_python(root: Path) -> Path:
    venv.create(root, with_pip=True)
    python = root / "bin" / "python"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
               cwd=root).stdout.strip()
    shared = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "outer_packages.pth").write_text("\n".join(sorted(shared)) + "\n")
    return python


def test_wheel_installs_and_runs_a_tiny_sweep_outside_the_repository(tmp_path):
    dist = tmp_path / "dist"
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", dist, REPO, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next(dist.glob("valstat-*.whl"))
    python = fresh_python(tmp_path / "env")
    installed = run(python, "-m", "pip", "install", "--no-deps", "--ignore-installed", wheel,
                    cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]

    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "tiny.toml").write_text(TINY.read_text())
    where = run(python, "-c", "import valstat, importlib.metadata as m; "
                "print(valstat.__file__); print(m.version('valstat'))", cwd=work)
    origin, number = where.stdout.split()
    assert Path(origin).is_relative_to(tmp_path / "env"), origin
    valstat = tmp_path / "env" / "bin" / "valstat"
    for command in ([valstat, "--version"], [python, "-m", "valstat", "--version"]):
        assert run(*command, cwd=work).stdout == f"valstat {number}\n"

    plan = run(valstat, "run", "default", "--seeds", "1", "--epochs", "1", "--dry-run", cwd=work)
    assert plan.returncode == 0 and plan.stderr == "", plan.stderr
    assert "2 runs planned, 0 already stored in reports/default" in plan.stdout
    assert not (work / "reports").exists()

    sweep = run(valstat, "run", "tiny.toml", "--seeds", "1", "--epochs", "1", "--out", "out",
                cwd=work)
    assert sweep.returncode == 0 and sweep.stderr == "", sweep.stderr
    assert "2 runs trained, 0 already stored, 0 diverged; 2/2 runs in out" in sweep.stdout
    exported = run(valstat, "export", "out", "--parquet", "pq", cwd=work)
    assert exported.returncode == 0, exported.stderr
    assert sorted(p.name for p in (work / "pq").iterdir()) == \
        ["epochs.parquet", "predictions.parquet", "runs.parquet"]
