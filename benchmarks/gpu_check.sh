#!/usr/bin/env bash
# The CUDA check, in one prepared script (about 5 minutes on one H100/H200): exactness of the
# batched trainer on CUDA, then the throughput table against the plain PyTorch loop.
# Needs a CUDA GPU and PyTorch (+ numpy, tqdm, pyyaml) already installed; downloads nothing.
#   bash benchmarks/gpu_check.sh [MNIST_DATA_ROOT]     (default: $IMBALANCE_DATA, else random data)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/lib${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if [ -n "${1:-}" ]; then export IMBALANCE_DATA="$1"; fi
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
OUT_JSON=${OUT:-/tmp}
echo "== exactness"
timeout 200 "$PY" benchmarks/cuda_exactness.py
echo "== throughput: batched (vmap) at several K, then one network at a time"
timeout 200 "$PY" benchmarks/throughput.py --device cuda --networks 64,256,1024 --layouts vmap \
    --json "$OUT_JSON/throughput_vmap.json"
timeout 90 "$PY" benchmarks/throughput.py --device cuda --networks 16 --layouts single --iterations 100 \
    --reference-iterations 300 --json "$OUT_JSON/throughput_single.json"
