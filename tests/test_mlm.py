"""stage=mlm: an encoder becomes a tied masked LM that learns on the corpus, cached for the augmenter."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_tinyfw


@pytest.mark.slow
def test_stage_mlm_smoke_lowers_loss_and_caches(tmp_path, shared_home):
    rec = run_tinyfw("stage=mlm", "experiment=smoke", run_dir=tmp_path / "run", home=shared_home)
    m = rec["metrics"]
    assert m["steps"] == 30
    assert m["train_loss_final"] < m["train_loss_initial"] - 0.3
    assert m["heldout_after"]["loss"] < m["heldout_before"]["loss"]
    assert m["heldout_before"]["masked_words"] == m["heldout_after"]["masked_words"] > 0
    assert any(k.startswith("cls.predictions.transform") for k in m["new_head_keys"])  # BertModel base: new head
    cached = Path(rec["outputs"]["cache"])
    assert (cached / "config.json").exists() and (cached.parent / "mlm_metrics.json").exists()

    from augment import load_masked_lm

    model, tok = load_masked_lm(str(cached))  # a complete masked LM now (no fresh head weights)
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()

    # augmenter.mlm=mlm resolves to the same entry without training again
    from omegaconf import OmegaConf

    from tinyfw.artefacts.mlm import ensure_mlm

    cfg = OmegaConf.create(rec["config"])
    assert ensure_mlm(cfg, shared_home) == cached


def test_masked_positions_loss_equals_full_forward_loss_and_gradients():
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from tinyfw.models.mlm import MaskedPositionsLoss

    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=32, hidden_dropout_prob=0.0,
                                       attention_probs_dropout_prob=0.0)).train()
    ids = torch.randint(5, 50, (3, 9))
    att = torch.ones_like(ids)
    att[2, 6:] = 0
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[1, 4], labels[1, 7], labels[2, 1] = 7, 9, 11, 13
    full = model(input_ids=ids, attention_mask=att, labels=labels).loss
    g_full = torch.autograd.grad(full, model.bert.encoder.layer[0].attention.self.query.weight)[0]
    wrapped = MaskedPositionsLoss(model)
    part = wrapped(input_ids=ids, attention_mask=att, labels=labels)
    g_part = torch.autograd.grad(part, model.bert.encoder.layer[0].attention.self.query.weight)[0]
    assert torch.allclose(full, part, atol=1e-6)
    assert torch.allclose(g_full, g_part, atol=1e-6)
    # no masked token in the batch: a zero loss, still differentiable
    zero = wrapped(input_ids=ids, attention_mask=att, labels=torch.full_like(ids, -100))
    assert zero.item() == 0.0 and zero.requires_grad
