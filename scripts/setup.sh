#!/usr/bin/env bash
# Create .venv and install tinyfw (editable) with its test, sweep and export extras. Idempotent.
# Order matters: torch first, pinned to the local CPU build, so that nothing pulls a
# multi-GB CUDA build from PyPI afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${TINYFW_TORCH:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  echo "[setup] installing $TORCH_SPEC (CPU build) first"
  python -m pip install -q "$TORCH_SPEC"
fi
echo "[setup] installing tinyfw and its dependencies"
python -m pip install -q -e ".[test,sweep,export]"
python -c "import tinyfw, torch, transformers; print(f'[setup] ok: tinyfw {tinyfw.__version__}, torch {torch.__version__}, transformers {transformers.__version__}')"
