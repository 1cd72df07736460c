"""stage=teacher: fine-tuning beats chance, the checkpoint is cached and loads strictly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import run_tinyfw
from kwtask import kw_overrides, write_kw_task


@pytest.fixture(scope="session")
def kw_root(shared_home) -> Path:
    return write_kw_task(shared_home / "kw")


def _predict(path: str, texts):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model, info = AutoModelForSequenceClassification.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.no_grad():
        return model(**tok(texts, return_tensors="pt", padding=True)).logits


@pytest.mark.slow
def test_smoke_teacher_stage_writes_result(tmp_path, shared_home):
    rec = run_tinyfw("stage=teacher", "experiment=smoke", run_dir=tmp_path / "run", home=shared_home)
    m = rec["metrics"]
    assert rec["status"] == "ok" and m["main_metric"] == "accuracy"
    assert 0.0 <= m["dev"]["accuracy"] <= 1.0 and "test" in m
    logits = _predict(rec["outputs"]["teacher"], ["a good film", "a bad film"])
    assert logits.shape == (2, 2)
    assert (Path(rec["outputs"]["teacher"]) / "README.md").exists()


@pytest.mark.slow
def test_teacher_learns_custom_csv_task_and_is_cached(tmp_path, shared_home, kw_root):
    rec = run_tinyfw("stage=teacher", *kw_overrides(kw_root), run_dir=tmp_path / "a", home=shared_home)
    m = rec["metrics"]
    assert m["dev"]["accuracy"] >= 0.8 and m["test"]["accuracy"] >= 0.8  # chance is 0.5
    assert m["best_step"] is not None and m["train_examples"] == 160
    path = rec["outputs"]["teacher"]
    assert "/cache/teacher/" in path
    logits = _predict(path, ["the film was great fun", "the plot was boring and awful"])
    assert logits.argmax(-1).tolist() == [1, 0]
    again = run_tinyfw("stage=teacher", *kw_overrides(kw_root), run_dir=tmp_path / "b", home=shared_home)
    assert again["metrics"]["cached"] is True and again["outputs"]["teacher"] == path
    assert again["metrics"]["dev"] == m["dev"]


@pytest.mark.slow
def test_teacher_regression_head(tmp_path, shared_home):
    root = write_kw_task(tmp_path / "reg", regression=True)
    rec = run_tinyfw("stage=teacher", *kw_overrides(root, regression=True), "teacher_ft.train.epochs=10",
                     "teacher_ft.train.lr=3e-3", run_dir=tmp_path / "run", home=shared_home)
    m = rec["metrics"]
    assert m["main_metric"] == "corr" and set(m["dev"]) == {"pearson", "spearman", "corr"}
    assert m["dev"]["pearson"] > 0.3  # learned something beyond chance (0)
    from transformers import AutoConfig

    conf = AutoConfig.from_pretrained(rec["outputs"]["teacher"])
    assert conf.problem_type == "regression" and conf.num_labels == 1


def test_missing_or_unexpected_keys_fail_loudly(tmp_path, shared_home):
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    from tinyfw.stages.teacher import load_classifier

    cfg = BertConfig(vocab_size=99, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertModel(cfg).save_pretrained(tmp_path / "encoder")
    with pytest.raises(ValueError, match=r"missing keys \['classifier"):
        load_classifier(str(tmp_path / "encoder"))  # a bare encoder is not a classifier
    # a classifier with the wrong number of outputs for the task is refused too
    clf = BertForSequenceClassification(BertConfig(**{**cfg.to_dict(), "num_labels": 3}))
    clf.save_pretrained(tmp_path / "clf")
    from tinyfw.models.load import load_strict
    from transformers import AutoModelForMaskedLM

    with pytest.raises(ValueError, match="missing keys"):
        load_strict(AutoModelForMaskedLM, str(tmp_path / "clf"))
    assert load_classifier(str(tmp_path / "clf")).config.num_labels == 3
    from tinyfw.data.tasks import TaskData

    binary = TaskData(name="t", splits={}, text_columns=["text"], label_names=["a", "b"])
    with pytest.raises(ValueError, match="has 3 outputs but task 't' needs 2"):
        load_classifier(str(tmp_path / "clf"), binary)
