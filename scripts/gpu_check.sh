#!/usr/bin/env bash
# GPU smoke check (issue 20): AMP training, faiss GPU index, ONNX Runtime CUDA provider, DDP over NCCL and the
# clustering stage on CUDA tensors, in under 5 minutes on one GPU. One PASS/FAIL/SKIP line and a figure per check;
# exit code 1 if a check failed (every check is a SKIP without a GPU). Expected figures: docs/GPU.md.
#   bash scripts/gpu_check.sh                       # all checks on cuda:0
#   bash scripts/gpu_check.sh --only amp clustering --device cuda:1
#   PYTHON=/path/to/python bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" scripts/gpu_check.py "$@"
