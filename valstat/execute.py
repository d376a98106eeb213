"""Run a sweep's specs on Dask distributed and write each finished run to the store.

Workers are spawned processes (TensorFlow is unsafe after fork); each gets cores/workers
threads for TensorFlow. The driver writes a run in one transaction as soon as it finishes, so an
interrupted sweep keeps every finished run and the same command resumes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from distributed import WorkerPlugin

from valstat.config import ClusterConfig, Experiment
from valstat.data import load_dataset
from valstat.errors import ValstatError
from valstat.lock import StoreLock
from valstat.splits import RunSpec, plan_runs
from valstat.store import Store, read_meta, read_stored_runs, require_kind


@dataclass
class SweepOutcome:
    planned: int
    already_done: int
    stored: int = 0             # runs of this plan in the store at the end, counted there
    finished: list[str] = field(default_factory=list)
    diverged: list[str] = field(default_factory=list)
    failed: dict = field(default_factory=dict)   # (run_id, ...) of one task -> its one-line error
    interrupted: bool = False
    scheduler_lost: str | None = None   # the scheduler's address, when the driver lost it mid-sweep
    plan_seeds: int = 0         # seeds of the store's plan after this sweep (see plan_seeds)
    store_runs: int = 0         # finished runs in the store at the end, of any plan


@dataclass
class SweepPlan:
    """What `valstat run` would do: the runs planned, those stored, and the time the rest take."""

    planned: int
    stored: int
    workers: int
    run_s: float | None         # seconds per run (None: unknown)
    run_s_source: str           # "store" (stored runs' mean), "measured" (on the local workers
                                # at once) or "measured alone" (in one process)
    dataset: dict = field(default_factory=dict)        # the store meta's "dataset"
    images_per_run: dict = field(default_factory=dict)  # arm -> (train, validation, truth)
    task_s: list[float] = field(default_factory=list)  # seconds of each task left: a run, or a
                                                       # fused pack with its compilation
    start_s: float = 0.0        # measured: this process's start (imports, data, plan), the
                                # workers' start, and compiling each arm once
    plan_seeds: int = 0         # seeds of the store's plan after the sweep (see plan_seeds)
    store_runs: int = 0         # runs in the store now, of any plan

    @property
    def estimate_s(self) -> float | None:
        """start_s plus the busiest worker's share when each task, longest first, goes to the
        worker with the least work so far."""
        if self.run_s is None:
            return None
        loads = [0.0] * max(1, self.workers)
        for seconds in sorted(self.task_s, reverse=True):
            loads[loads.index(min(loads))] += seconds
        return self.start_s + max(loads)


def default_layout(cores: int, image_size: int) -> tuple[int, int]:
    """(workers, threads per worker). Small inputs train faster as one-thread processes
    (benchmarks/scaling); large inputs as fewer processes with more threads each."""
    workers = cores if image_size <= 64 else max(1, cores // 2)
    return workers, max(1, cores // workers)


def _check_owner(experiment: Experiment, out_dir: Path) -> tuple[dict | None, dict]:
    """Refuse a store that holds runs of another experiment config, naming what differs; a
    store that holds no runs yet (every run failed) is taken over by this config. Returns the
    store's meta (None without a store) and its stored runs (read_stored_runs)."""
    existing = read_meta(out_dir)
    require_kind(existing, "sweep", out_dir, "train a sweep into")
    stored = read_stored_runs(out_dir)
    if existing and existing.get("config_hash") not in (None, experiment.config_hash()) and stored:
        changed = config_differences(existing, experiment)
        shown = "; ".join(changed[:3]) + (f"; and {len(changed) - 3} more" if len(changed) > 3
                                          else "")
        raise ValstatError(f"{out_dir} holds runs of a different experiment config "
                        f"('{existing.get('experiment')}', {existing.get('source_file')})"
                        f"{': ' + shown if shown else ''}; use another --out folder")
    return existing, stored


