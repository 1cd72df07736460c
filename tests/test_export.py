"""stage=export: vocabulary pruning (same tokens, same logits), ONNX export (dynamic axes,
ONNX Runtime within the stated tolerance), int8 quantization, model cards with Hub metadata,
the stage end to end on the smoke task and the benchmark rows of its forms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_tinyfw

pytest.importorskip("onnxruntime", reason="pip install '.[export]'")
pytest.importorskip("onnxscript", reason="pip install '.[export]'")

ATOL = 1e-4  # export.atol: ONNX Runtime fp32 vs PyTorch logits


def _classifier(out: Path, hidden: int = 32, unused: int = 300) -> Path:
    """A 2-layer, 2-label BertForSequenceClassification with the tiny WordPiece vocabulary plus
    ``unused`` pieces no text uses."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from tinyfw.models.load import tiny_vocab

    out.mkdir(parents=True, exist_ok=True)
    vocab = tiny_vocab() + [f"zz{i}" for i in range(unused)]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab=str(out / "vocab.txt"), do_lower_case=True).save_pretrained(out)
    (out / "vocab.txt").unlink()
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=2 * hidden, num_labels=2, pad_token_id=0)
    BertForSequenceClassification(cfg).save_pretrained(out)
    return out


def _smoke_texts():
    from tinyfw.data.tasks import load_task
    from tinyfw.export.forms import task_texts
    from omegaconf import OmegaConf

    from tinyfw.config import TaskCfg

    task = load_task(OmegaConf.structured(TaskCfg(name="smoke")), Path("."))
    return task, list(task_texts(task))


def _logits(model, tok, texts):
    enc = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.inference_mode():
        return model(**enc).logits.numpy(), enc


def test_pruned_model_and_tokenizer_give_the_same_logits(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tinyfw.export import vocab

    src = _classifier(tmp_path / "clf")
    tok = AutoTokenizer.from_pretrained(src)
    model = AutoModelForSequenceClassification.from_pretrained(src).eval()
    task, texts = _smoke_texts()
    keep = vocab.keep_ids(tok, vocab.used_token_ids(tok, texts))
    assert set(tok.all_special_ids) <= set(keep) and len(keep) < len(tok) - 300  # no zz* piece survives
    ptok = vocab.prune_tokenizer(tok, keep)
    assert vocab.check_same_tokens(tok, ptok, keep, texts) == len(texts)
    pruned = vocab.prune_embeddings(AutoModelForSequenceClassification.from_pretrained(src), keep)
    pruned.save_pretrained(tmp_path / "pruned")
    ptok.save_pretrained(tmp_path / "pruned")

    # what a user loads with the Auto classes
    rtok = AutoTokenizer.from_pretrained(tmp_path / "pruned")
    rmodel = AutoModelForSequenceClassification.from_pretrained(tmp_path / "pruned").eval()
    assert rmodel.config.vocab_size == len(keep) == len(rtok)
    assert rmodel.get_input_embeddings().weight.shape[0] == len(keep)
    assert rtok.pad_token_id == rmodel.config.pad_token_id == keep.index(tok.pad_token_id)
    ref, enc = _logits(model, tok, texts)
    got, penc = _logits(rmodel, rtok, texts)
    assert torch.equal(torch.tensor(keep)[penc["input_ids"]], enc["input_ids"])  # same pieces, remapped ids
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    # a dropped piece: new text falls back to kept pieces (or [UNK]), never to an id out of range
    assert tok("zz5")["input_ids"][1:-1] == [tok.convert_tokens_to_ids("zz5")]
    ids = rtok("zz5 €")["input_ids"]
    assert max(ids) < len(keep) and ids[-2] == rtok.unk_token_id


def test_pruning_refuses_other_tokenizers_and_lm_heads(tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    from tinyfw.export import vocab

    with pytest.raises(TypeError, match="WordPiece"):
        vocab.prune_tokenizer(object(), [0, 1])
    lm = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=32))
    with pytest.raises(TypeError, match="LM"):
        vocab.prune_embeddings(lm, [0, 1, 2])


