#!/usr/bin/env bash
# The GPU check: CUDA tests, GD throughput at the paper's shapes, the augmenter's speed-up over
# the reference, stage=bench and a smoke pipeline on the GPU, summarised in $OUT (gpu_check.json,
# gpu_check.md, gpu_check.log). Budget: 450 s of parts (GPU_CHECK_BUDGET), plus the set-up.
#
#   bash scripts/gpu_check.sh prepare   # here, once: .whl/ (the py3.12 wheels a GPU machine with
#                                       # torch but without tinyfw's other needs lacks) and
#                                       # .gpu-assets/ (tokenizer + 200 sentences), both git-ignored
#   bash scripts/gpu_check.sh [--small] # run it (on the GPU machine: carry .whl and .gpu-assets)
#
# Python: $PYTHON, else .venv/bin/python when present, else python3 (a GPU machine's own, with
# its CUDA torch). Missing packages are installed from .whl/ into $GPU_CHECK_SITE (default
# /tmp/tinyfw-gpu-site) with pip --no-index --target, then put on PYTHONPATH after the repo.
# Environment: OUT (default runs/gpu-check/<time>), GPU_CHECK_WORK (scratch, default a temp dir),
# GPU_CHECK_PARTS (default tests,gd,augment,bench,pipeline), GPU_CHECK_SMALL=1 or --small (tiny
# sizes on any device: the CPU dry run the test suite makes), GPU_CHECK_BUDGET (seconds).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
NEEDS="datasets gensim hydra omegaconf"  # what tinyfw needs beyond a torch + transformers image

if [ "${1:-}" = "prepare" ]; then
  set -e
  WHEELS="datasets dill multiprocess gensim smart_open hydra-core omegaconf"
  pins=$("$PY" -c "import importlib.metadata as m, sys
for n in sys.argv[1:]:
    try: print(f'{n}=={m.version(n)}')
    except m.PackageNotFoundError: print(n)" $WHEELS)
  rm -rf .whl && mkdir .whl  # one version of each: two would stop the install there
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl $pins
  "$PY" -m pip wheel -q --no-deps -w .whl "antlr4-python3-runtime==4.9.3"  # hydra's pin: sdist only
  "$PY" scripts/gpu_check.py --pack-assets .gpu-assets
  du -sh .whl .gpu-assets
  echo "[gpu_check] prepared; device tool: run(command='bash scripts/gpu_check.sh', carry=['.whl', '.gpu-assets'], timeout_s=540)"
  exit 0
fi

SMALL=${GPU_CHECK_SMALL:-0}
[ "${1:-}" = "--small" ] && SMALL=1
SITE=${GPU_CHECK_SITE:-/tmp/tinyfw-gpu-site}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import ${NEEDS// /, }" 2>/dev/null; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    echo "[gpu_check] installing the carried wheels into $SITE"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
      || echo "[gpu_check] wheel install failed: the parts that need them will fail"
  else
    echo "[gpu_check] $PY lacks some of: $NEEDS, and there is no .whl/ (bash scripts/gpu_check.sh prepare)"
  fi
  export PYTHONPATH="$PYTHONPATH:$SITE"
fi
OUT=${OUT:-runs/gpu-check/$(date +%Y%m%d-%H%M%S)}
WORK=${GPU_CHECK_WORK:-$(mktemp -d /tmp/gpu-check.XXXXXX)}
args=(--out "$OUT" --work "$WORK" --budget "${GPU_CHECK_BUDGET:-450}")
[ -n "${GPU_CHECK_PARTS:-}" ] && args+=(--parts "$GPU_CHECK_PARTS")
[ "$SMALL" = 1 ] && args+=(--small)
"$PY" scripts/gpu_check.py "${args[@]}"
rc=$?
[ -f "$OUT/gpu_check.md" ] && cat "$OUT/gpu_check.md"
exit $rc