def _check_same_images(out_dir: Path, existing: dict | None, stored: dict, dataset: dict) -> None:
    """Refuse to add runs to a store (its meta `existing`, runs `stored`) whose runs were
    trained on other images than `dataset` (a meta "dataset"): the data folder gained, lost or
    changed files since (the runs' example ids would name other files)."""
    old = (existing or {}).get("dataset") or {}
    if not old or not stored:
        return
    old_files, new_files = old.get("files") or [], dataset.get("files") or []
    same = (old.get("digest", dataset["digest"]) == dataset["digest"] and old_files == new_files
            and old.get("n_images") == dataset["n_images"])
    if same:
        return
    added, removed = len(set(new_files) - set(old_files)), len(set(old_files) - set(new_files))
    what = (f"{added} added, {removed} removed" if added or removed
            else "the same files with other pixels, or decoded differently")
    raise ValstatError(f"{out_dir} holds runs trained on other images: {dataset['source']} now has "
                       f"{dataset['n_images']} images ({what}) where the store's runs used {old.get('n_images')}; "
                       "restore the folder or use another --out folder")


def plan_seeds(meta: dict | None, experiment: Experiment) -> int:
    """Seeds of the plan a store records: a sweep asking for fewer seeds than the store was
    planned with (same config) trains what it names but keeps the larger plan, so the report
    never describes a store of 40 runs as a plan of 4."""
    old = ((meta or {}).get("sweep") or {}).get("seeds")
    if old and meta.get("config_hash") == experiment.config_hash():
        return max(int(old), experiment.sweep.seeds)
    return experiment.sweep.seeds


def config_differences(meta: dict, experiment: Experiment) -> list[str]:
    """'arms.founding.training.epochs 4 -> 5' for each hashed setting that differs between a
    store's meta and `experiment` (its folds, seed kinds and every arm's settings)."""
    def flat(prefix: str, value, out: dict) -> dict:
        if isinstance(value, dict):
            for key, item in value.items():
                flat(f"{prefix}.{key}" if prefix else str(key), item, out)
        else:
            out[prefix] = value
        return out

    sweep = meta.get("sweep") or {}
    old = flat("", {"folds": sweep.get("folds"), "vary": sweep.get("vary"),
                    "arms": meta.get("arms_config") or {}}, {})
    new = flat("", {"folds": experiment.sweep.folds, "vary": experiment.sweep.vary,
                    "arms": {arm.name: arm.settings() for arm in experiment.arms}}, {})
    return [f"{key} {old.get(key, '(none)')} -> {new.get(key, '(none)')}"
            for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]


def _plan(experiment: Experiment, cache_dir: Path) -> tuple[list[RunSpec], dict]:
    arm = experiment.arms[0]
    for other in experiment.arms:      # decode every input size once, into the workers' cache
        load_dataset(other.data.source, other.data.image_size, cache_dir)
    dataset = load_dataset(arm.data.source, arm.data.image_size, cache_dir)
    specs = plan_runs(experiment, dataset.labels, dataset.n_classes, str(cache_dir))
    truth = {}
    for spec in specs:
        truth.setdefault(spec.arm.name, [int(i) for i in spec.split.truth])
    meta = {**experiment.describe(), "store_kind": "sweep", "config_hash": experiment.config_hash(),
            "dataset": {**dataset.describe(), "n_truth": len(next(iter(truth.values()), []))},
            "truth_examples": truth}
    return specs, meta


def prepare(experiment: Experiment, out_dir: Path) -> tuple[list[RunSpec], dict]:
    """Decode the data once, plan every run, and check the store belongs to this experiment."""
    existing, stored = _check_owner(experiment, out_dir)
    if not os.access(out_dir, os.W_OK):
        raise ValstatError(f"output folder {out_dir} is not writable; choose another --out")
    specs, meta = _plan(experiment, out_dir / "cache")
    _check_same_images(out_dir, existing, stored, meta["dataset"])
    return specs, meta


