#!/usr/bin/env bash
# Create .venv and install tinyfw (editable) with its test, sweep and export extras. Idempotent.
# Order matters: torch first, pinned to the local CPU build, so that nothing pulls a
# multi-GB CUDA build from PyPI afterwards.
#   TINYFW_TORCH=SPEC          the torch to install first (default torch==2.13.0, the CPU build here)
#   TINYFW_TORCH_INDEX=URL     the index to take it from (e.g. PyTorch's CUDA wheel index for your
#                              CUDA version; default: pip's configured index)
#   TINYFW_SYSTEM_SITE=1       make .venv see the interpreter's own packages (a GPU machine's
#                              preinstalled CUDA torch is then used as it is, not reinstalled)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${TINYFW_TORCH:-torch==2.13.0}
TORCH_INDEX=${TINYFW_TORCH_INDEX:-}
if [ ! -x .venv/bin/python ]; then
  if [ "${TINYFW_SYSTEM_SITE:-0}" = 1 ]; then
    "$PY" -m venv --system-site-packages .venv
  else
    "$PY" -m venv .venv
  fi
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  echo "[setup] installing $TORCH_SPEC first${TORCH_INDEX:+ from $TORCH_INDEX}"
  python -m pip install -q "$TORCH_SPEC" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"}
fi
echo "[setup] installing tinyfw and its dependencies"
python -m pip install -q -e ".[test,sweep,export]"
python -c "import tinyfw, torch, transformers; print(f'[setup] ok: tinyfw {tinyfw.__version__}, torch {torch.__version__} (CUDA: {torch.cuda.is_available()}), transformers {transformers.__version__}')"
