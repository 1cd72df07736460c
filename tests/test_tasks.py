"""Task registry, custom tasks from config, label mapping, errors, metrics, collation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from tinyfw import metrics as M
from tinyfw.config import TaskCfg
from tinyfw.data.collate import Collator
from tinyfw.data.tasks import TaskDataError, load_task, tokenize


def cfg(**kw):
    return OmegaConf.structured(TaskCfg(**kw))


def write_csv(path: Path, rows, header=("text", "label"), sep=","):
    lines = [sep.join(header)] + [sep.join(str(x) for x in r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_smoke_task_is_deterministic_and_balanced():
    a = load_task(cfg(name="smoke"), Path("/nonexistent"))
    b = load_task(cfg(name="smoke"), Path("/nonexistent"))
    assert {k: len(v) for k, v in a.splits.items()} == {"train": 140, "validation": 30, "test": 30}
    assert a.splits["train"]["text"] == b.splits["train"]["text"]
    assert a.label_names == ["neg", "pos"] and a.main_metric == "accuracy"
    assert 40 <= sum(a.splits["train"]["label"]) <= 100
    assert a.labelled("test")


def test_custom_csv_task_from_config(tmp_path):
    tr = write_csv(tmp_path / "train.csv", [("good film", "pos"), ("bad film", "neg"), ("great", "pos")])
    dv = write_csv(tmp_path / "dev.csv", [("awful", "neg"), ("nice", "pos")])
    te = tmp_path / "test.csv"
    te.write_text("text\nfine\nmeh\n")  # unlabelled test split: no label column
    t = load_task(cfg(name="custom", files={"train": tr, "dev": dv, "test": str(te)},
                      text_columns=["text"], labels=["neg", "pos"]), tmp_path)
    assert t.splits["train"]["label"] == [1, 0, 1]
    assert t.splits["validation"]["label"] == [0, 1]  # `dev` normalised to `validation`
    assert t.splits["test"]["label"] == [-1, -1] and not t.labelled("test")
    assert t.num_labels == 2 and t.text_columns == ["text"]


def test_custom_pair_tsv_jsonl_parquet_and_int_labels(tmp_path):
    tr = write_csv(tmp_path / "train.tsv", [("a cat", "a dog", 1), ("x", "y", 0)],
                   header=("s1", "s2", "y"), sep="\t")
    dv = tmp_path / "dev.jsonl"
    dv.write_text("\n".join(json.dumps({"s1": "p", "s2": "q", "y": i % 2}) for i in range(4)))
    from datasets import Dataset

    te = tmp_path / "test.parquet"
    Dataset.from_dict({"s1": ["u"], "s2": ["v"], "y": [1]}).to_parquet(str(te))
    t = load_task(cfg(name="custom", files={"train": tr, "validation": str(dv), "test": str(te)},
                      text_columns=["s1", "s2"], label_column="y", labels=["no", "yes"]), tmp_path)
    assert t.splits["train"]["label"] == [1, 0]  # ints read as indices
    assert t.splits["validation"]["label"] == [0, 1, 0, 1]
    assert t.splits["test"]["label"] == [1]
    assert t.splits["train"].column_names == ["s1", "s2", "label"]


def test_custom_regression(tmp_path):
    tr = write_csv(tmp_path / "train.csv", [("a", 0.5), ("b", 4.0), ("c", 2.5)])
    dv = write_csv(tmp_path / "dev.csv", [("d", 1.0), ("e", 3.0)])
    t = load_task(cfg(name="custom", files={"train": tr, "validation": dv}, text_columns=["text"],
                      regression=True), tmp_path)
    assert t.regression and t.num_labels == 1 and t.main_metric == "corr"
    assert np.allclose(t.splits["train"]["label"], [0.5, 4.0, 2.5])


def test_mnli_label_order_is_mapped_by_name(tmp_path):
    """A local MNLI stand-in whose labels come as names (and as a ClassLabel in another
    order) lands on the registry order entailment / neutral / contradiction."""
    from datasets import ClassLabel, Dataset, Features, Value

    rows = [("p1", "h1", "contradiction"), ("p2", "h2", "entailment"), ("p3", "h3", "neutral")]
    tr = write_csv(tmp_path / "train.csv", rows, header=("premise", "hypothesis", "label"))
    feats = Features({"premise": Value("string"), "hypothesis": Value("string"),
                      "label": ClassLabel(names=["contradiction", "entailment", "neutral"])})
    dm = tmp_path / "dev_m.parquet"
    Dataset.from_dict({"premise": ["a", "b", "c"], "hypothesis": ["d", "e", "f"], "label": [0, 1, 2]},
                      features=feats).to_parquet(str(dm))
    mm = write_csv(tmp_path / "dev_mm.csv", [("q", "r", "neutral")], header=("premise", "hypothesis", "label"))
    t = load_task(cfg(name="mnli", files={"train": tr, "validation_matched": str(dm),
                                          "validation_mismatched": mm}), tmp_path)
    assert t.label_names == ["entailment", "neutral", "contradiction"]
    assert t.splits["train"]["label"] == [2, 0, 1]
    assert t.splits["validation"]["label"] == [2, 0, 1]  # ClassLabel remapped by name
    assert t.dev_split == "validation" and t.eval_splits == ["validation", "validation_mismatched"]
    assert t.text_columns == ["premise", "hypothesis"]


def test_glue_registry_metrics():
    from tinyfw.data.tasks import TASKS, metrics_for

    assert metrics_for("cola", False)[1] == "mcc"
    assert metrics_for("stsb", True)[1] == "corr"
    assert metrics_for("mrpc", False)[1] == "acc_and_f1" and metrics_for("qqp", False)[1] == "acc_and_f1"
    assert metrics_for("sst2", False)[1] == "accuracy"
    assert TASKS["mnli"].labels == ["entailment", "neutral", "contradiction"]


def test_errors_name_file_column_and_value(tmp_path):
    tr = write_csv(tmp_path / "train.csv", [("good", "pos"), ("bad", "neg")])
    dv = write_csv(tmp_path / "dev.csv", [("ok", "pos")])
    base = dict(name="custom", text_columns=["text"], labels=["neg", "pos"])
    with pytest.raises(TaskDataError, match=r"train.csv: text column 'sentence' not found; available columns: \['text', 'label'\]"):
        load_task(cfg(**{**base, "text_columns": ["sentence"]}, files={"train": tr, "validation": dv}), tmp_path)
    with pytest.raises(TaskDataError, match=r"label column 'y' not found"):
        load_task(cfg(**base, label_column="y", files={"train": tr, "validation": dv}), tmp_path)
    bad = write_csv(tmp_path / "bad.csv", [("hmm", "meh")])
    with pytest.raises(TaskDataError, match=r"bad.csv.*unknown label 'meh'.*\['neg', 'pos'\]"):
        load_task(cfg(**base, files={"train": tr, "validation": bad}), tmp_path)
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    with pytest.raises(TaskDataError, match=r"split 'validation' is empty"):
        load_task(cfg(**base, files={"train": tr, "validation": str(empty)}), tmp_path)
    with pytest.raises(TaskDataError, match=r"split 'validation' not found: .*nope.csv"):
        load_task(cfg(**base, files={"train": tr, "validation": str(tmp_path / "nope.csv")}), tmp_path)
    with pytest.raises(TaskDataError, match="unknown task 'glue9'"):
        load_task(cfg(name="glue9"), tmp_path)


def test_mr_asset_missing_is_a_clear_error(tmp_path):
    from tinyfw.paths import MissingAssetError

    with pytest.raises(MissingAssetError, match="stage=assets"):
        load_task(cfg(name="mr"), tmp_path)


def test_metrics_match_hand_computation():
    y = [0, 1, 1, 0]
    p = [0, 1, 0, 0]
    m = M.compute(["accuracy", "f1", "mcc", "acc_and_f1"], p, y)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(2 / 3)  # tp=1 fp=0 fn=1
    # mcc = (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (1*2 - 0) / sqrt(1*2*2*3)
    assert m["mcc"] == pytest.approx(2 / np.sqrt(12))
    assert m["acc_and_f1"] == pytest.approx((0.75 + 2 / 3) / 2)
    r = M.compute(["pearson", "spearman", "corr"], [1.0, 2.0, 3.0, 5.0], [2.0, 4.0, 6.0, 10.0])
    assert r["pearson"] == pytest.approx(1.0) and r["spearman"] == pytest.approx(1.0) and r["corr"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown metric"):
        M.compute(["bleu"], p, y)


def test_tokenize_and_collate_pairs_and_regression(tmp_path):
    from tinyfw.models.load import load_tokenizer

    tok = load_tokenizer("tiny", tmp_path)
    tr = write_csv(tmp_path / "train.csv", [("a cat", "the dog", 1.5), ("x", "y z w", 0.0)], header=("a", "b", "label"))
    t = load_task(cfg(name="custom", files={"train": tr, "validation": tr}, text_columns=["a", "b"], regression=True), tmp_path)
    enc = tokenize(t.splits["train"], t.text_columns, tok, max_seq_len=16)
    batch = Collator(tok.pad_token_id, regression=True)([enc[0], enc[1]])
    assert batch["input_ids"].shape == batch["attention_mask"].shape == batch["token_type_ids"].shape
    assert batch["token_type_ids"].max() == 1  # second segment present
    assert batch["labels"].dtype.is_floating_point and batch["labels"].tolist() == [1.5, 0.0]
    assert batch["attention_mask"].sum(1).tolist() == [len(enc[0]["input_ids"]), len(enc[1]["input_ids"])]
