# README's two commands: `make demo` (set up, fetch assets, run the whole embedded-default
# ablation study) and `make test`.
PY := .venv/bin/python
export WANDB_SILENT := true

.PHONY: setup assets demo study pipeline gd test test-fast

setup:
	bash scripts/setup.sh

assets: setup
	$(PY) -m tinyfw stage=assets

# the whole story: assets -> teacher -> masked LM -> GD -> augment -> GD/TD/DA grid -> report,
# published to docs/example (the table and chart README shows)
demo: setup
	$(PY) -m tinyfw stage=pipeline pipeline.publish=docs/example

pipeline: demo

# the two-task study: the demo's rows on MR and CoNLL-2003 NER, 3 seeds each, one report with a
# column per task (+ average), published to docs/example-two-tasks. Not measured end to end: about
# 4.5 h on 2 idle cores by the per-step times (README, "Token classification")
study: setup
	$(PY) -m tinyfw stage=pipeline 'pipeline.tasks=[mr,conll2003]' pipeline.publish=docs/example-two-tasks

# general distillation alone on the embedded default (MiniLM-L6 -> TinyBERT4 shape)
gd: assets
	$(PY) -m tinyfw stage=general

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"
