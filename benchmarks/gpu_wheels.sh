#!/usr/bin/env bash
# Fetch, on a machine with network access, the wheels the bare CUDA machine lacks for
# benchmarks/gpu_check.sh: Keras and Dask with their small pure-Python needs, for CPython 3.12
# x86_64. Never TensorFlow (the GPU engine is Keras on JAX, which that machine has).
# Usage (repo root): bash benchmarks/gpu_wheels.sh   -> .whl/ (git-ignored via .git/info/exclude)
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> "$(git rev-parse --git-path info/exclude)"
mkdir -p .whl
WHEELS="keras==3.15.1 namex==0.1.0 optree==0.20.0 dask==2026.8.0 distributed==2026.8.0
tornado==6.6.1 tblib==3.2.2 zict==3.0.0 partd==1.4.2 locket==1.0.0"
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl $WHEELS
ls -la .whl
