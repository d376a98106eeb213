"""Run a sweep's specs on Dask distributed and write each finished run to the store.

Workers are spawned processes (TensorFlow is unsafe after fork); each gets cores/workers
threads for TensorFlow. The driver writes a run in one transaction as soon as it finishes, so an
interrupted sweep keeps every finished run and the same command resumes it.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from valstat.config import ClusterConfig, Experiment
from valstat.data import load_dataset
from valstat.errors import UserError
from valstat.splits import RunSpec, plan_runs
from valstat.store import Store, read_meta


@dataclass
class SweepOutcome:
    planned: int
    already_done: int
    finished: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    interrupted: bool = False


def default_layout(cores: int, image_size: int) -> tuple[int, int]:
    """(workers, threads per worker). Small inputs train faster as one-thread processes
    (benchmarks/scaling); large inputs as fewer processes with more threads each."""
    workers = cores if image_size <= 64 else max(1, cores // 2)
    return workers, max(1, cores // workers)


def prepare(experiment: Experiment, out_dir: Path) -> tuple[list[RunSpec], dict]:
    """Decode the data once, plan every run, and check the store belongs to this experiment."""
    existing = read_meta(out_dir)
    if existing and existing.get("config_hash") not in (None, experiment.config_hash()):
        raise UserError(f"{out_dir} holds a store written by a different experiment config "
                        f"('{existing.get('experiment')}', {existing.get('source_file')}); "
                        "use another --out folder")
    arm = experiment.arms[0]
    cache_dir = out_dir / "cache"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create output folder {out_dir}: {error.strerror}") from None
    if not os.access(out_dir, os.W_OK):
        raise UserError(f"output folder {out_dir} is not writable; choose another --out")
    for other in experiment.arms:      # decode every input size once, into the workers' cache
        load_dataset(other.data.source, other.data.image_size, cache_dir)
    dataset = load_dataset(arm.data.source, arm.data.image_size, cache_dir)
    specs = plan_runs(experiment, dataset.labels, dataset.n_classes, str(cache_dir))
    truth = {}
    for spec in specs:
        truth.setdefault(spec.arm.name, [int(i) for i in spec.split.truth])
    meta = {**experiment.describe(), "config_hash": experiment.config_hash(),
            "dataset": {**dataset.describe(), "n_truth": len(next(iter(truth.values()), []))},
            "truth_examples": truth}
    return specs, meta


def slurm_cluster(settings: ClusterConfig, threads: int):
    """A dask-jobqueue SLURMCluster from the experiment's [cluster] table (jobs not yet
    submitted: call .scale(jobs=...)). With `gpus = N`, each job asks SLURM for N GPUs
    (--gres=gpu:N), runs N worker processes (one per GPU) with the Dask resource GPU=1 each,
    on Keras's JAX backend."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise UserError("[cluster] kind = \"slurm\" needs dask-jobqueue: "
                        "pip install -e \".[slurm]\"") from None
    options = {"queue": settings.queue or None, "account": settings.account or None}
    prologue = ["export TF_CPP_MIN_LOG_LEVEL=2", f"export OMP_NUM_THREADS={threads}"]
    processes = settings.processes
    gpus = getattr(settings, "gpus", 0)
    if gpus:
        processes = gpus
        options["job_extra_directives"] = [f"--gres=gpu:{gpus}"]
        options["worker_extra_args"] = ["--resources", "GPU=1"]
        prologue += [f"export {key}={value}" for key, value in GPU_WORKER_ENV.items()]
    return SLURMCluster(cores=settings.cores, processes=processes,
                        memory=settings.memory, walltime=settings.walltime,
                        job_script_prologue=prologue,
                        **{key: value for key, value in options.items() if value})


# Workers of the fused engine: Keras on JAX; several processes may share a GPU's memory.
GPU_WORKER_ENV = {"KERAS_BACKEND": "jax", "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
                  "TF_CPP_MIN_LOG_LEVEL": "2"}


def _dask_client(workers: int, threads: int, scheduler: str | None,
                 settings: ClusterConfig | None = None, engine=None):
    from dask.distributed import Client, LocalCluster

    if settings is not None and settings.kind == "slurm" and not scheduler:
        cluster = slurm_cluster(settings, threads)
        cluster.scale(jobs=settings.jobs)
        return Client(cluster)
    if scheduler:
        try:
            return Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as error:
            raise UserError(f"cannot reach the Dask scheduler at {scheduler}: {error}") from None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Workers inherit an ignored SIGINT, so Ctrl-C in the terminal stops only the driver,
    # which then shuts the cluster down in order.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if engine is not None and engine.kind == "gpu":
            cluster = _gpu_cluster(engine.gpus)
        else:
            extra = {"env": {**GPU_WORKER_ENV, "JAX_PLATFORMS": "cpu"}} if (
                engine is not None and engine.backend == "jax") else {}
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=50, **extra)
    finally:
        signal.signal(signal.SIGINT, previous)
    return Client(cluster)


