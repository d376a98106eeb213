#!/usr/bin/env bash
# The GPU check (issue 12, items 6-7), for a bare CUDA machine that has JAX but not Keras, Dask
# or TensorFlow. Carries its missing wheels in .whl/ (made by benchmarks/gpu_wheels.sh); never
# installs TensorFlow (the wheels are installed only where keras or distributed is missing).
# Finishes in well under 8 minutes on one H100 and writes its figures to
# $OUT/gpu_figures.md (or ./gpu_figures.md):
#   1. fused K=16 vs the same 16 runs one at a time, 32 px founding arm, 10 epochs; TFLOP/s
#      against f32 matmul peaks measured in the same process;
#   2. the device memory of a 20-run pack at 227 px: XLA's plan, and the allocator's peak over
#      one trained epoch (benchmarks/pack_memory.py --run);
#   3. the founding sweep, `valstat run seed_question --device gpu`
#      (20 seeds x 30 epochs at 227 px) end to end, compilation and worker start included;
#   4. if a minute is left, `--dry-run`'s estimate of that sweep, to compare with 3.
# --cpu-smoke: the same steps at toy sizes on the CPU (JAX CPU), to check the script anywhere.
# Device tool:  run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)
set -uo pipefail
cd "$(dirname "$0")/.."
SMOKE=""; [ "${1:-}" = "--cpu-smoke" ] && SMOKE=1
PY=${PYTHON:-python3}
FIG=${OUT:-$PWD}/gpu_figures.md
if ! $PY -c "import keras, distributed" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/valstat-site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/valstat-site:$PWD
else
  export PYTHONPATH=$PWD
fi
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
[ -n "$SMOKE" ] && export JAX_PLATFORMS=cpu
start=$(date +%s)
{
  echo "# valstat GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import jax, keras; print('jax', jax.__version__, jax.devices(), '| keras', keras.__version__, keras.backend.backend())"
} | tee "$FIG"
$PY -c "import importlib.util as u, sys; sys.exit(0 if u.find_spec('tensorflow') else 1)" \
  && echo "note: TensorFlow is present here; the check does not use it" | tee -a "$FIG"

echo "## 1. fused K vs one at a time (32 px), TFLOP/s" | tee -a "$FIG"
if [ -n "$SMOKE" ]; then
  timeout 300 $PY benchmarks/engine.py --fused --cpu-smoke --figures "$FIG" || echo "step 1 FAILED ($?)" | tee -a "$FIG"
else
  timeout 240 $PY benchmarks/engine.py --fused --k 16 --epochs 10 --figures "$FIG" || echo "step 1 FAILED ($?)" | tee -a "$FIG"
fi

echo "## 2. memory of a fused pack at 227 px" | tee -a "$FIG"
if [ -n "$SMOKE" ]; then
  timeout 120 $PY benchmarks/pack_memory.py --k 1 2 2>&1 | grep -v WARNING | tee -a "$FIG"
else
  timeout 90 $PY benchmarks/pack_memory.py --k 1 20 --run 2>&1 \
    | grep -v WARNING | tee -a "$FIG"
fi
echo "## 3. founding sweep end to end (valstat run --device gpu)" | tee -a "$FIG"
SWEEP_OUT=$(mktemp -d)
if [ -n "$SMOKE" ]; then
  ARGS=(run tests/data/tiny.toml --seeds 3 --device cpu --engine fused --out "$SWEEP_OUT" --quiet)
else
  ARGS=(run seed_question --device gpu --out "$SWEEP_OUT" --quiet)
fi
t0=$(date +%s.%N)
timeout $(( 470 - ($(date +%s) - start) )) $PY -m valstat.cli "${ARGS[@]}" 2>&1 | tail -3 | tee -a "$FIG"
status=${PIPESTATUS[0]}
t1=$(date +%s.%N)
echo "valstat run exit $status, wall $($PY -c "print(round($t1 - $t0, 1))") s" | tee -a "$FIG"
$PY - "$SWEEP_OUT" "$SMOKE" <<'PY' 2>&1 | tee -a "$FIG"
import sys
sys.path.insert(0, "benchmarks")
from efficiency import training_flops_per_image
from valstat.config import load_experiment
from valstat.model import build_alexnet
from valstat.store import load_tables
t = load_tables(sys.argv[1])
last = t.epochs.sort_values("epoch").groupby("run_id").last()
print(f"stored runs {len(t.runs)}, epochs {len(t.epochs)}, predictions {len(t.predictions)}; "
      f"devices {sorted(set(t.runs.get('device', ['?'])))}; final val acc mean "
      f"{last.val_accuracy.mean():.3f}, final lr {sorted(set(last.learning_rate))[:4]}")
arm = load_experiment(t.meta["source_file"]).arms[0]
model = build_alexnet(arm.data.image_size, len(t.meta["dataset"]["class_names"]), arm.model)
train = training_flops_per_image(model)                 # forward + backward, per image
flops = (train * t.runs.n_train * t.runs.epochs_run).sum() + (train / 3 * (
    t.runs.n_val + t.runs.n_truth) * t.runs.epochs_run).sum()
pack_s = t.runs.wall_s.sum()                            # packs' own time (wall_s = pack / K)
print(f"{flops / 1e12:.1f} TFLOP in {pack_s:.1f} s of packs (compilation included): "
      f"{flops / pack_s / 1e12:.2f} TFLOP/s; nominal H100/H200 SXM dense peaks: 67 (FP32), "
      f"495 (TF32), 989 (BF16) TFLOP/s")
PY
rm -rf "$SWEEP_OUT"

echo "## 4. --dry-run's estimate of the same sweep (fresh folder; compare with 3.)" | tee -a "$FIG"
DRY_OUT=$(mktemp -d)/dry
left=$(( 470 - ($(date +%s) - start) ))
if [ "$left" -ge 60 ]; then
  timeout "$left" $PY -m valstat.cli "${ARGS[@]/--quiet/--dry-run}" --out "$DRY_OUT" 2>&1 \
    | tail -2 | tee -a "$FIG"
else
  echo "skipped: $left s left of the check's time" | tee -a "$FIG"
fi

echo "total $(( $(date +%s) - start )) s" | tee -a "$FIG"