def _layout(experiment: Experiment, pending: int, workers: int | None) -> tuple[int, int]:
    """(workers, threads per worker) for `pending` runs: on this machine, or for a SLURM sweep
    the jobs' worker processes ([cluster] jobs x processes, cores / processes threads each)."""
    if experiment.cluster.kind == "slurm":
        cluster = experiment.cluster
        return max(1, min(cluster.jobs * cluster.processes, pending)), max(1, cluster.cores // cluster.processes)
    cores = os.cpu_count() or 1
    max_size = max(arm.data.image_size for arm in experiment.arms)
    default_workers, _ = default_layout(cores, max_size)
    workers = max(1, min(workers or default_workers, pending))
    return workers, max(1, cores // workers)


def plan_sweep(experiment: Experiment, out_dir: str | Path, workers: int | None = None,
               verbose: bool = False, engine=None, pack_size: int | None = None) -> SweepPlan:
    """Count planned and stored runs and estimate the time left, without writing anything.

    The time per run is the mean wall time of the runs already stored; with none stored, short
    tasks of the engine are timed here (_measure): the first run of each arm that trains one
    run at a time and, for a fused engine, the first pack. Local sweeps time them on their own
    workers at once; a SLURM sweep in this one process, or not at all for GPUs this machine
    does not have.
    engine and pack_size: as for run_sweep.
    """
    from valstat.engine.device import resolve_device

    engine = engine or resolve_device("cpu")
    out_dir = Path(out_dir)
    existing, stored = _check_owner(experiment, out_dir)
    with tempfile.TemporaryDirectory() as scratch:
        specs, meta = _plan(experiment, Path(scratch))
        _check_same_images(out_dir, existing, stored, meta["dataset"])
        done = set(stored) & {spec.run_id for spec in specs}
        pending = [spec for spec in specs if spec.run_id not in done]
        workers, threads = _layout(experiment, max(1, len(pending)), workers)
        if engine.kind == "gpu":
            workers = engine.gpus
        plan = SweepPlan(planned=len(specs), stored=len(done), workers=workers, run_s=None,
                         run_s_source="", dataset=meta["dataset"], images_per_run={
                             spec.arm.name: (len(spec.split.train), len(spec.split.val),
                                             len(spec.split.truth)) for spec in specs},
                         plan_seeds=plan_seeds(existing, experiment),
                         store_runs=len(stored))
        packs, single = engine_tasks(pending, engine, pack_size)
        walls = [stored[run_id] for run_id in done if stored[run_id]]
        if walls:
            plan.run_s, plan.run_s_source = sum(walls) / len(walls), "store"
            plan.task_s = [plan.run_s * len(pack) for pack in packs] + [plan.run_s] * len(single)
        elif pending and experiment.cluster.kind == "slurm" and engine.kind == "gpu":
            pass                    # its GPUs are not on this machine: nothing to time here
        elif pending:
            alone = experiment.cluster.kind == "slurm"   # its workers are not on this machine
            first_of_arm = {}
            for spec in single:
                first_of_arm.setdefault(spec.arm.name, spec)
            tasks = ([(packs[0], True)] if packs else []) + [
                ([spec], False) for spec in first_of_arm.values()]
            driver_s = time.time() - psutil.Process().create_time()   # imports, data, plan
            timings, start_s = _measure_tasks(tasks, workers, threads, verbose, engine, alone)
            plan.start_s = driver_s + start_s
            plan.run_s_source = "measured alone" if alone else "measured"
            if packs:
                (pack_s, compile_s), first = timings.pop(0), len(packs[0])
                plan.task_s += [pack_s * len(pack) / first + compile_s for pack in packs]
            per_arm = dict(zip(first_of_arm, timings))    # arm -> (seconds, compile seconds)
            plan.task_s += [per_arm[spec.arm.name][0] for spec in single]
            # each worker compiles every arm it trains once, the workers side by side
            plan.start_s += sum(compile_s for _, compile_s in per_arm.values())
            plan.run_s = sum(plan.task_s) / len(pending)
    return plan


def engine_tasks(pending: list[RunSpec], engine, pack_size: int | None
                 ) -> tuple[list[list[RunSpec]], list[RunSpec]]:
    """(fused packs, runs trained one at a time) for `pending` under `engine`: the fused engine
    does not augment, so augmenting arms train one run at a time."""
    from valstat.engine.fused import pack_specs

    fused = [spec for spec in pending if engine.fused and not spec.arm.augments]
    single = [spec for spec in pending if not engine.fused or spec.arm.augments]
    return (pack_specs(fused, pack_size or len(fused)) if fused else []), single


# A first 1-epoch run shorter than this may be mostly compilation, which a worker pays once per
# arm, not once per epoch: --dry-run then times compiled 1- and 2-epoch runs instead.
RETIME_BELOW_S = 30.0
# A compiled task expected to take less than this at its full epochs is timed whole: its 1- and
# 2-epoch difference misses the per-epoch cost that grows over a run (measured 2026-11-28, default
# experiment on 2 cores: 4.5 s per run extrapolated, 5.2-6.6 s per run in the sweep).
TIME_WHOLE_BELOW_S = 30.0


def _measure(specs: list[RunSpec], fused: bool, threads: int, verbose: bool
             ) -> tuple[float, float]:
    """(seconds, compile seconds) of one task at its epochs, measured in this process: one
    run trained alone (fused False, one spec) or the fused pack of `specs`.

    A first 1-epoch task includes compilation. Where it is short (RETIME_BELOW_S), or always
    for a pack, a compiled 1-epoch task follows (compile seconds = the first minus it); then the
    compiled task at its full epochs when that is expected under TIME_WHOLE_BELOW_S, else a
    compiled 2-epoch task, and seconds = the 1-epoch task plus the epochs after it at their
    difference. A long first run (large images on a CPU) is scaled by the epochs as it is.
    """
    epochs = specs[0].arm.training.epochs

    def seconds(run_epochs: int) -> float:
        short = [dataclasses.replace(spec, arm=dataclasses.replace(
            spec.arm, training=dataclasses.replace(spec.arm.training, epochs=run_epochs)))
            for spec in specs]
        if fused:
            from valstat.engine.fused import train_pack

            return sum(record.run["wall_s"] for record in train_pack(short, threads))
        from valstat.train import train_one_run

        return train_one_run(short[0], threads).run["wall_s"]

    with quiet_stderr(not verbose):
        first = seconds(1)
        if first >= RETIME_BELOW_S and not fused:
            return first * epochs, 0.0
        one = seconds(1)
        if one * epochs < TIME_WHOLE_BELOW_S:
            return seconds(epochs), max(first - one, 0.0)
        two = seconds(2)
    return one + max(two - one, 0.0) * (epochs - 1), max(first - one, 0.0)


def _measure_tasks(tasks: list[tuple[list[RunSpec], bool]], workers: int, threads: int,
                   verbose: bool, engine, alone: bool) -> tuple[list[tuple[float, float]], float]:
    """_measure for each (specs, fused) task, and the seconds it took to start the workers.

    alone: in this process, one task after another (start 0). Otherwise on `workers` workers
    started as the sweep starts them, all at once, as they will share the cores or devices:
    task i on worker i mod workers, and every worker busy (with fewer tasks than workers, the
    tasks repeat and their times are averaged)."""
    if alone:
        return [_measure(specs, fused, threads, verbose) for specs, fused in tasks], 0.0
    started = time.perf_counter()
    client = _dask_client(workers, threads, None, verbose=verbose, engine=engine)
    try:
        resources = {"GPU": 1} if engine.kind == "gpu" else None
        client.wait_for_workers(workers)
        start_s = time.perf_counter() - started
        addresses = list(client.scheduler_info()["workers"])
        slots = range(max(len(addresses), len(tasks)))
        futures = [client.submit(_measure, *tasks[slot % len(tasks)], threads, verbose,
                                 pure=False, workers=[addresses[slot % len(addresses)]],
                                 resources=resources) for slot in slots]
        measured = client.gather(futures)
        timings = []
        for index in range(len(tasks)):
            mine = [measured[slot] for slot in slots if slot % len(tasks) == index]
            timings.append(tuple(sum(values) / len(values) for values in zip(*mine)))
        return timings, start_s
    finally:
        client.close()
        client.cluster.close()


@contextlib.contextmanager
def quiet_stderr(active: bool = True):
    """Send file descriptor 2 (C++ logging included) to /dev/null while `active`."""
    if not active:
        yield
        return
    silence_tensorflow()
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def silence_tensorflow() -> None:
    """Environment and logger settings that keep TensorFlow, absl and XLA start-up lines out."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


class QuietWorker(WorkerPlugin):
    """Dask worker plugin: the worker's stderr goes to /dev/null before TensorFlow loads.
    Errors still reach the driver, as the failed task's exception."""

    name = "valstat-quiet"

    def setup(self, worker=None):
        silence_tensorflow()
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)


def slurm_cluster(settings: ClusterConfig, threads: int):
    """A dask-jobqueue SLURMCluster from the experiment's [cluster] table (jobs not yet
    submitted: call .scale(jobs=...)). With `gpus = N`, each job asks SLURM for N GPUs
    (--gres=gpu:N), runs N worker processes (one per GPU) with the Dask resource GPU=1 each,
    on Keras's JAX backend."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise ValstatError("[cluster] kind = \"slurm\" needs dask-jobqueue: "
                        "pip install \"valstat[slurm]\"") from None
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


def check_job_script(script: str) -> None:
    """Ask SLURM whether it would take the workers' job (`sbatch --test-only`, which submits
    nothing), so that a wrong partition or account, or a machine without SLURM, is one line
    before any job is submitted: dask-jobqueue submits in the background, logs the failure as a
    traceback and waits for workers forever."""
    if shutil.which("sbatch") is None:
        raise ValstatError("[cluster] kind = \"slurm\" needs SLURM's sbatch, which is not on PATH: run "
                           "valstat on the cluster's login node")
    with tempfile.NamedTemporaryFile("w", suffix=".sh") as handle:
        handle.write(script)
        handle.flush()
        result = subprocess.run(["sbatch", "--test-only", handle.name], capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        raise ValstatError(f"SLURM refused the workers' job ({lines[-1] if lines else f'exit {result.returncode}'}); "
                           "check [cluster] queue, account, cores, memory and walltime")


# Workers of the fused engine: Keras on JAX; several processes may share a GPU's memory.
GPU_WORKER_ENV = {"KERAS_BACKEND": "jax", "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
                  "TF_CPP_MIN_LOG_LEVEL": "2"}


def _dask_client(workers: int, threads: int, scheduler: str | None,
                 settings: ClusterConfig | None = None, verbose: bool = False, engine=None):
    from dask.distributed import Client, LocalCluster

    if settings is not None and settings.kind == "slurm" and not scheduler:
        cluster = slurm_cluster(settings, threads)
        try:
            check_job_script(cluster.job_script())
        except BaseException:
            cluster.close()
            raise
        cluster.scale(jobs=settings.jobs)
        return Client(cluster)
    if scheduler:
        if not verbose:     # the driver's own Dask log lines (a lost scheduler is one valstat line)
            for name in ["distributed", *logging.root.manager.loggerDict]:
                if name.startswith("distributed"):
                    logging.getLogger(name).setLevel(logging.CRITICAL)
        try:
            return Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as error:
            raise ValstatError(f"cannot reach the Dask scheduler at {scheduler}: {error}") from None
    if not verbose:
        silence_tensorflow()    # spawned workers inherit the environment
    # Workers inherit an ignored SIGINT, so Ctrl-C in the terminal stops only the driver,
    # which then shuts the cluster down in order.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if engine is not None and engine.kind == "gpu":
            cluster = _gpu_cluster(engine.gpus, verbose)
        else:
            extra = {"env": {**GPU_WORKER_ENV, "JAX_PLATFORMS": "cpu"}} if (
                engine is not None and engine.backend == "jax") else {}
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=":0",   # any free port: sweeps never clash
                                   silence_logs=logging.WARNING if verbose else logging.CRITICAL,
                                   **extra)
    finally:
        signal.signal(signal.SIGINT, previous)
    client = Client(cluster)
    if not verbose:
        client.register_plugin(QuietWorker())
    return client


def _gpu_cluster(gpus: int, verbose: bool = False):
    """One spawned worker per GPU (it sees only that GPU), each with the Dask resource GPU=1."""
    from dask.distributed import Nanny, Scheduler, SpecCluster

    silence = logging.WARNING if verbose else logging.CRITICAL
    workers = {f"gpu{index}": {"cls": Nanny, "options": {
        "nthreads": 1, "resources": {"GPU": 1}, "silence_logs": silence,
        "env": {**GPU_WORKER_ENV, "CUDA_VISIBLE_DEVICES": str(index)}}}
        for index in range(gpus)}
    return SpecCluster(workers=workers, silence_logs=silence,
                       scheduler={"cls": Scheduler, "options": {"dashboard_address": ":0"}})


def check_engine(store: Store, engine) -> None:
    """Refuse to add runs from an engine whose curves differ from those already stored
    (another backend or device kind); records the engine in a store that holds no runs yet."""
    meta = store.meta()
    stored = meta.get("engine")
    if stored is None and store.finished_run_ids():
        backends = {row[0] for row in store.connection.execute(
            "SELECT DISTINCT backend FROM runs")}
        stored = {"backend": next(iter(backends)) if len(backends) == 1 else "mixed",
                  "device": "cpu"}                   # stores before --device: CPU only
    if stored is not None and stored != engine.identity and store.finished_run_ids():
        raise ValstatError(f"this store holds runs trained with {stored['backend']} on "
                        f"{stored['device'].upper()}; its curves would not be comparable with "
                        f"{engine.backend} on {engine.kind.upper()}: use --device "
                        f"{stored['device']} or another --out folder")
    if meta.get("engine") != engine.identity:
        store.set_meta({"engine": engine.identity})


def run_sweep(experiment: Experiment, out_dir: str | Path, workers: int | None = None,
              scheduler: str | None = None, progress=None, wait: bool = False,
              verbose: bool = False, old_path: bool = False, engine=None,
              pack_size: int | None = None, announce=None) -> SweepOutcome:
    """Train every pending run of `experiment` and store it in `out_dir`.

    Holds the store's lock throughout (`wait`: wait for another writer instead of refusing).
    progress: optional object with start(total, done), advance(record), stop() methods.
    A run that fails on a worker is reported in `failed`; the others go on.
    old_path: train as valstat did before its CPU speed-ups, for benchmarks: a model built and
    compiled per run and trained by Keras's model.fit (default: each worker compiles a model once
    per arm and trains each epoch in one compiled loop); the curves are the same bit for bit.
    engine: valstat.engine.device.Engine (default: the CPU TensorFlow engine); a fused engine
    trains packs of up to `pack_size` runs of one arm as one program (default: all of them).
    announce: called once, just before training starts (the CLI prints the engine line).
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValstatError(f"cannot create output folder {out_dir}: {error.strerror}") from None
    from valstat.engine.device import resolve_device

    engine = engine or resolve_device("cpu")
    with StoreLock(out_dir, wait=wait):
        specs, meta = prepare(experiment, out_dir)
        seeds = plan_seeds(read_meta(out_dir), experiment)
        meta["sweep"] = {**meta["sweep"], "seeds": seeds}
        with Store(out_dir) as store:
            check_engine(store, engine)
            store.set_meta(meta)
            outcome = _train_pending(experiment, specs, store, workers, scheduler, progress,
                                     verbose, old_path, engine, pack_size, announce)
            finished = store.finished_run_ids()
            outcome.stored = len(finished & {spec.run_id for spec in specs})
            outcome.plan_seeds, outcome.store_runs = seeds, len(finished)
    return outcome


