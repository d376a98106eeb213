"""--device, the engine recorded per run and per store, old stores, GPU workers on SLURM."""

from __future__ import annotations

import sqlite3

import pytest

from conftest import TINY, valstat, valstat_with_failing_arms
from valstat.errors import ValstatError
from valstat.store import Store, load_tables, store_path


def test_gpu_request_without_a_gpu_is_one_clear_error():
    from valstat.engine.device import jax_gpus, resolve_device

    if jax_gpus():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValstatError, match="--device gpu: no GPU found"):
        resolve_device("gpu")
    cpu = resolve_device("cpu")
    assert (cpu.backend, cpu.kind, cpu.fused) == ("tensorflow", "cpu", False)
    assert resolve_device("auto") == cpu


def test_cli_device_gpu_without_gpu_exits_with_one_line(tmp_path):
    from valstat.engine.device import jax_gpus

    if jax_gpus():
        pytest.skip("this machine has a GPU")
    result = valstat("run", TINY, "--device", "gpu", "--out", tmp_path / "out", "--quiet")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no GPU found" in lines[0], result.stderr
    assert not store_path(tmp_path / "out").exists()


def test_runs_record_backend_and_device_and_engines_never_mix(tmp_path):
    out = tmp_path / "out"
    first = valstat("run", TINY, "--seeds", "1", "--epochs", "1", "--device", "cpu",
                    "--out", out, "--quiet", "--workers", "1")
    assert first.returncode == 0, first.stderr
    assert "training on tensorflow" in first.stdout and "CPU" in first.stdout
    tables = load_tables(out)
    assert set(tables.runs.backend) == {"tensorflow"} and set(tables.runs.device) == {"cpu"}
    assert tables.runs.backend_version.notna().all()
    assert tables.meta["engine"] == {"backend": "tensorflow", "device": "cpu"}
    pytest.importorskip("jax")
    mixed = valstat("run", TINY, "--seeds", "2", "--epochs", "1", "--device", "cpu",
                    "--engine", "fused", "--out", out, "--quiet")
    assert mixed.returncode == 2
    assert mixed.stderr.strip().splitlines()[-1].startswith("valstat: error: this store holds "
                                                            "runs trained with tensorflow")
    assert len(load_tables(out).runs) == 2      # nothing added


def test_a_store_from_before_the_device_columns_opens_and_gains_them(tmp_path):
    path = store_path(tmp_path)
    connection = sqlite3.connect(path)
    connection.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE runs (run_id TEXT PRIMARY KEY, experiment TEXT NOT NULL, arm TEXT NOT NULL,
            seed INTEGER NOT NULL, fold INTEGER NOT NULL, split_seed INTEGER NOT NULL,
            init_seed INTEGER NOT NULL, order_seed INTEGER NOT NULL, status TEXT NOT NULL,
            wall_s REAL, n_train INTEGER, n_val INTEGER, n_truth INTEGER, epochs_run INTEGER,
            python_version TEXT, tf_version TEXT, keras_version TEXT, backend TEXT,
            finished_at TEXT, val_examples TEXT, train_examples TEXT);
        CREATE TABLE epochs (run_id TEXT, epoch INTEGER, loss REAL, accuracy REAL,
            val_loss REAL, val_accuracy REAL, learning_rate REAL, truth_accuracy REAL,
            PRIMARY KEY (run_id, epoch));
        CREATE TABLE predictions (run_id TEXT, epoch INTEGER, example INTEGER, label INTEGER,
            predicted INTEGER, p_true REAL, PRIMARY KEY (run_id, epoch, example)) WITHOUT ROWID;
        INSERT INTO runs VALUES ('a/s0/f0', 'x', 'a', 0, 0, 0, 0, 0, 'finished', 1.0, 10, 30, 0,
            1, '3.11', '2.21.0', '3.15.1', 'tensorflow', 'now', '[]', '[]');
    """)
    connection.commit()
    connection.close()
    assert load_tables(tmp_path).runs.device.isna().all()          # readable as it is
    with Store(tmp_path) as store:
        from valstat.engine.device import Engine
        from valstat.execute import check_engine

        check_engine(store, Engine("tensorflow", "cpu", "x", "2.21", False))
        with pytest.raises(ValstatError, match="trained with tensorflow on CPU"):
            check_engine(store, Engine("jax", "gpu", "H100", "0.10", True, gpus=1))
    runs = load_tables(tmp_path).runs
    assert {"backend_version", "device"} <= set(runs.columns) and runs.device.isna().all()


def test_slurm_gpus_ask_for_gres_and_start_one_jax_worker_per_gpu(tmp_path):
    pytest.importorskip("dask_jobqueue")
    from valstat.config import load_experiment
    from valstat.execute import slurm_cluster

    experiment_file = tmp_path / "gpu.toml"
    experiment_file.write_text(TINY.read_text() + '\n[cluster]\nkind = "slurm"\njobs = 2\n'
                               'cores = 16\nprocesses = 4\ngpus = 2\nqueue = "gpu"\n')
    experiment = load_experiment(str(experiment_file))
    cluster = slurm_cluster(experiment.cluster, threads=8)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH --gres=gpu:2" in script
    assert "--nworkers 2" in script and "--resources GPU=1" in script
    assert "export KERAS_BACKEND=jax" in script
    assert "export XLA_PYTHON_CLIENT_PREALLOCATE=false" in script


def test_negative_gpus_is_one_clear_error(tmp_path):
    from valstat.config import load_experiment

    experiment_file = tmp_path / "bad.toml"
    experiment_file.write_text(TINY.read_text() + '\n[cluster]\ngpus = -1\n')
    with pytest.raises(ValstatError, match=r"\[cluster\] gpus in .*bad.toml must be 0 or more"):
        load_experiment(str(experiment_file))


def test_gpu_engine_schedules_packs_on_workers_with_the_gpu_resource(tmp_path):
    """The GPU layout (one worker per GPU, Dask resource GPU=1, packs that request it), run
    here on JAX's CPU so that the scheduling path is tested without a GPU."""
    pytest.importorskip("jax")
    from valstat.config import load_experiment
    from valstat.engine.device import Engine
    from valstat.execute import run_sweep

    experiment = load_experiment(str(TINY), {"seeds": 2, "epochs": 1})
    engine = Engine("jax", "gpu", "test", "0", True, gpus=1)
    outcome = run_sweep(experiment, tmp_path, engine=engine, pack_size=2)
    assert sorted(outcome.finished + outcome.diverged) == sorted(
        f"{arm}/s{seed}/f0" for arm in ("plain", "batchnorm") for seed in (0, 1))
    tables = load_tables(tmp_path)
    assert set(tables.runs.backend) == {"jax"} and len(tables.epochs) == 4
    assert tables.meta["engine"] == {"backend": "jax", "device": "gpu"}


