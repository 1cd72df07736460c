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

    from tinyfw.models.classifier import load_classifier

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


def test_pretraining_checkpoint_heads_are_ignored_but_missing_encoder_weights_fail(tmp_path, caplog):
    """bert-base-uncased as published is a BertForPreTraining checkpoint (cls.predictions.*,
    cls.seq_relationship.* beside the encoder): the encoder and classifier loads accept it."""
    import json as _json
    import logging

    from transformers import BertConfig, BertForPreTraining, BertModel

    from tinyfw.models.load import load_strict
    from tinyfw.models.classifier import load_classifier

    cfg = BertConfig(vocab_size=99, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    torch.manual_seed(0)
    pre = BertForPreTraining(cfg)
    pre.save_pretrained(tmp_path / "bert")
    with caplog.at_level(logging.INFO, logger="tinyfw.models.load"):
        enc = load_strict(BertModel, str(tmp_path / "bert"))
    assert "cls.predictions, cls.seq_relationship" in caplog.text and "unused by BertModel" in caplog.text
    assert torch.equal(enc.encoder.layer[1].output.dense.weight, pre.bert.encoder.layer[1].output.dense.weight)
    clf = load_classifier(str(tmp_path / "bert"), None, new_head=True)  # a fresh head on the encoder
    assert clf.config.num_labels == 2
    # an encoder weight missing from the checkpoint still fails loudly
    conf = _json.loads((tmp_path / "bert" / "config.json").read_text())
    (tmp_path / "bert" / "config.json").write_text(_json.dumps({**conf, "num_hidden_layers": 3}))
    with pytest.raises(ValueError, match=r"missing keys \['encoder\.layer\.2\."):
        load_strict(BertModel, str(tmp_path / "bert"))


def _classifier_with_labels(d: Path, id2label) -> Path:
    from transformers import BertConfig, BertForSequenceClassification

    from tinyfw.models.load import write_tiny_tokenizer

    tok = write_tiny_tokenizer(d)
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        num_labels=len(id2label), id2label=dict(enumerate(id2label)),
        label2id={n: i for i, n in enumerate(id2label)})).save_pretrained(d)
    return d


def test_external_teacher_label_order_is_checked(tmp_path, shared_home, kw_root, caplog):
    """teacher_ft.path: id2label must name the task's labels in the task's order (MNLI's trap)."""
    import logging

    from tinyfw.data.tasks import TaskData
    from tinyfw.models.classifier import load_classifier

    three = TaskData(name="nli", splits={}, text_columns=["premise", "hypothesis"],
                     label_names=["entailment", "neutral", "contradiction"])
    other = _classifier_with_labels(tmp_path / "other", ["contradiction", "entailment", "neutral"])
    with pytest.raises(ValueError, match="the same labels in another order"):
        load_classifier(str(other), three)
    wrong = _classifier_with_labels(tmp_path / "wrong", ["yes", "maybe", "no"])
    with pytest.raises(ValueError, match=r"labels its outputs \['yes', 'maybe', 'no'\] but task 'nli'"):
        load_classifier(str(wrong), three)
    generic = _classifier_with_labels(tmp_path / "generic", ["LABEL_0", "LABEL_1", "LABEL_2"])
    with caplog.at_level(logging.WARNING, logger="tinyfw.models.classifier"):
        assert load_classifier(str(generic), three).config.num_labels == 3  # nothing to check: a warning
    assert "names no labels" in caplog.text
    # through the stage: refused in one line, accepted once the task is declared in its order
    swapped = _classifier_with_labels(tmp_path / "swapped", ["pos", "neg"])
    rec = run_tinyfw("stage=teacher", *kw_overrides(kw_root), f"teacher_ft.path={swapped}",
                     run_dir=tmp_path / "run", home=shared_home, expect_ok=False)
    assert rec["status"] == "failed"
    assert "labels its outputs ['pos', 'neg'] but task 'custom' has ['neg', 'pos'] (the same labels in another " \
           "order)" in rec["error"] and "task.labels=[pos,neg]" in rec["error"]
    ok = run_tinyfw("stage=teacher", *kw_overrides(kw_root), f"teacher_ft.path={swapped}", "task.labels=[pos,neg]",
                    run_dir=tmp_path / "run2", home=shared_home)
    assert ok["metrics"]["cached"] and "accuracy" in ok["metrics"]["dev"]


def test_missing_teacher_ft_path_names_the_key(tmp_path, shared_home, kw_root):
    rec = run_tinyfw("stage=teacher", *kw_overrides(kw_root), "teacher_ft.path=/nonexistent/teacher",
                     run_dir=tmp_path / "run", home=shared_home, expect_ok=False)
    assert rec["status"] == "failed"
    assert "teacher_ft.path: path '/nonexistent/teacher' does not exist: point it at a fine-tuned teacher" in rec["error"]
