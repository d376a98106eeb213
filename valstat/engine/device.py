"""Which engine trains, on what: `--device auto|cpu|gpu` resolved once in the driver, and the
runtime a worker reports into every run it stores.

The driver never imports TensorFlow or Keras to decide: a GPU means a CUDA device visible to JAX
(the `[gpu]` extra), which trains with the fused engine on Keras's JAX backend in its workers; the
CPU engine is the TensorFlow path (one compiled model per arm and worker). Engines whose curves
differ never share a store: `Engine.identity` goes into the store's meta and a mismatch is refused.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
from dataclasses import dataclass

from valstat.errors import ValstatError

DEVICES = ("auto", "cpu", "gpu")


@dataclass(frozen=True)
class Engine:
    """What trains a sweep. backend: Keras backend in the workers (tensorflow | jax);
    kind: cpu | gpu; name: device name; fused: K runs per compiled program (JAX only);
    gpus: devices to place one worker each on."""

    backend: str
    kind: str
    name: str
    version: str
    fused: bool
    gpus: int = 0

    @property
    def identity(self) -> dict:
        """What must match for two runs' curves to be comparable in one store."""
        return {"backend": self.backend, "device": self.kind}

    def line(self, lead: str = "training on", scheduler: str | None = None) -> str:
        """The one line `valstat run` prints before training (`--dry-run`: lead "would train on");
        with a `scheduler` address the workers of that scheduler, not this machine, train."""
        how = "fused seeds" if self.fused else "one compiled model per arm and worker"
        where = f"the workers of {scheduler}" if scheduler else self.name
        return f"{lead} {self.backend} {self.version}, {self.kind.upper()}: {where} ({how})"


def _version(*names: str) -> str:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "absent"


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux) or platform, with the core count."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def jax_gpus() -> list[str]:
    """Names of the GPUs JAX sees ([] without JAX or without a GPU). Imports jax only if it
    is installed, and then without JAX's preallocation of 75 % of each GPU's memory: this
    process (the sweep's driver) trains nothing, its workers do."""
    if importlib.util.find_spec("jax") is None:
        return []
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import jax

    try:
        devices = jax.devices("gpu")
    except RuntimeError:
        return []
    return [getattr(d, "device_kind", str(d)) for d in devices]


def resolve_device(request: str = "auto", fused: bool | None = None,
                   cluster_gpus: int = 0) -> Engine:
    """The engine for `--device` (auto: a GPU when JAX sees one, else the CPU).

    fused: force the fused JAX engine on (True, also on CPU, e.g. for tests) or off (False:
    one run at a time; on a GPU that is Keras's JAX backend). cluster_gpus: GPUs per SLURM job
    ([cluster] gpus); the workers' GPUs are not visible from the login node, so they are taken
    as given unless --device cpu. Raises ValstatError for a GPU request without a GPU.
    """
    if request not in DEVICES:
        raise ValstatError(f"--device must be one of {', '.join(DEVICES)}, got {request!r}")
    if cluster_gpus and request != "cpu":
        return Engine("jax", "gpu", f"SLURM jobs with {cluster_gpus} GPU(s) each",
                      _version("jax"), fused if fused is not None else True, gpus=cluster_gpus)
    gpus = jax_gpus() if request in ("auto", "gpu") else []
    if request == "gpu" and not gpus:
        hint = ("JAX is not installed: pip install \"valstat[gpu]\"" if
                importlib.util.find_spec("jax") is None else "JAX sees no CUDA device")
        raise ValstatError(f"--device gpu: no GPU found ({hint}); use --device cpu")
    if gpus:
        return Engine("jax", "gpu", f"{gpus[0]} x{len(gpus)}" if len(gpus) > 1 else gpus[0],
                      _version("jax"), fused if fused is not None else True, gpus=len(gpus))
    if fused:
        if importlib.util.find_spec("jax") is None:
            raise ValstatError("the fused engine needs JAX: pip install \"valstat[gpu]\" "
                               "(or pip install jax for the CPU)")
        return Engine("jax", "cpu", cpu_name(), _version("jax"), True)
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    version = _version("tensorflow-cpu", "tensorflow") if backend == "tensorflow" else \
        _version(backend)
    return Engine(backend, "cpu", cpu_name(), version, False)


def describe_runtime() -> dict:
    """In a worker, after Keras is imported: python, keras, backend, its version, device."""
    import keras

    backend = keras.backend.backend()
    device = "cpu"
    version = "unknown"
    if backend == "jax":
        import jax

        version = jax.__version__
        first = jax.devices()[0]
        device = first.platform if first.platform == "cpu" else \
            f"{first.platform}: {getattr(first, 'device_kind', first)}"
    elif backend == "tensorflow":
        import tensorflow as tf

        version = tf.__version__
        gpus = tf.config.list_logical_devices("GPU")
        device = f"gpu: {gpus[0].name}" if gpus else "cpu"
    return {"python": platform.python_version(), "keras": keras.__version__,
            "backend": backend, "backend_version": version, "device": device}