def test_onnx_export_has_dynamic_axes_and_matches_pytorch(tmp_path):
    import onnx
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from conftest import max_abs_diff
    from tinyfw.export.onnx import OrtClassifier, export_classifier, opset_of

    src = _classifier(tmp_path / "clf")
    model = AutoModelForSequenceClassification.from_pretrained(src).eval()
    tok = AutoTokenizer.from_pretrained(src)
    path = export_classifier(model, tmp_path / "onnx" / "model.onnx", opset=23)
    model.config.save_pretrained(path.parent)
    graph = onnx.load(str(path)).graph
    assert opset_of(path) == 23 and "Attention" in {n.op_type for n in graph.node}
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    for i in graph.input:  # symbolic batch and sequence axes
        assert [bool(d.dim_param) for d in i.type.tensor_type.shape.dim] == [True, True]
    ort_model = OrtClassifier.from_dir(path.parent)
    _, texts = _smoke_texts()
    batches = []
    for size, length in ((1, 5), (3, 40), (7, 64)):  # other batch sizes and lengths than the export's
        enc = tok(texts[:size], padding="max_length", truncation=True, max_length=length, return_tensors="pt")
        batches.append(dict(enc))
    assert any((b["attention_mask"] == 0).any() for b in batches)  # padding inside a batch too
    assert max_abs_diff(model, ort_model, batches) < ATOL


def test_int8_form_quantizes_the_linear_layers(tmp_path):
    import onnx
    from onnx import numpy_helper
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tinyfw.export.onnx import OrtClassifier, export_classifier
    from tinyfw.export.quantize import quantize_int8

    src = _classifier(tmp_path / "clf", hidden=64)
    model = AutoModelForSequenceClassification.from_pretrained(src).eval()
    fp32 = export_classifier(model, tmp_path / "fp32" / "model.onnx")
    int8 = quantize_int8(fp32, tmp_path / "int8" / "model.onnx")
    model.config.save_pretrained(int8.parent)
    g32, g8 = onnx.load(str(fp32)).graph, onnx.load(str(int8)).graph
    linear = sum(n.op_type in ("MatMul", "Gemm") for n in g32.node)  # encoder layers; pooler and head
    assert linear > 0 and sum(n.op_type == "MatMulInteger" for n in g8.node) == linear
    # every weight matrix (linear layers, embedding tables) is stored in 8 bits
    eight_bit = sum(numpy_helper.to_array(i).size for i in g8.initializer
                    if numpy_helper.to_array(i).dtype in (np.int8, np.uint8))
    assert eight_bit >= sum(p.numel() for p in model.parameters() if p.dim() == 2)
    tok = AutoTokenizer.from_pretrained(src)
    _, texts = _smoke_texts()
    ref, enc = _logits(model, tok, texts)
    got = OrtClassifier.from_dir(int8.parent)(**enc).logits.numpy()
    assert np.abs(got - ref).max() < 0.05 * (np.abs(ref).max() + 1)  # int8 rounding, not a different model


def test_card_metadata_parses_as_a_hub_card(tmp_path):
    from huggingface_hub import ModelCard

    from tinyfw.models.card import hub_metadata, hub_model_name, write_card

    assert hub_model_name("minilm-l6") == "sentence-transformers/all-MiniLM-L6-v2"
    assert hub_model_name("bert-base-uncased") == "bert-base-uncased"
    assert hub_model_name("random") is None and hub_model_name(str(tmp_path)) is None
    task = {"name": "sst2", "labels": ["negative", "positive"], "main_metric": "accuracy"}
    meta = hub_metadata(model_name="m", task=task, metrics={"dev": {"accuracy": 0.9}, "test": {"accuracy": 0.88}},
                        base_model="bert-base-uncased", datasets=["nyu-mll/glue"], license="apache-2.0")
    write_card(tmp_path, title="t", summary="s", task=task, metrics={"dev": {"accuracy": 0.9}}, size={},
               config={}, name="m", metadata=meta)
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.base_model == "bert-base-uncased" and card.data.license == "apache-2.0"
    assert card.data.datasets == ["nyu-mll/glue"] and card.data.metrics == ["accuracy"]
    res = {(r.dataset_split, r.metric_value) for r in card.data.eval_results}
    assert res == {("validation", 0.9), ("test", 0.88)}
    assert "# t" in card.text


def test_export_inputs_fail_early(tmp_path, shared_home):
    rec = run_tinyfw("stage=export", "experiment=smoke", run_dir=tmp_path / "a", home=shared_home, expect_ok=False)
    assert rec["status"] == "failed" and "export.student is empty" in rec["error"]
    rec = run_tinyfw("stage=export", "experiment=smoke", f"export.student={tmp_path}/nope", run_dir=tmp_path / "b",
                     home=shared_home, expect_ok=False)
    assert "not an HF model directory" in rec["error"]
    run_dir = tmp_path / "run"
    src = _classifier(run_dir / "student")
    (run_dir / "result.json").write_text(json.dumps({"config": {"task": {"name": "mr"}}, "outputs": {}}))
    rec = run_tinyfw("stage=export", "experiment=smoke", f"export.student={src}", run_dir=tmp_path / "c",
                     home=shared_home, expect_ok=False)
    assert "trained on task 'mr'" in rec["error"] and "task=mr" in rec["error"]
    rec = run_tinyfw("stage=export", "experiment=smoke", f"export.student={src}", "export.onnx=false",
                     run_dir=tmp_path / "d", home=shared_home, expect_ok=False)
    assert "export.int8=true" in rec["error"]


