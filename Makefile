# README's two commands: `make demo` (set up, fetch assets, run the whole embedded-default
# ablation study) and `make test`.
PY := .venv/bin/python
export WANDB_SILENT := true

.PHONY: setup assets demo pipeline gd test test-fast

setup:
	bash scripts/setup.sh

assets: setup
	$(PY) -m tinyfw stage=assets

# the whole story: assets -> teacher -> masked LM -> GD -> augment -> GD/TD/DA grid -> report,
# published to docs/example (the table and chart README shows)
demo: setup
	$(PY) -m tinyfw stage=pipeline pipeline.publish=docs/example

pipeline: demo

# general distillation alone on the embedded default (MiniLM-L6 -> TinyBERT4 shape)
gd: assets
	$(PY) -m tinyfw stage=general

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"
