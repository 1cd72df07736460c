"""`preset=paper` against the TinyBERT paper (Jiao et al. 2019, arXiv 1909.10351) and its
reference code: a drift in any of these values fails here."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import tinyfw.__main__ as entry

# key -> (expected value, where it comes from)
PAPER = {
    "teacher.name_or_path": ("bert-base-uncased", "paper §4.1: BERT-base teacher"),
    "student.shape.num_layers": (4, "TinyBERT4"),
    "student.shape.hidden_size": (312, "TinyBERT4"),
    "student.shape.intermediate_size": (1200, "TinyBERT4"),
    "student.shape.num_heads": (12, "TinyBERT4"),
    "student.layer_map": ("uniform", "paper §4.5: uniform mapping g(m) = 3m best"),
    "distill.temperature": (1.0, "paper: t = 1"),
    "distill.layer_reduction": ("sum", "reference code: losses summed over layers"),
    "distill.share_projection": (False, "paper: separate W_e and W_h"),
    "corpus.max_seq_len": (128, "paper: GD at sequence length 128"),
    "general.train.epochs": (3, "paper: 3 epochs of general distillation"),
    "general.train.batch_size": (256, "BERT pre-training batch, reference script"),
    "general.train.lr": (5e-5, "reference general_distill.py default"),
    "general.train.warmup_ratio": (0.1, "reference general_distill.py default"),
    "teacher_ft.train.batch_size": (32, "reference run_glue.py: batch 32"),
    "augmenter.n_aug": (20, "paper: N_a = 20"),
    "augmenter.p_replace": (0.4, "paper: p_t = 0.4"),
    "augmenter.top_k": (15, "paper: K = 15"),
    "augmenter.mlm": ("bert-base-uncased", "paper: BERT's own masked LM"),
    "augmenter.targets": ("reference", "reference: alphabetic, non-stop words"),
    "augmenter.second_segment": (True, "reference: [CLS] masked [SEP] original [SEP]"),
    "augmenter.alpha_only": (False, "reference: no candidate filter beyond ## pieces"),
    "augmenter.stopwords": (False, "reference: no candidate filter beyond ## pieces"),
    "task.max_seq_len": (64, "paper: 64 for single-sentence tasks"),
    "task_distill.max_train_examples": (-1, "the whole augmented set"),
    "task_distill.budget": ("epochs", "paper: budgets in epochs (20 + 3)"),
    "task_distill.step1.epochs": (20, "paper: 20 epochs of intermediate-layer distillation"),
    "task_distill.step1.batch_size": (32, "paper"),
    "task_distill.step1.lr": (5e-5, "paper"),
    "task_distill.step1.schedule": ("constant", "reference: step 1 without lr schedule"),
    "task_distill.step1.warmup_ratio": (0.0, "reference: step 1 without lr schedule"),
    "task_distill.step2.epochs": (3, "paper: 3 epochs of prediction-layer distillation"),
    "task_distill.step2.batch_size": (32, "paper: batch from {16, 32}"),
    "task_distill.step2.lr": (3e-5, "paper: lr from {1e-5, 2e-5, 3e-5}"),
    "task_distill.step2.schedule": ("linear", "reference: warmup_linear"),
    "task_distill.step2.warmup_ratio": (0.1, "reference: warmup_proportion 0.1"),
    "task_distill.finetune.batch_size": (32, "the paper's batch for fine-tuning (w/o TD)"),
    "task_distill.precision": (None, "reference: TD in the run's --fp16 precision (the global one)"),
    "task_distill.group_by_length": (False, "reference: RandomSampler, no length grouping"),
}


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(entry.CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.mark.parametrize("key", sorted(PAPER))
def test_paper_preset_value(key):
    cfg = _compose("preset=paper", "stage=task")
    want, source = PAPER[key]
    got = OmegaConf.select(cfg, key)
    got = getattr(got, "value", got)
    assert got == want, f"preset=paper {key} = {got!r}, the paper/reference has {want!r} ({source})"


def test_paper_preset_step2_lr_in_paper_grid():
    cfg = _compose("preset=paper", "stage=task")
    assert cfg.task_distill.step2.lr in (1e-5, 2e-5, 3e-5)