def _gpu_cluster(gpus: int):
    """One spawned worker per GPU (it sees only that GPU), each with the Dask resource GPU=1."""
    from dask.distributed import Nanny, Scheduler, SpecCluster

    workers = {f"gpu{index}": {"cls": Nanny, "options": {
        "nthreads": 1, "resources": {"GPU": 1}, "silence_logs": 50,
        "env": {**GPU_WORKER_ENV, "CUDA_VISIBLE_DEVICES": str(index)}}}
        for index in range(gpus)}
    return SpecCluster(workers=workers, silence_logs=50,
                       scheduler={"cls": Scheduler, "options": {"dashboard_address": None}})


def check_engine(store: Store, engine) -> None:
    """Refuse to add runs from an engine whose curves differ from those already stored
    (another backend or device kind); records the engine in a store that has none yet."""
    meta = store.meta()
    stored = meta.get("engine")
    if stored is None and store.finished_run_ids():
        backends = {row[0] for row in store.connection.execute(
            "SELECT DISTINCT backend FROM runs")}
        stored = {"backend": next(iter(backends)) if len(backends) == 1 else "mixed",
                  "device": "cpu"}                   # stores before --device: CPU only
    if stored is not None and stored != engine.identity:
        raise UserError(f"this store holds runs trained with {stored['backend']} on "
                        f"{stored['device'].upper()}; its curves would not be comparable with "
                        f"{engine.backend} on {engine.kind.upper()}: use --device "
                        f"{stored['device']} or another --out folder")
    if meta.get("engine") is None:
        store.set_meta({"engine": engine.identity})


def run_sweep(experiment: Experiment, out_dir: str | Path, workers: int | None = None,
              scheduler: str | None = None, progress=None, reuse: bool = True,
              engine=None, pack_size: int | None = None, announce=None) -> SweepOutcome:
    """Train every pending run of `experiment` and store it in `out_dir`.

    progress: optional object with start(total, done), advance(record), stop() methods.
    reuse: each worker compiles a model once per arm and reuses it (False: build and compile
    one per run, the path before compile-once; same curves, slower).
    engine: valstat.engine.device.Engine (default: the CPU TensorFlow engine); a fused engine
    trains packs of up to `pack_size` runs of one arm as one program (default: all of them).
    announce: called once, just before training starts (the CLI prints the engine line).
    """
    from dask.distributed import as_completed

    from valstat.engine.device import resolve_device
    from valstat.train import train_one_run

    out_dir = Path(out_dir)
    engine = engine or resolve_device("cpu")
    specs, meta = prepare(experiment, out_dir)
    store = Store(out_dir)
    try:
        check_engine(store, engine)
        store.set_meta(meta)
        done = store.finished_run_ids()
        pending = [spec for spec in specs if spec.run_id not in done]
        outcome = SweepOutcome(planned=len(specs), already_done=len(specs) - len(pending))
        if not pending:
            return outcome
        cores = os.cpu_count() or 1
        max_size = max(arm.data.image_size for arm in experiment.arms)
        default_workers, _ = default_layout(cores, max_size)
        workers = min(workers or default_workers, len(pending))
        threads = max(1, cores // workers)
        if experiment.cluster.kind == "slurm":
            threads = max(1, experiment.cluster.cores // experiment.cluster.processes)
        if progress:
            progress.start(len(specs), outcome.already_done)
        if engine.kind == "gpu":
            workers = engine.gpus
        client = _dask_client(workers, threads, scheduler, experiment.cluster, engine)
        if announce:
            announce()              # workers reachable: training starts now
        try:
            if engine.fused:
                from valstat.engine.fused import pack_specs, train_pack

                resources = {"GPU": 1} if engine.kind == "gpu" else None
                packs = pack_specs(pending, pack_size or len(pending))
                futures = [client.submit(train_pack, pack, threads, resources=resources,
                                         key=f"valstat-pack-{pack[0].run_id}-{len(pack)}",
                                         pure=False, retries=1) for pack in packs]
            else:
                futures = [client.submit(train_one_run, spec, threads, reuse,
                                         key=f"valstat-{spec.run_id}", pure=False, retries=2)
                           for spec in pending]
            for future in as_completed(futures):
                result = future.result()
                for record in result if isinstance(result, list) else [result]:
                    if store.write_run(record):       # each run in its own transaction
                        _remember_model(store, record)
                        bucket = (outcome.diverged if record.run["status"] == "diverged"
                                  else outcome.finished)
                        bucket.append(record.run["run_id"])
                    if progress:
                        progress.advance(record)
        except KeyboardInterrupt:
            outcome.interrupted = True
        finally:
            client.close()
            if client.cluster is not None:
                client.cluster.close()
    finally:
        if progress:
            progress.stop()
        store.close()
    return outcome


def _remember_model(store: Store, record) -> None:
    if not record.model:
        return
    summary = store.meta().get("model_summary", {})
    if record.run["arm"] not in summary:
        summary[record.run["arm"]] = record.model
        store.set_meta({"model_summary": summary,
                        "versions": {"python": record.run["python_version"],
                                     "tensorflow": record.run["tf_version"],
                                     "keras": record.run["keras_version"],
                                     "backend": record.run["backend"],
                                     "backend_version": record.run.get("backend_version"),
                                     "device": record.run.get("device")}})