def test_slurm_gpus_make_the_gpu_engine_without_a_local_gpu():
    from valstat.engine.device import resolve_device

    engine = resolve_device("auto", cluster_gpus=2)
    assert (engine.backend, engine.kind, engine.fused, engine.gpus) == ("jax", "gpu", True, 2)
    assert resolve_device("cpu", cluster_gpus=2).kind == "cpu"


def test_a_failing_pack_names_every_run_it_held(tmp_path):
    pytest.importorskip("jax")
    out = tmp_path / "out"
    result = valstat_with_failing_arms(("plain",), tmp_path / "site", "run", TINY, "--seeds", "2",
                                       "--epochs", "1", "--device", "cpu", "--engine", "fused",
                                       "--out", out, "--quiet")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors == ["valstat: error: the 2 runs plain/s0/f0, plain/s1/f0 (one fused pack) "
                      "failed on a worker: ValueError: injected failure of arm plain"], result.stderr
    assert sorted(load_tables(out).runs.run_id) == ["batchnorm/s0/f0", "batchnorm/s1/f0"]


def test_dry_run_times_the_engine_it_would_train_with(tmp_path):
    """--engine fused times a fused pack on JAX workers (here JAX's CPU), names that engine, and
    writes nothing."""
    pytest.importorskip("jax")
    out = tmp_path / "out"
    result = valstat("run", TINY, "--seeds", "2", "--out", out, "--engine", "fused",
                     "--device", "cpu", "--dry-run")
    assert result.returncode == 0, result.stderr
    plan, _, estimate = result.stdout.rpartition("\n4 runs planned, 0 already stored in ")[2] \
        .partition("\nestimated time: ")
    assert "; would train on jax " in plan and plan.endswith("(fused seeds)")
    assert "s per run, timed here from trial runs on " in estimate
    assert "workers at once, plus " in estimate and "s to start and compile)" in estimate
    assert not out.exists()


def test_probing_for_a_gpu_turns_off_jax_preallocation_in_the_driver_unless_set():
    """The driver only asks JAX for GPUs; with JAX's default it would hold 75 % of a GPU's
    memory for the whole sweep, beside the worker that trains there."""
    pytest.importorskip("jax")
    import os
    import subprocess
    import sys

    probe = ("import os; from valstat.engine.device import jax_gpus; jax_gpus(); "
             "print(os.environ['XLA_PYTHON_CLIENT_PREALLOCATE'])")
    env = {key: value for key, value in os.environ.items()
           if key != "XLA_PYTHON_CLIENT_PREALLOCATE"}
    for preset, expected in ((None, "false"), ("true", "true")):
        child_env = env if preset is None else {**env, "XLA_PYTHON_CLIENT_PREALLOCATE": preset}
        result = subprocess.run([sys.executable, "-c", probe], env=child_env, text=True,
                                capture_output=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == expected
