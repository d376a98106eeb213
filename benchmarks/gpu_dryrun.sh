#!/usr/bin/env bash
# Dry run of the GPU check on this CPU machine, in an environment shaped like the bare CUDA
# machine (device/KINDS.md, read 2026-11): Python 3.12, jax 0.11.2, numpy 2.5.2 and the other
# packages that machine has, no Keras, Dask or TensorFlow. gpu_check.sh --cpu-smoke then installs
# Keras and Dask from the carried .whl/ exactly as it does there. Costs no device time; run it
# before spending any.   Usage (repo root): bash benchmarks/gpu_dryrun.sh   (159 s on 2 cores with its venv already built)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${DEVSIM:-/tmp/valstat-devsim}
PY312=""
for candidate in $(command -v python3.12) /root/.pyenv/versions/3.12*/bin/python; do
  # a pyenv shim is on PATH even where 3.12 is not the active version: take one that runs
  if [ -x "$candidate" ] && "$candidate" -c "" 2>/dev/null; then PY312=$candidate; break; fi
done
[ -n "$PY312" ] || { echo "gpu_dryrun: no python3.12 here" >&2; exit 1; }
if [ ! -x "$VENV/bin/python" ]; then
  "$PY312" -m venv "$VENV"
  "$VENV/bin/pip" install -q "jax==0.11.2" "jaxlib==0.11.2" "numpy==2.5.2" scipy pandas \
    statsmodels scikit-learn matplotlib seaborn jinja2 pillow rich pyarrow h5py ml-dtypes \
    absl-py packaging click cloudpickle fsspec pyyaml toolz msgpack psutil sortedcontainers urllib3
fi
ls .whl/keras-*.whl >/dev/null 2>&1 || bash benchmarks/gpu_wheels.sh
rm -rf /tmp/valstat-site                     # gpu_check.sh installs the wheels there afresh
FIGURES=$(mktemp -d)
OUT=$FIGURES PYTHON="$VENV/bin/python" bash benchmarks/gpu_check.sh --cpu-smoke
if grep -Eq "FAILED|run exit [1-9]|Traceback" "$FIGURES/gpu_figures.md"; then
  echo "gpu_dryrun: a step failed (see above)" >&2; exit 1
fi
echo "gpu_dryrun: every step passed"
