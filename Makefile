# README's two commands: `make demo` (set up, fetch assets, run the main job) and `make test`.
PY := .venv/bin/python
export WANDB_SILENT := true

.PHONY: setup assets demo pipeline test test-fast

setup:
	bash scripts/setup.sh

assets: setup
	$(PY) -m tinyfw stage=assets

demo: assets
	$(PY) -m tinyfw stage=general

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

pipeline: assets
	$(PY) -m tinyfw stage=pipeline pipeline.publish=docs/example