def _train_pending(experiment, specs, store, workers, scheduler, progress, verbose, old_path,
                   engine, pack_size, announce):
    from dask.distributed import as_completed

    from valstat.train import train_one_run

    done = store.finished_run_ids()
    pending = [spec for spec in specs if spec.run_id not in done]
    outcome = SweepOutcome(planned=len(specs), already_done=len(specs) - len(pending))
    if not pending:
        return outcome
    workers, threads = _layout(experiment, len(pending), workers)
    if engine.kind == "gpu":
        workers = engine.gpus
    if progress:
        progress.start(len(specs), outcome.already_done)
    try:
        client = _dask_client(workers, threads, scheduler, experiment.cluster, verbose, engine)
        if announce:
            announce()              # workers reachable: training starts now
        try:
            resources = {"GPU": 1} if engine.kind == "gpu" else None
            packs, single = engine_tasks(pending, engine, pack_size)
            futures = {client.submit(train_one_run, spec, threads, not old_path, old_path,
                                     resources=resources,
                                     key=f"valstat-{spec.run_id}", pure=False,
                                     retries=2): (spec.run_id,) for spec in single}
            if packs:
                from valstat.engine.fused import train_pack

                futures.update({client.submit(train_pack, pack, threads, resources=resources,
                                              key=f"valstat-pack-{pack[0].run_id}-{len(pack)}",
                                              pure=False, retries=1):
                                tuple(spec.run_id for spec in pack) for pack in packs})
            for future in as_completed(futures):
                try:
                    result = future.result()
                except Exception as error:  # noqa: BLE001 - any worker failure, as one line
                    if getattr(error, "reason", None) == "scheduler-connection-lost":
                        # every task left is cancelled with it: one line, not one per run
                        outcome.scheduler_lost = scheduler or str(client.scheduler.address)
                        break
                    message = str(error).strip().splitlines()
                    outcome.failed[futures[future]] = (f"{type(error).__name__}: "
                                                       f"{message[-1] if message else ''}")
                    continue
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
