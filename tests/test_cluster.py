"""Sweeps on a Dask cluster the test starts on loopback: lost workers, same answers as local."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import TINY, count_rows, valstat
from valstat.store import load_tables


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def dask_process(*args):
    return subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


@pytest.fixture
def cluster():
    """A scheduler and two single-thread workers (separate `dask worker` commands): yields the
    address, the worker processes and the scheduler process."""
    address = f"tcp://127.0.0.1:{free_port()}"
    scheduler = dask_process("scheduler", "--host", "127.0.0.1", "--port",
                             address.rsplit(":", 1)[1], "--no-dashboard")
    workers = [dask_process("worker", address, "--nworkers", "1", "--nthreads", "1",
                            "--no-dashboard", "--name", f"w{i}") for i in range(2)]
    from dask.distributed import Client

    deadline = time.time() + 90
    while True:
        try:
            with Client(address, timeout="5s") as client:
                client.wait_for_workers(2, timeout=60)
            break
        except (OSError, TimeoutError):
            if time.time() > deadline:
                raise
            time.sleep(1)
    yield address, workers, scheduler
    for process in [*workers, scheduler]:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_killed_worker_does_not_stop_the_sweep_and_answers_match_local(cluster, tmp_path):
    address, workers, _ = cluster
    out = tmp_path / "cluster"
    driver = subprocess.Popen(
        [sys.executable, "-m", "valstat.cli", "run", str(TINY), "--seeds", "3", "--epochs", "3",
         "--out", str(out), "--quiet", "--scheduler", address],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while count_rows(out) < 1:
        assert driver.poll() is None, driver.communicate()
        assert time.time() < deadline, "no run finished on the cluster"
        time.sleep(0.3)
    os.killpg(workers[0].pid, signal.SIGKILL)             # a worker machine goes away mid-sweep
    stdout, stderr = driver.communicate(timeout=600)
    assert driver.returncode == 0, stderr
    cluster_tables = load_tables(out)
    assert len(cluster_tables.runs) == 6 and cluster_tables.runs.run_id.is_unique
    assert len(cluster_tables.epochs) == 18
    assert not cluster_tables.epochs.duplicated(["run_id", "epoch"]).any()

    local = tmp_path / "local"
    result = valstat("run", TINY, "--seeds", "3", "--epochs", "3", "--out", local, "--quiet",
                     "--workers", "2")
    assert result.returncode == 0, result.stderr
    local_tables = load_tables(local)
    columns = ["run_id", "epoch", "loss", "val_loss", "val_accuracy", "learning_rate",
               "truth_accuracy"]
    pd.testing.assert_frame_equal(local_tables.epochs[columns].reset_index(drop=True),
                                  cluster_tables.epochs[columns].reset_index(drop=True),
                                  check_exact=True)
    pd.testing.assert_frame_equal(local_tables.predictions.reset_index(drop=True),
                                  cluster_tables.predictions.reset_index(drop=True),
                                  check_exact=True)


def test_unreachable_scheduler_is_one_clear_line(tmp_path):
    result = valstat("run", TINY, "--seeds", "1", "--out", tmp_path / "o", "--quiet",
                     "--scheduler", f"tcp://127.0.0.1:{free_port()}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("valstat: error: cannot reach the Dask scheduler")


def test_slurm_settings_from_the_experiment_file_reach_the_job_script(tmp_path):
    from valstat.config import load_experiment
    from valstat.execute import slurm_cluster

    experiment_file = tmp_path / "slurm.toml"
    experiment_file.write_text(TINY.read_text() + '\n[cluster]\nkind = "slurm"\njobs = 3\n'
                               'cores = 8\nprocesses = 4\nmemory = "24GB"\n'
                               'walltime = "02:30:00"\nqueue = "gpu-short"\naccount = "thesis"\n')
    experiment = load_experiment(str(experiment_file))
    assert experiment.cluster.jobs == 3
    cluster = slurm_cluster(experiment.cluster, threads=2)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in ("#SBATCH -p gpu-short", "#SBATCH -A thesis", "#SBATCH -t 02:30:00",
                 "#SBATCH --cpus-per-task=8", "export OMP_NUM_THREADS=2"):
        assert line in script, script
    assert "--nworkers 4" in script and "--nthreads 2" in script
    # the dry run plans for the jobs' 3 x 4 workers, not this machine's cores
    from valstat.execute import _layout

    assert _layout(experiment, 100, None) == (12, 2) and _layout(experiment, 5, 1) == (5, 2)


def test_a_job_slurm_refuses_or_a_machine_without_slurm_is_one_line_not_a_hang(tmp_path):
    experiment_file = tmp_path / "slurm.toml"
    experiment_file.write_text(TINY.read_text() + '\n[cluster]\nkind = "slurm"\njobs = 2\n'
                               'cores = 2\nprocesses = 2\nqueue = "gpu-short"\n')
    fake = tmp_path / "bin"
    fake.mkdir()
    sbatch = fake / "sbatch"      # what SLURM's sbatch prints for a partition it does not have
    sbatch.write_text('#!/bin/sh\necho "sbatch: error: invalid partition specified: gpu-short" >&2\n'
                      'echo "sbatch: error: Batch job submission failed: Invalid partition name specified" >&2\n'
                      'exit 1\n')
    sbatch.chmod(0o755)
    refused = valstat("run", experiment_file, "--seeds", "1", "--out", tmp_path / "a", "--quiet", timeout=120,
                      env={"PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"})
    assert refused.returncode == 2 and "Traceback" not in refused.stderr and "tornado" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        "valstat: error: SLURM refused the workers' job (sbatch: error: Batch job submission failed: Invalid "
        "partition name specified); check [cluster] queue, account, cores, memory and walltime"]
    missing = valstat("run", experiment_file, "--seeds", "1", "--out", tmp_path / "b", "--quiet", timeout=120,
                      env={"PATH": os.path.dirname(sys.executable)})
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "needs SLURM's sbatch, which is not on PATH" in missing.stderr


def test_cluster_settings_do_not_change_the_config_hash(tmp_path):
    from valstat.config import load_experiment

    with_cluster = tmp_path / "with_cluster.toml"
    with_cluster.write_text(TINY.read_text() + '\n[cluster]\nkind = "slurm"\njobs = 2\n')
    assert load_experiment(str(with_cluster)).config_hash() == load_experiment(str(TINY)).config_hash()


def test_a_lost_scheduler_is_one_line_and_the_same_command_resumes(cluster, tmp_path):
    address, _, scheduler = cluster
    out = tmp_path / "lost"
    # 30 runs, so that the sweep is still going when the scheduler dies: once both workers have
    # compiled, a tiny run takes about 0.2 s and 6 runs could all land between two polls
    command = [sys.executable, "-m", "valstat.cli", "run", str(TINY), "--seeds", "15", "--epochs", "3",
               "--out", str(out), "--quiet", "--scheduler", address]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while count_rows(out) < 1:
        assert driver.poll() is None, driver.communicate()
        assert time.time() < deadline, "no run finished on the cluster"
        time.sleep(0.3)
    os.killpg(scheduler.pid, signal.SIGKILL)              # the scheduler's machine goes away
    stdout, stderr = driver.communicate(timeout=120)
    stored = count_rows(out)
    assert driver.returncode == 1 and 1 <= stored < 30
    assert f"CPU: the workers of {address} (" in stdout.splitlines()[0]   # not this machine's CPU
    assert stderr.strip().splitlines() == [
        f"valstat: error: lost the Dask scheduler at {address}; {stored} of 30 runs are stored in {out}. "
        "Start the scheduler again and run the same command: it trains only the runs not stored yet."]
    result = valstat("run", TINY, "--seeds", "15", "--epochs", "3", "--out", out, "--quiet", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert len(load_tables(out).runs) == 30