@pytest.mark.slow
def test_export_stage_writes_every_form_with_accuracy_and_bench_rows(tmp_path, shared_home, monkeypatch):
    from huggingface_hub import ModelCard
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    src = _classifier(tmp_path / "clf")
    pushed = []
    import tinyfw.export.hub as hub

    monkeypatch.setattr(hub, "push", lambda repo, main, onnx: pushed.append((repo, Path(main).name,
                                                                             [Path(d).name for d in onnx])))
    res = run_tinyfw("stage=export", "experiment=smoke", f"export.student={src}", "export.push_to_hub=me/tiny",
                     run_dir=tmp_path / "exp", home=shared_home)
    m, out = res["metrics"], tmp_path / "exp" / "export"
    assert list(m["forms"]) == ["fp32", "pruned", "onnx", "onnx_int8"]
    assert m["vocab"]["before"] == len(AutoTokenizer.from_pretrained(src)) > m["vocab"]["after"]
    assert m["checks"]["pruned_max_abs_diff"] <= 1e-5 and m["checks"]["onnx_max_abs_diff"] < ATOL
    assert 0 <= m["checks"]["int8_dev_agreement"] <= 1 and m["onnx"]["opset"] == 23
    fp32 = m["forms"]["fp32"]
    for key, form in m["forms"].items():
        assert set(form["dev"]) == set(form["test"]) == {"accuracy"} and form["size_bytes"] > 0
        if key in ("fp32", "pruned"):  # pruning changes no prediction
            assert form["dev"] == fp32["dev"] and form["test"] == fp32["test"]
        assert form["delta"] == pytest.approx(form["test"]["accuracy"] - fp32["test"]["accuracy"])
    assert m["forms"]["pruned"]["size_bytes"] < fp32["size_bytes"]
    assert m["forms"]["onnx_int8"]["size_bytes"] < m["forms"]["onnx"]["size_bytes"]
    model = AutoModelForSequenceClassification.from_pretrained(out / "pruned")
    assert model.config.vocab_size == m["vocab"]["after"] == len(json.loads((out / "pruned" / "kept_ids.json").read_text()))
    for d in ("pruned", "onnx", "onnx-int8"):
        card = ModelCard.load(out / d / "README.md")
        assert card.data.license == "apache-2.0" and card.data.datasets == ["smoke"] and card.data.metrics == ["accuracy"]
        assert {r.dataset_split for r in card.data.eval_results} == {"validation", "test"}
    table = (out / "export.md").read_text()
    assert "| ONNX Runtime int8 (dynamic) | " in table and json.loads((out / "export.json").read_text())["forms"]
    assert pushed == [("me/tiny", "pruned", ["onnx", "onnx-int8"])]

    # the benchmark: a row per exported form beside the student, with dev accuracy
    bench = run_tinyfw("stage=bench", "experiment=smoke", f"bench.export_dir={tmp_path / 'exp'}",
                       "bench.paper_shapes=true", "bench.seq_len=8", "bench.batch_sizes=[1,2]", "bench.repeats=1",
                       "bench.warmup=0", run_dir=tmp_path / "bench", home=shared_home)
    rows = bench["metrics"]["models"]
    assert list(rows) == ["teacher", "student", "export_pruned", "export_onnx", "export_onnx_int8", "paper_bert_base",
                          "paper_tinybert4", "paper_tinybert6", "paper_tinybert4_onnx", "paper_tinybert4_onnx_int8"]
    for key in ("student", "export_pruned", "export_onnx", "export_onnx_int8"):
        r = rows[key]
        assert r["accuracy"] == m["forms"][key.replace("export_", "").replace("student", "fp32")]["dev"]["accuracy"]
        assert set(r["devices"]["cpu"]) == {"b1", "b2"} and r["speedup"]["cpu"]["b1"] > 0
    assert rows["export_onnx_int8"]["size_bytes"] == m["forms"]["onnx_int8"]["size_bytes"]
    tb4, q = rows["paper_tinybert4"], rows["paper_tinybert4_onnx_int8"]
    assert q["shape"]["vocab"] == m["vocab"]["after"] and q["params_non_embedding"] == tb4["params_non_embedding"] + 2 * 312 + 2
    assert q["reference"] == "paper_bert_base" and q["accuracy"] is None
    md = (tmp_path / "bench" / "bench.md").read_text()
    assert "| TinyBERT4 (paper shape, vocab" in md and "ONNX Runtime int8 |" in md
