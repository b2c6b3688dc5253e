#!/usr/bin/env bash
# The fast-cifar10 GPU check, one prepared script (about 5 minutes on one H100/H200; timeouts sum to 7.8):
# tests/training/test_fast.py on CUDA, then balanced test accuracy on CIFAR-10 (JPEG copy) and seconds per network for the `fast-cifar10`
# recipe: 5 networks one at a time (target: mean >= 93.5%), then batched K = 8 (vmap and grouped)
# and K = 32 (vmap, a quarter of the iterations: timing only). Needs a CUDA GPU, PyTorch (+ numpy, tqdm, pillow) and ../shared/data (or the
# folder holding cifar10-jpg.tar.gz as $1); downloads nothing. Rows land in $OUT (default /tmp).
#   bash benchmarks/fast_cifar10_gpu.sh [DATA_ROOT]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/lib${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
ROOT=${1:-../shared/data}
OUT_DIR=${OUT:-/tmp}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "== exactness on CUDA: tests/training/test_fast.py (float64 layouts vs single; autocast leaves float64 alone)"
timeout 90 "$PY" -m pytest -q -p no:cacheprovider tests/training/test_fast.py || echo "tests/training/test_fast.py failed or pytest missing"
run() { timeout "$1" "$PY" benchmarks/fast_cifar10.py --recipe fast-cifar10 --device cuda --data-root "$ROOT" \
        --runs "$2" --json "$OUT_DIR/fast_cifar10_$3.json" "${@:4}"; }
echo "== fast-cifar10: 5 seeds, one network at a time (the accuracy target)"
run 150 single:5 single
echo "== fast-cifar10: batched, K = 8 (vmap, grouped)"
run 150 vmap:8,grouped:8 k8 || echo "K = 8 did not finish in 150 s"
echo "== fast-cifar10: batched, K = 32 (vmap), 500 of the 2,000 iterations: seconds only (x4 for a network)"
run 80 vmap:32 k32 --iterations 500 || echo "K = 32 did not finish in 80 s"
"$PY" - "$OUT_DIR/fast_cifar10_single.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
acc = rows[0]["balanced_accuracy"]
mean = sum(acc) / len(acc)
print(f"fast-cifar10 on CIFAR-10 (JPEG copy): mean balanced test accuracy {mean:.4f} over {len(acc)} seeds, "
      f"{rows[0]['seconds_per_network']:.1f} s per network -> {'PASS' if mean >= 0.935 else 'FAIL'} (target 0.935)")
PY
