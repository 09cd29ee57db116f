#!/usr/bin/env bash
# On the GPU machine (the device tool), from the repository root; see bench/device/README.md.
#   bash bench/device/cuda_latency.sh part     # keep this call's carried part of ONNX Runtime's CUDA build
#   bash bench/device/cuda_latency.sh run      # join the parts, install, check, measure the CUDA regimes
set -euo pipefail
parts=/tmp/shiftnas-parts
mkdir -p "$parts"
cp .gpu-wheels/part-* "$parts/" 2>/dev/null || true
if [ "${1:-}" = part ]; then
  ls -la "$parts"
  exit 0
fi
cat "$parts"/part-* > /tmp/ort.tar.xz
(cd /tmp && sha256sum -c -) < .gpu-wheels/SHA256
mkdir -p /tmp/site
tar -C /tmp/site -xJf /tmp/ort.tar.xz
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu-wheels/ofa-*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import onnxruntime as o, torch; print('onnxruntime', o.__version__, o.get_available_providers(), 'torch', torch.__version__)"
python3 -m pytest -q -p no:cacheprovider -rA tests/test_hardware.py -k cuda  # the suite's CUDA test: a gate
mkdir -p "$OUT/latency_predictors"
cp .gpu-wheels/latency_predictors/*.json "$OUT/latency_predictors/" 2>/dev/null || true  # carried back: resume
python3 bench/bench_latency_predictors.py --regimes "${REGIMES:-ofa-b1-cuda-fp32}" --measure-only --out "$OUT"
ls -la "$OUT/latency_predictors"
