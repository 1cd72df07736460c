"""Token classification (task.type=token): the CoNLL reader and its errors, tag alignment on
word pieces, seqeval figures, the collator, and a tiny NER task through every stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tinyfw.config import TaskCfg
from tinyfw.data.tasks import load_task
from tinyfw.data.tokens import TokenDataError, metrics_for_tags, scheme_of, tokenize_words

from conftest import run_tinyfw

CONLL = """-DOCSTART- -X- -X- O

Anna NNP B-NP B-PER
lives VBZ B-VP O
in IN B-PP O
New NNP B-NP B-LOC
York NNP I-NP I-LOC
.  . O O
\t
Acme NNP B-NP B-ORG
hired VBD B-VP O
Bob NNP B-NP B-PER
"""


def _task(tmp_path: Path, files: dict, **kw):
    cfg = OmegaConf.structured(TaskCfg(name="custom", type="token", files=files, **kw))
    return load_task(cfg, tmp_path)


def _write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_conll_file_read_by_hand(tmp_path):
    f = _write(tmp_path, "train.conll", CONLL)
    t = _task(tmp_path, {"train": f, "validation": f})
    assert t.token and t.text_columns == ["tokens"] and t.main_metric == "entity_f1"
    assert t.label_names == ["B-LOC", "B-ORG", "B-PER", "I-LOC", "O"]  # sorted train tags
    tr = t.splits["train"]
    assert tr["tokens"] == [["Anna", "lives", "in", "New", "York", "."], ["Acme", "hired", "Bob"]]  # DOCSTART gone
    names = t.label_names
    assert [[names[i] for i in row] for row in tr["label"]] == [
        ["B-PER", "O", "O", "B-LOC", "I-LOC", "O"], ["B-ORG", "O", "B-PER"]]


def test_declared_tags_and_tag_field(tmp_path):
    f = _write(tmp_path, "t.txt", "EU B-ORG NNP\nrejects O VBZ\n   \nBonn B-LOC NNP\n")
    t = _task(tmp_path, {"train": f, "validation": f}, labels=["O", "B-ORG", "B-LOC"], tag_field=1)
    assert t.label_names == ["O", "B-ORG", "B-LOC"] and t.main_metric == "entity_f1"
    assert t.splits["train"]["label"] == [[1, 0], [2]]  # declared order; whitespace-only line ends a sentence
    pos = _task(tmp_path, {"train": f, "validation": f})  # the last field: POS tags, not an entity tag set
    assert pos.label_names == ["NNP", "VBZ"] and pos.main_metric == "token_accuracy"


@pytest.mark.parametrize("text, kw, needle", [
    ("Anna B-PER\nlives\n", {}, "t.conll:2: one field 'lives'"),
    ("Anna B-PER\nlives O\n", {"labels": ["O", "B-LOC"]}, "t.conll:1: tag 'B-PER' is not among the task's tags"),
    ("Anna B-PER\nSmith I-\n", {}, "t.conll:2: tag 'I-' has no entity type; write I-TYPE"),
])
def test_conll_errors_name_file_line_and_fix(tmp_path, text, kw, needle):
    f = _write(tmp_path, "t.conll", text)
    with pytest.raises(TokenDataError) as err:
        _task(tmp_path, {"train": f, "validation": f}, **kw)
    msg = str(err.value)
    assert needle in msg and "\n" not in msg


def test_list_file_with_mismatched_counts_is_refused(tmp_path):
    rows = [{"words": ["a", "b"], "tags": ["O", "O"]}, {"words": ["c", "d", "e"], "tags": ["O", "B-X"]}]
    f = _write(tmp_path, "t.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(TokenDataError, match="row 1 has 3 words in 'words' but 2 tags in 'tags'; give one tag per word"):
        _task(tmp_path, {"train": f, "validation": f}, tokens_column="words", tags_column="tags")
    rows[1]["tags"].append("I-X")
    f = _write(tmp_path, "t.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    t = _task(tmp_path, {"train": f, "validation": f}, tokens_column="words", tags_column="tags")
    assert t.label_names == ["B-X", "I-X", "O"] and t.splits["train"]["label"][1] == [2, 0, 1]


def test_seqeval_figures_against_a_hand_computed_case():
    from tinyfw.metrics import token_compute

    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-PER"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O", "O"]]
    # gold entities: PER(0-1), LOC(3), ORG(0), PER(2) = 4; predicted: PER(0-1), ORG(3), ORG(0) = 3; correct 2
    m = token_compute(["entity_f1", "entity_precision", "entity_recall", "token_accuracy"], pred, gold, "IOB2")
    assert m["entity_precision"] == pytest.approx(2 / 3) and m["entity_recall"] == pytest.approx(2 / 4)
    assert m["entity_f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert m["token_accuracy"] == pytest.approx(5 / 7)
    # strict mode: an entity cut short (I- without B- in the prediction) does not count
    m2 = token_compute(["entity_f1"], [["O", "I-PER"]], [["B-PER", "I-PER"]], "IOB2")
    assert m2["entity_f1"] == 0.0
    assert scheme_of(["O", "S-PER", "B-LOC", "E-LOC"]) == "IOBES" and scheme_of(["NN", "VB"]) is None
    assert metrics_for_tags(["NN", "DT"])[1] == "token_accuracy"


def test_first_piece_tags_ignore_elsewhere_and_cut_count(caplog):
    from datasets import Dataset
    from transformers import BertTokenizerFast

    import tempfile

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "new", "york", "is", "big", "##ger", "than", "bonn", "."]
    with tempfile.TemporaryDirectory() as d:
        Path(d, "vocab.txt").write_text("\n".join(vocab) + "\n")
        tok = BertTokenizerFast(vocab=str(Path(d, "vocab.txt")), do_lower_case=True)
    ds = Dataset.from_dict({"tokens": [["New", "York", "is", "bigger", "than", "Bonn", "."], ["bigger"]],
                            "label": [[1, 2, 0, 0, -1, 1, 0], [-1]]})
    full = tokenize_words(ds, "tokens", tok, 32)
    assert full[0]["labels"] == [-100, 1, 2, 0, 0, -100, -1, 1, 0, -100]  # 'big' '##ger': tag on 'big' only
    assert full[1]["labels"] == [-100, -1, -100, -100]
    with caplog.at_level("WARNING"):
        cut = tokenize_words(ds, "tokens", tok, 6)
    assert cut[0]["labels"] == [-100, 1, 2, 0, 0, -100]
    assert "1 of 2 sentences are longer than max_seq_len=6" in caplog.text


def test_collator_pads_labels_and_concatenates_teacher_logits():
    from tinyfw.data.collate import Collator

    rows = [{"input_ids": [2, 5, 3], "labels": [-100, 1, -100], "t_logits": [[0.1, 0.9]]},
            {"input_ids": [2, 5, 6, 7, 3], "labels": [-100, 0, -1, -100, -100], "t_logits": [[1.0, 0.0], [0.5, 0.5]]}]
    b = Collator(0)(rows)
    assert b["labels"].tolist() == [[-100, 1, -100, -100, -100], [-100, 0, -1, -100, -100]]
    assert b["t_logits"].shape == (3, 2)  # one row per word-initial position (labels != -100), rows in order
    assert int((b["labels"] != -100).sum()) == 3


def test_smoke_token_task_shape():
    t = load_task(OmegaConf.structured(TaskCfg(name="smoke_token")), Path("/nonexistent"))
    assert {k: len(v) for k, v in t.splits.items()} == {"train": 28, "validation": 6, "test": 6}
    assert t.label_names == ["B-LOC", "B-ORG", "B-PER", "I-ORG", "I-PER", "O"] and t.main_metric == "entity_f1"


@pytest.mark.slow
def test_token_task_through_every_stage(tmp_path, shared_home):
    """teacher -> GD -> TD (td on; td=off) -> report -> export on the tiny NER task."""
    common = ("task=smoke_token", "experiment=smoke", "augment=off")
    t = run_tinyfw("stage=teacher", *common, run_dir=tmp_path / "teacher", home=shared_home)
    assert set(t["metrics"]["dev"]) >= {"entity_f1", "token_accuracy"}
    full = run_tinyfw("stage=task", *common, "seed=1", run_dir=tmp_path / "sweep" / "full", home=shared_home)
    m = full["metrics"]
    assert m["main_metric"] == "entity_f1" and m["teacher_logits"]["computed"] == 28
    assert m["health"]["dev_pred_classes"] >= 1 and "step1" in m["steps"] and "step2" in m["steps"]
    student = Path(full["outputs"]["student"])
    assert json.loads((student / "config.json").read_text())["architectures"] == ["BertForTokenClassification"]
    again = run_tinyfw("stage=task", *common, "seed=2", run_dir=tmp_path / "sweep" / "full2", home=shared_home)
    assert again["metrics"]["teacher_logits"]["cached"] is True  # per-token logits computed once
    off = run_tinyfw("stage=task", *common, "td=off", "seed=1", run_dir=tmp_path / "sweep" / "wotd", home=shared_home)
    assert "finetune" in off["metrics"]["steps"] and 0 <= off["metrics"]["test"]["entity_f1"] <= 1
    rep = run_tinyfw("stage=report", f"report.source={tmp_path / 'sweep'}", run_dir=tmp_path / "report", home=shared_home)
    md = Path(rep["outputs"]["markdown"]).read_text()
    assert "smoke_token (entity F1)" in md and "w/o TD" in md
    exp = run_tinyfw("stage=export", *common, f"export.student={student}", run_dir=tmp_path / "export", home=shared_home)
    forms = exp["metrics"]["forms"]
    assert set(forms) >= {"fp32", "pruned"} and forms["pruned"]["test"] == pytest.approx(forms["fp32"]["test"])
    if "onnx" in forms:
        assert exp["metrics"]["checks"]["onnx_max_abs_diff"] <= 1e-4
        assert 0 <= exp["metrics"]["checks"]["int8_dev_agreement"] <= 1


def test_custom_token_files_with_one_tag_or_empty_words_are_refused_in_one_line(tmp_path):
    """The custom tasks' checks (one class, empty text cell) for word lists: a one-tag file, a row
    with no words and an empty word are refused naming the file, the row and the key."""
    one = _write(tmp_path, "one.conll", "Anna O\nlives O\n\nBob O\n")
    from tinyfw.data.tasks import TaskDataError

    with pytest.raises(TaskDataError, match=r"token task 'custom' has one tag \('O'\) in .*one.conll: .*task.labels"):
        _task(tmp_path, {"train": one, "validation": one})
    ok = {"tokens": ["a", "b"], "tags": ["O", "B-X"]}
    for bad, needle in (({"tokens": [], "tags": []}, r"t.jsonl: row 1 has no words in 'tokens' \(task.tokens_column\)"),
                        ({"tokens": ["c", " "], "tags": ["O", "O"]},
                         r"t.jsonl: row 1 word 1 in 'tokens' \(task.tokens_column\) is empty")):
        f = _write(tmp_path, "t.jsonl", "\n".join(json.dumps(r) for r in (ok, bad)) + "\n")
        with pytest.raises(TokenDataError, match=needle) as err:
            _task(tmp_path, {"train": f, "validation": f}, tags_column="tags")
        assert "\n" not in str(err.value)
    f = _write(tmp_path, "t.jsonl", json.dumps(ok) + "\n")  # list columns are not text cells: no misfire
    assert _task(tmp_path, {"train": f, "validation": f}, tags_column="tags").label_names == ["B-X", "O"]


def test_recipe_prediction_losses_and_hard_label_mix_on_a_token_student():
    """distill.pred_loss=mse|kl and distill.hard_label_weight on a token classifier: the soft loss
    reads the word-initial positions only (in row order, as the teacher's logits are cached), the
    hard loss the gold tags only (-1: an augmented word, -100: other pieces and padding)."""
    import torch
    import torch.nn.functional as F
    from transformers import BertConfig, BertForTokenClassification

    from tinyfw.distill.steps import prediction_loss_fn

    torch.manual_seed(0)
    model = BertForTokenClassification(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2,
                                                  num_attention_heads=2, intermediate_size=32, num_labels=3,
                                                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).eval()
    ids = torch.tensor([[2, 5, 6, 7, 3, 0], [2, 8, 9, 3, 0, 0]])
    labels = torch.tensor([[-100, 1, -100, 0, -100, -100], [-100, -1, 2, -100, -100, -100]])
    where = [(0, 1), (0, 3), (1, 1), (1, 2)]  # word-initial pieces, row by row
    t = torch.randn(len(where), 3)
    batch = {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": labels, "t_logits": t}
    with torch.no_grad():
        z = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits
    s = torch.stack([z[i, j] for i, j in where])
    gold = [(0, 1, 1), (0, 3, 0), (1, 2, 2)]  # (row, piece, tag): the -1 word has no gold tag
    hard = sum(-F.log_softmax(z[i, j], -1)[c] for i, j, c in gold) / len(gold)
    with torch.no_grad():
        loss, logs = prediction_loss_fn(1.0, 1.0, False, kind="mse", hard_label_weight=0.5)({"student": model}, batch)
    assert torch.allclose(loss, ((s - t) ** 2).mean() + 0.5 * hard, atol=1e-5)
    assert abs(logs["hard"] - float(hard)) < 1e-5
    kl = (F.softmax(t, -1) * (F.log_softmax(t, -1) - F.log_softmax(s, -1))).sum(-1).mean()
    with torch.no_grad():
        loss, logs = prediction_loss_fn(1.0, 1.0, False, kind="kl", hard_label_weight=0.0)({"student": model}, batch)
    assert torch.allclose(loss, kl, atol=1e-5) and "hard" not in logs
