#!/usr/bin/env bash
# The CUDA check, in one prepared script (at most 8 minutes on one H100/H200, each step under its own
# timeout): exactness of every batched layout on CUDA, the throughput table layouts x K against the
# plain PyTorch loop (model-iterations/s, % of the measured FP32 peak, x plain loop, projected MNIST-grid
# hours), the same for tf32/bf16, and the tf32/bf16 drift of ROC AUC and accuracy at 3 grid points.
# Needs a CUDA GPU and PyTorch (+ numpy, tqdm, pyyaml) already installed; downloads nothing.
#   bash benchmarks/gpu_check.sh [MNIST_DATA_ROOT]     (default: $IMBALANCE_DATA, else random data)
#   GPU_CHECK_SMOKE=1 bash benchmarks/gpu_check.sh     (CPU, tiny sizes: the script's mechanics only)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/lib${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if [ -n "${1:-}" ]; then export IMBALANCE_DATA="$1"; fi
OUT_JSON=${OUT:-/tmp}
LAYOUTS=vmap,gemm,vmap-graph,gemm-graph
if [ "${GPU_CHECK_SMOKE:-0}" = 1 ]; then
    DEV=cpu; KS=2; KP=2; IT=3; REF=10; DRIFT_IT=5; DRIFT_REP=2; SLOW=4     # a 2-core CPU: timeouts x4
    export IMBALANCE_CHECK_DEVICE=cpu IMBALANCE_CHECK_SMOKE=1
    echo "SMOKE RUN on the CPU (tiny sizes): no figure below is a GPU measurement"
else
    DEV=cuda; KS=64,256,1024; KP=256; IT=100; REF=300; DRIFT_IT=1000; DRIFT_REP=3; SLOW=1
    "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
echo "== exactness (float64 vs single for every layout; float32 after 1 step; All-CNN-C dropout)"
timeout $((100 * SLOW)) "$PY" benchmarks/cuda_exactness.py
echo "== throughput, fp32 (TF32 off): layouts x K against the plain DataLoader loop"
timeout $((180 * SLOW)) "$PY" benchmarks/throughput.py --device $DEV --networks $KS --layouts $LAYOUTS --iterations $IT \
    --reference-iterations $REF --rounds 1 --json "$OUT_JSON/throughput_fp32.json"
echo "== throughput, opt-in reduced precision (% peak is of the FP32 peak)"
timeout $((60 * SLOW)) "$PY" benchmarks/throughput.py --device $DEV --networks $KP --layouts vmap,gemm --precisions tf32,bf16 \
    --iterations $IT --reference-iterations $REF --rounds 1 --json "$OUT_JSON/throughput_reduced.json"
echo "== drift of tf32 / bf16 against fp32 at 3 grid points (same seeds), between-repeat spread beside it"
timeout $((120 * SLOW)) "$PY" benchmarks/precision_drift.py --device $DEV --iterations $DRIFT_IT --repeats $DRIFT_REP
