#!/usr/bin/env bash
# One-GPU check, under 8 minutes: bf16 LoRA throughput and peak memory of tunesmith vs
# TRL + PEFT (SDPA) on the SmolLM2-135M shape and a ~1.2B Llama shape, random weights.
#   bench/gpu_check.sh                 # on a GPU machine, from the repository root
#   bench/gpu_check.sh --dry-run       # on CPU: tiny models, one step per side
# Needs torch with CUDA, transformers, peft, accelerate (trl optional: skipped if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false
OUT="${GPU_CHECK_OUT:-gpu_check_results.json}"
if [ "${1:-}" != "--dry-run" ]; then
  "$PYTHON" - <<'PY'
import torch, sys
if not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device visible to torch; use --dry-run on CPU")
print("GPU:", torch.cuda.get_device_name(), "| torch", torch.__version__)
PY
fi
# the whole check must end within 8 minutes; leave 20 s for start-up
timeout 460 "$PYTHON" bench/gpu_check.py --out "$OUT" "$@"
