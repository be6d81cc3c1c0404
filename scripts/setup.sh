#!/usr/bin/env bash
# Create .venv and install scwm with the right back ends for this machine (CPU or CUDA).
#   bash scripts/setup.sh            # .venv in the repository root
#   VENV=/path/to/env bash scripts/setup.sh
#   TORCH_SPEC="torch==2.9.1 torchvision==0.24.1" bash scripts/setup.sh   # another torch pair
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
$PIP install --quiet --upgrade pip
# Install the torch pair first so that nothing below pulls a different build.
# shellcheck disable=SC2086
$PIP install --quiet $TORCH_SPEC
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  EXTRA=gpu   # onnxruntime-gpu + faiss-gpu (never together with the cpu builds)
else
  EXTRA=cpu,milvus   # onnxruntime + faiss-cpu, and Milvus Lite (it needs faiss-cpu, so not with gpu)
fi
$PIP install --quiet -e ".[${EXTRA},dev]"
echo "scwm installed in $VENV with the '${EXTRA}' back ends."
