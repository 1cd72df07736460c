"""Structured pruning: heads and FFN neurons removed for real (shapes, parameter counts, the
same function as the original with those parts gated off), the pruned model reloads, pruning
nothing changes nothing, importance scores, ONNX/int8 of uneven heads, and tinyfw.serve."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

H, HEADS, FFN = 32, 4, 64
D = H // HEADS


def _model(seed: int = 0):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=100, hidden_size=H, num_hidden_layers=2, num_attention_heads=HEADS,
                     intermediate_size=FFN, num_labels=2, pad_token_id=0)
    return BertForSequenceClassification(cfg).eval()


def _inputs(batch: int = 3, seq: int = 9):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 100, (batch, seq), generator=g)
    mask = torch.ones_like(ids)
    mask[0, -3:] = 0  # padding inside the batch
    return {"input_ids": ids, "attention_mask": mask}


def _gated_logits(model, heads_off, neurons_off):
    """The original model with heads' outputs and FFN neurons' activations multiplied by 0."""
    hooks = []
    for i, layer in enumerate(model.bert.encoder.layer):
        hg = torch.ones(HEADS)
        hg[heads_off.get(i, [])] = 0
        fg = torch.ones(FFN)
        fg[neurons_off.get(i, [])] = 0
        hooks.append(layer.attention.output.dense.register_forward_pre_hook(
            lambda m, a, hg=hg: ((a[0].view(*a[0].shape[:-1], HEADS, D) * hg.view(HEADS, 1)).view(a[0].shape),)))
        hooks.append(layer.intermediate.register_forward_hook(lambda m, a, o, fg=fg: o * fg))
    try:
        with torch.inference_mode():
            return model(**_inputs()).logits
    finally:
        for h in hooks:
            h.remove()


def _logits(model):
    with torch.inference_mode():
        return model.eval()(**_inputs()).logits


def test_pruning_removes_the_heads_and_neurons_it_says(tmp_path):
    from tinyfw.prune import structure as st

    model = _model()
    n0 = sum(p.numel() for p in model.parameters())
    heads = {0: [1, 3], 1: [0]}
    keep = {0: list(range(0, 64, 2)), 1: list(range(40))}  # layer 0 keeps 32, layer 1 keeps 40
    ref = _gated_logits(model, heads, {0: list(range(1, 64, 2)), 1: list(range(40, 64))})
    pruned = st.prune(model, heads, keep)
    assert type(pruned).__name__ == "PrunedBertForSequenceClassification"
    assert st.heads_per_layer(pruned) == [2, 3] and st.ffn_sizes(pruned) == [32, 40]
    l0, l1 = pruned.bert.encoder.layer
    assert l0.attention.self.query.weight.shape == (2 * D, H) and l0.attention.output.dense.weight.shape == (H, 2 * D)
    assert l1.attention.self.value.bias.shape == (3 * D,)
    assert l0.intermediate.dense.weight.shape == (32, H) and l1.output.dense.weight.shape == (H, 40)
    per_head = 3 * (H * D + D) + H * D  # Q, K, V rows + biases, output columns
    per_neuron = H + 1 + H  # intermediate row + bias, output column
    assert sum(p.numel() for p in pruned.parameters()) == n0 - 3 * per_head - (32 + 24) * per_neuron
    torch.testing.assert_close(_logits(pruned), ref, rtol=0, atol=1e-5)  # the same function, parts gated off
    assert pruned.config.pruned_heads == {"0": [1, 3], "1": [0]} and pruned.config.layer_intermediate_sizes == [32, 40]

    # a second pruning: indices among the remaining heads, recorded as original ones
    again = st.prune(pruned, {0: [1]}, {})
    assert again.config.pruned_heads["0"] == [1, 2, 3] and st.heads_per_layer(again) == [1, 3]


def test_pruned_model_reloads(tmp_path):
    from transformers import AutoModelForSequenceClassification

    from tinyfw.prune import structure as st

    pruned = st.prune(_model(), {0: [0], 1: [2, 3]}, {0: list(range(48)), 1: list(range(48))})
    assert pruned.config.intermediate_size == 48 and not hasattr(pruned.config, "layer_intermediate_sizes")
    pruned.save_pretrained(tmp_path)
    assert (tmp_path / "modeling_pruned_bert.py").is_file()
    ref = _logits(pruned)
    mine = st.load_pruned(str(tmp_path))
    assert st.heads_per_layer(mine) == [3, 2] and st.ffn_sizes(mine) == [48, 48]
    torch.testing.assert_close(_logits(mine), ref, rtol=0, atol=1e-6)  # eager vs sdpa kernels
    anywhere = AutoModelForSequenceClassification.from_pretrained(tmp_path, trust_remote_code=True)  # no tinyfw
    torch.testing.assert_close(_logits(anywhere), ref, rtol=0, atol=1e-6)
    with pytest.raises(Exception, match="mismatch|size"):  # BERT's own class refuses rather than reinitialise
        AutoModelForSequenceClassification.from_pretrained(tmp_path)

    # FFN only, the same width everywhere: a plain BERT checkpoint
    ffn_only = st.prune(_model(), {}, {0: list(range(16)), 1: list(range(16, 32))})
    assert type(ffn_only).__name__ == "BertForSequenceClassification" and ffn_only.config.intermediate_size == 16
    ffn_only.save_pretrained(tmp_path / "plain")
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "plain")
    torch.testing.assert_close(_logits(plain), _logits(ffn_only), rtol=0, atol=0)


def test_pruning_nothing_keeps_the_logits():
    from tinyfw.prune import importance as imp
    from tinyfw.prune import structure as st

    model = _model()
    ref = _logits(model)
    h, f = imp.weight_scores(model)
    heads = imp.heads_to_remove(h, st.heads_per_layer(model), per_layer=HEADS)
    neurons = imp.neurons_to_keep(f, FFN)
    assert heads == {} and neurons == {}
    same = st.prune(model, heads, neurons)
    assert type(same).__name__ == "BertForSequenceClassification" and not hasattr(same.config, "pruned_heads")
    assert torch.equal(_logits(same), ref)


def test_importance_scores_find_a_dead_head_and_rank_across_layers():
    from tinyfw.prune import importance as imp

    model = _model()
    with torch.no_grad():  # head 2 of layer 1 writes nothing: no gradient, least weight
        model.bert.encoder.layer[1].attention.output.dense.weight[:, 2 * D:3 * D] = 0
        model.bert.encoder.layer[1].attention.self.value.weight[2 * D:3 * D] = 0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = dict(_inputs(), labels=torch.tensor([0, 1, 1]))
    h, f = imp.gradient_scores(model, [batch, batch])
    assert h.shape == (2, HEADS) and [len(x) for x in f] == [FFN, FFN] and (h >= 0).all()
    assert float(h[1, 2]) == 0.0 and (h[1, [0, 1, 3]] > 0).all()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())
    assert imp.heads_to_remove(h, [HEADS, HEADS], per_layer=3)[1] == [2]
    hw, _ = imp.weight_scores(model)
    assert int(hw[1].argmin()) == 2
    uneven = imp.heads_to_remove(h, [HEADS, HEADS], total=3)  # 5 of 8 removed, >= 1 kept per layer
    assert sum(len(v) for v in uneven.values()) == 5 and all(len(v) <= HEADS - 1 for v in uneven.values())
    assert 2 in uneven.get(1, [])
    with pytest.raises(ValueError, match="prune.heads=1"):
        imp.heads_to_remove(h, [HEADS, HEADS], total=1)


def test_onnx_and_int8_of_uneven_heads_match_pytorch(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from conftest import max_abs_diff
    from tinyfw.export.onnx import OrtClassifier, export_classifier
    from tinyfw.export.quantize import quantize_int8
    from tinyfw.prune import structure as st

    pruned = st.prune(_model(), {0: [0, 1, 2], 1: [3]}, {0: list(range(20)), 1: list(range(50))})
    pruned.set_attn_implementation("sdpa")
    path = export_classifier(pruned, tmp_path / "onnx" / "model.onnx")
    pruned.config.save_pretrained(path.parent)
    ort_model = OrtClassifier.from_dir(path.parent)
    batches = [_inputs(1, 5), _inputs(3, 17)]
    assert max_abs_diff(pruned, ort_model, batches) < 1e-4  # export.atol's default
    int8 = quantize_int8(path, tmp_path / "int8" / "model.onnx")
    pruned.config.save_pretrained(int8.parent)
    got = OrtClassifier.from_dir(int8.parent)(**_inputs()).logits.numpy()
    ref = _logits(pruned).numpy()
    assert np.abs(got - ref).max() < 0.05 * (np.abs(ref).max() + 1)


def _saved(tmp_path: Path) -> Path:
    """A pruned classifier with the tiny tokenizer and named labels, saved."""
    from transformers import BertTokenizerFast

    from tinyfw.models.load import tiny_vocab
    from tinyfw.prune import structure as st

    out = tmp_path / "pruned"
    out.mkdir()
    (out / "vocab.txt").write_text("\n".join(tiny_vocab()) + "\n")
    tok = BertTokenizerFast(vocab=str(out / "vocab.txt"), do_lower_case=True)
    (out / "vocab.txt").unlink()
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=H, num_hidden_layers=2, num_attention_heads=HEADS,
                     intermediate_size=FFN, num_labels=2, pad_token_id=0, id2label={0: "negative", 1: "positive"},
                     label2id={"negative": 0, "positive": 1})
    model = st.prune(BertForSequenceClassification(cfg).eval(), {1: [0, 2]}, {})
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_serve_labels_texts_from_a_pytorch_and_an_onnx_dir(tmp_path):
    from tinyfw.serve import Predictor, read_texts

    d = _saved(tmp_path)
    texts = ["a fine film", "the worst movie of the year", "it is good"]
    pred = Predictor(d)
    rows = pred.predict(texts, batch_size=2)
    assert [r["label"] for r in rows] == [("negative", "positive")[int(z.argmax())] for z in pred.logits(texts)]
    assert all(abs(sum(r["probs"].values()) - 1) < 1e-5 and r["score"] == max(r["probs"].values()) for r in rows)
    assert list(read_texts(["a\tb\n", "\n", "c\n"])) == [("a", "b"), "c"]

    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n")
    cmd = [sys.executable, "-m", "tinyfw.serve", str(d), str(tmp_path / "texts.txt"), "--json", "--batch-size", "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()
    assert [json.loads(x)["label"] for x in out] == [r["label"] for r in rows]
    bad = subprocess.run([sys.executable, "-m", "tinyfw.serve", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 2 and "neither a model directory" in bad.stderr
    missing = subprocess.run([sys.executable, "-m", "tinyfw.serve", str(d), str(tmp_path / "nope.txt")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        f"error: cannot read {tmp_path / 'nope.txt'}: No such file or directory"]

    if pytest.importorskip("onnxruntime") and pytest.importorskip("onnxscript"):
        from tinyfw.export.onnx import export_classifier
        from tinyfw.prune.structure import load_pruned

        model = load_pruned(str(d))
        model.set_attn_implementation("sdpa")
        o = tmp_path / "onnx"
        export_classifier(model, o / "model.onnx")
        model.config.save_pretrained(o)
        pred.tok.save_pretrained(o)
        p = subprocess.run([sys.executable, "-m", "tinyfw.serve", str(o)], input="\n".join(texts) + "\n",
                           capture_output=True, text=True, check=True).stdout.splitlines()
        assert [x.split("\t")[0] for x in p] == [r["label"] for r in rows]


@pytest.mark.slow
def test_stage_prune_recovers_and_exports(tmp_path, shared_home):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    from conftest import run_tinyfw
    from tinyfw.models.load import tiny_vocab
    from tinyfw.prune.structure import load_pruned

    src = tmp_path / "task" / "student"  # a 2-layer student with the smoke teacher's tiny vocabulary
    src.mkdir(parents=True)
    (src / "vocab.txt").write_text("\n".join(tiny_vocab()) + "\n")
    BertTokenizerFast(vocab=str(src / "vocab.txt"), do_lower_case=True).save_pretrained(src)
    (src / "vocab.txt").unlink()
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(vocab_size=len(tiny_vocab()), hidden_size=H, num_hidden_layers=2,
                                             num_attention_heads=HEADS, intermediate_size=FFN, num_labels=2,
                                             pad_token_id=0)).save_pretrained(src)
    rec = run_tinyfw("stage=prune", "experiment=smoke", f"prune.student={src}", "prune.heads=5", "prune.ffn_size=40",
                     "prune.recover_steps=2", run_dir=tmp_path / "run", home=shared_home)
    m = rec["metrics"]
    assert m["structure"]["after"]["ffn"] == [40, 40] and sum(m["structure"]["after"]["heads"]) == 5
    assert m["params"]["before"]["total"] - m["params"]["after"]["total"] == 3 * (3 * (H * D + D) + H * D) + 2 * 24 * (2 * H + 1)
    assert set(m["phases"]) == {"original", "pruned", "recovered"} and m["recovery"]["steps"] == 2
    assert 0 <= m["removed"]["head_overlap_gradient_vs_weight"] <= 1
    model = load_pruned(rec["outputs"]["student"])
    assert [layer.attention.self.num_attention_heads for layer in model.bert.encoder.layer] == m["structure"]["after"]["heads"]
    assert list(m["export"]) == ["fp32", "pruned", "onnx", "onnx_int8"]
    assert m["export"]["onnx"]["size_bytes"] > m["export"]["onnx_int8"]["size_bytes"]
    table = (tmp_path / "run" / "prune.md").read_text()
    assert "| student (recovered) |" in table and "ONNX Runtime int8" in table
    exported = json.loads((tmp_path / "run" / "exported" / "export" / "export.json").read_text())
    assert exported["checks"]["onnx_max_abs_diff"] < 1e-4

    bad = run_tinyfw("stage=prune", "experiment=smoke", f"prune.student={src}", "prune.heads=2", "prune.heads_per_layer=1",
                     run_dir=tmp_path / "bad", home=shared_home, expect_ok=False)
    assert "not both" in bad["error"]

    # a student that does not read the teacher's tokenizer (e.g. a vocabulary-pruned export) is
    # refused before the scoring when it is to be recovered
    other = tmp_path / "other" / "student"
    other.mkdir(parents=True)
    (other / "vocab.txt").write_text("\n".join(tiny_vocab()[:-7]) + "\n")
    BertTokenizerFast(vocab=str(other / "vocab.txt"), do_lower_case=True).save_pretrained(other)
    (other / "vocab.txt").unlink()
    BertForSequenceClassification(BertConfig(vocab_size=len(tiny_vocab()) - 7, hidden_size=H, num_hidden_layers=2,
                                             num_attention_heads=HEADS, intermediate_size=FFN, num_labels=2,
                                             pad_token_id=0)).save_pretrained(other)
    bad = run_tinyfw("stage=prune", "experiment=smoke", f"prune.student={other}", "prune.heads=5",
                     "prune.recover_steps=2", run_dir=tmp_path / "bad_tok", home=shared_home, expect_ok=False)
    assert "prune.student" in bad["error"] and "prune.recover_steps=0" in bad["error"]
    assert not (tmp_path / "bad_tok" / "student").exists()


def test_prune_passes_the_users_overrides_to_its_child_runs():
    """The distilling stage=task run gets the same overrides (gd/td/augment/ablation included),
    the stage=export run all but prune.* and bench.*; neither gets stage= or hydra.*."""
    from tinyfw.runner import passthrough
    from tinyfw.stages.prune import DISTIL_SKIP, EXPORT_SKIP

    given = ["stage=prune", "task=mr", "gd=off", "augment=off", "ablation=wo_da", "prune.heads=24",
             "export.int8=false", "bench.repeats=3", "hydra.run.dir=x"]
    assert passthrough(given, DISTIL_SKIP) == ["task=mr", "gd=off", "augment=off", "ablation=wo_da", "prune.heads=24"]
    assert passthrough(given, EXPORT_SKIP) == ["task=mr", "gd=off", "augment=off", "ablation=wo_da", "export.int8=false"]


def _prune_cfg(*overrides: str):
    from hydra import compose, initialize_config_dir

    import tinyfw.__main__ as entry

    with initialize_config_dir(config_dir=str(entry.CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=["stage=prune", "experiment=smoke", *overrides])


def test_impossible_or_empty_prune_targets_are_refused_before_any_work(tmp_path):
    from tinyfw.prune.structure import check_targets
    from tinyfw.stages.prune import _check, planned_structure

    heads, ffn = [4, 2], [64, 64]  # layer 1 already lost two heads
    check_targets(heads, ffn, heads_per_layer=3)  # layer 0 loses one
    check_targets(heads, ffn, total=2)
    check_targets(heads, ffn, ffn_size=63)
    for kw, msg in ((dict(heads_per_layer=5), "prune.heads_per_layer=5 but .* keep at most 4"),
                    (dict(total=7), r"prune.heads=7 must be between 2 \(one per layer\) and 6"),
                    (dict(total=1), "prune.heads=1 must be between 2"),
                    (dict(ffn_size=65), "prune.ffn_size=65 but .* keep at most 64"),
                    (dict(heads_per_layer=4, ffn_size=64), "remove nothing"),
                    (dict(total=6), "remove nothing")):
        with pytest.raises(ValueError, match=msg):
            check_targets(heads, ffn, **kw)

    for overrides, msg in ((["prune.heads=0"], "nothing to prune"),
                           (["prune.heads=4", "prune.batch_size=0"], "prune.batch_size=0"),
                           (["prune.heads=4", "prune.max_examples=0"], "prune.max_examples=0"),
                           (["prune.heads=4", "prune.max_examples=-2"], "prune.max_examples=-2")):
        with pytest.raises(ValueError, match=msg):
            _check(_prune_cfg(*overrides))
    with pytest.raises(Exception, match="prune.data=test") as bad:  # the enum (choices.PruneData), at composition
        _prune_cfg("prune.heads=4", "prune.data=test")
    assert "expected one of [dev, train]" in str(bad.value.__cause__)
    _check(_prune_cfg("prune.heads=4", "prune.max_examples=-1"))

    # the student to distil first: its shape from the config; a given student: its own config
    cfg = _prune_cfg("prune.heads=4")
    s = cfg.student.shape
    assert planned_structure(cfg) == ([s.num_heads] * s.num_layers, [s.intermediate_size] * s.num_layers)
    d = _saved(tmp_path)
    assert planned_structure(_prune_cfg(f"prune.student={d}")) == ([4, 2], [FFN, FFN])
    with pytest.raises(FileNotFoundError, match=r"prune.student=.* \(no config.json\)"):
        planned_structure(_prune_cfg(f"prune.student={tmp_path}"))


def _token_student(tmp_path: Path) -> Path:
    from transformers import BertConfig, BertForTokenClassification

    out = tmp_path / "token_student"
    BertForTokenClassification(BertConfig(vocab_size=40, hidden_size=H, num_hidden_layers=2, num_attention_heads=HEADS,
                                          intermediate_size=FFN, num_labels=3, pad_token_id=0)).save_pretrained(out)
    return out


def test_token_tasks_and_token_students_are_refused_by_prune_and_serve(tmp_path):
    from tinyfw.serve import Predictor
    from tinyfw.stages.prune import _check, planned_structure

    for task in (["task=smoke_token"], ["task=custom", "task.type=token"]):
        with pytest.raises(ValueError, match="token task .*not supported yet"):
            _check(_prune_cfg("prune.heads=4", *task))
    d = _token_student(tmp_path)
    with pytest.raises(ValueError, match=r"prune.student=.* is a token classifier .*not supported yet"):
        planned_structure(_prune_cfg("prune.heads=4", f"prune.student={d}"))
    with pytest.raises(ValueError, match="token classifier .*not supported by tinyfw.serve yet"):
        Predictor(d)
    r = subprocess.run([sys.executable, "-m", "tinyfw.serve", str(d)], input="a text\n", capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "not supported" in r.stderr


def test_prune_recovery_runs_at_a_resolved_precision(tmp_path, monkeypatch):
    """precision=auto reaches the recovery's fit as fp32 or bf16, never as 'auto'."""
    from types import SimpleNamespace

    from tinyfw.artefacts import task_distill
    from tinyfw.stages import prune
    from tinyfw.td import phases as td

    seen = {}
    monkeypatch.setattr(task_distill, "fingerprint", lambda cfg, home: {})
    monkeypatch.setattr(td, "step2", lambda cfg, home, run_dir, s, student, phase, common, out: seen.update(common))
    cfg = _prune_cfg("prune.heads=4", "prune.recover_steps=2", "task_distill.precision=auto")
    rcfg = prune.OmegaConf.create(prune.OmegaConf.to_container(cfg, resolve=True))
    ctx = SimpleNamespace(home=tmp_path, run_dir=tmp_path, tracker=None)
    prune._recover(cfg, ctx, rcfg, SimpleNamespace(teacher_dir=tmp_path), torch.nn.Linear(1, 1), tmp_path)
    assert seen["precision"] in ("fp32", "bf16")
