"""capture(): pre-softmax scores, hidden states and embeddings, without changing the model."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel

from tinyfw.models.capture import IMPL, capture


def _config(**kw) -> BertConfig:
    base = dict(
        vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
        max_position_embeddings=32, attn_implementation="eager",
    )
    base.update(kw)
    return BertConfig(**base)


def _batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 40, (3, 7), generator=g)
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2, [1] * 3 + [0] * 4])
    ids = ids.masked_fill(mask == 0, 0)
    types = torch.zeros_like(ids)
    types[0, 4:] = 1
    return ids, mask, types


def _model(cls=BertModel, seed=0, **kw):
    torch.manual_seed(seed)
    return cls(_config(**kw)).eval()


def test_scores_softmax_equals_models_own_attention_probs():
    model = _model()
    ids, mask, types = _batch()
    with torch.inference_mode():
        ref = model(ids, attention_mask=mask, token_type_ids=types, output_attentions=True)  # eager probs
        feats = capture(model, ids, mask, types)
    assert len(feats.scores) == 2 and len(ref.attentions) == 2
    valid = mask.bool()[:, None, None, :].expand(-1, 4, 7, -1)
    for scores, probs in zip(feats.scores, ref.attentions):
        assert scores.shape == (3, 4, 7, 7)
        # the scores carry no mask: finite everywhere, also in padded columns
        assert torch.isfinite(scores).all()
        mine = scores.masked_fill(~mask.bool()[:, None, None, :], float("-inf")).softmax(-1)
        torch.testing.assert_close(mine[valid], probs[valid], rtol=1e-6, atol=1e-7)
        # masked columns get (numerically) zero probability in the model's own attention
        assert probs[~valid].abs().max() < 1e-30


def test_scores_equal_qk_over_sqrt_dk():
    model = _model()
    ids, mask, types = _batch()
    with torch.no_grad():
        feats = capture(model, ids, mask, types)
        layer = model.encoder.layer[1].attention.self
        h = feats.hidden[0]
        q = layer.query(h).view(3, 7, 4, 4).transpose(1, 2)
        k = layer.key(h).view(3, 7, 4, 4).transpose(1, 2)
        expected = q @ k.transpose(-1, -2) / 4**0.5
    torch.testing.assert_close(feats.scores[1], expected)


def test_hidden_states_and_embeddings_match_model_outputs():
    model = _model()
    ids, mask, types = _batch()
    with torch.inference_mode():
        out = model(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        feats = capture(model, ids, mask, types)
        emb = model.embeddings(input_ids=ids, token_type_ids=types)
    assert torch.equal(feats.embeddings, out.hidden_states[0])
    assert torch.equal(feats.embeddings, emb)
    assert len(feats.hidden) == 2
    for a, b in zip(feats.hidden, out.hidden_states[1:]):
        assert torch.equal(a, b)
    assert torch.equal(feats.hidden[-1], out.last_hidden_state)
    assert torch.equal(feats.mask, mask)
    assert feats.logits is None


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_capture_does_not_change_outputs(impl):
    ids, mask, types = _batch()
    plain = _model(attn_implementation=impl)
    captured = _model(attn_implementation="eager")  # same seed: same weights
    with torch.inference_mode():
        want = plain(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        before = captured(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        feats = capture(captured, ids, mask, types)
        after = captured(ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    assert captured.config._attn_implementation == IMPL
    if impl == "eager":  # same ops in the same order: bit-identical
        assert torch.equal(feats.hidden[-1], want)
    else:
        torch.testing.assert_close(feats.hidden[-1], want, rtol=1e-5, atol=1e-5)
    assert torch.equal(before, after)
    assert torch.equal(feats.hidden[-1], before)


def test_padding_is_applied_not_ignored():
    """Real tokens' states don't depend on what sits in padded positions."""
    model = _model()
    ids, mask, types = _batch()
    other = ids.clone()
    other[mask == 0] = 17
    with torch.inference_mode():
        a = capture(model, ids, mask, types)
        b = capture(model, other, mask, types)
    real = mask.bool()
    assert torch.allclose(a.hidden[-1][real], b.hidden[-1][real], atol=1e-6)
    assert not torch.allclose(a.hidden[-1][~real], b.hidden[-1][~real])


def test_student_side_has_gradients_and_teacher_side_inference_tensors_mix():
    teacher = _model(seed=1)
    student = _model(seed=2).train()
    ids, mask, types = _batch()
    with torch.inference_mode():
        t = capture(teacher, ids, mask, types)
    s = capture(student, ids, mask, types)
    assert s.scores[0].requires_grad and s.hidden[-1].requires_grad
    assert not t.scores[0].requires_grad
    loss = sum(((a - b) ** 2).mean() for a, b in zip(s.scores, t.scores))
    loss.backward()
    assert student.encoder.layer[0].attention.self.query.weight.grad is not None


def test_need_scores_false_and_mask_defaults():
    model = _model()
    ids, _, _ = _batch()
    with torch.inference_mode():
        feats = capture(model, ids, None, need_scores=False)
    assert feats.scores == []
    assert torch.equal(feats.mask, torch.ones_like(ids))
    assert len(feats.hidden) == 2


def test_head_models_classification_and_mlm():
    ids, mask, types = _batch()
    cls = _model(BertForSequenceClassification, num_labels=3)
    mlm = _model(BertForMaskedLM)
    with torch.inference_mode():
        want = cls(ids, attention_mask=mask, token_type_ids=types).logits
        f = capture(cls, ids, mask, types)
        g = capture(mlm, ids, mask, types)
    assert torch.equal(f.logits, want) and f.logits.shape == (3, 3)
    assert len(f.scores) == 2 and len(f.hidden) == 2
    assert g.logits is None and len(g.scores) == 2


def test_bf16_autocast():
    model = _model()
    ids, mask, types = _batch()
    with torch.inference_mode():
        ref = capture(model, ids, mask, types)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = capture(model, ids, mask, types)
    assert low.scores[0].dtype == torch.bfloat16
    torch.testing.assert_close(low.scores[0].float(), ref.scores[0], rtol=0.05, atol=0.05)
    torch.testing.assert_close(low.hidden[-1].float(), ref.hidden[-1], rtol=0.1, atol=0.1)


def test_works_through_a_wrapper():
    class Wrapper(torch.nn.Module):  # DDP / Accelerate style: the HF model under .module
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *a, **kw):
            return self.module(*a, **kw)

    model = _model()
    ids, mask, types = _batch()
    with torch.inference_mode():
        direct = capture(model, ids, mask, types)
        wrapped = capture(Wrapper(model), ids, mask, types)
    assert torch.equal(direct.scores[1], wrapped.scores[1])


def test_gradient_checkpointing_keeps_score_gradients():
    ids, mask, types = _batch()
    grads = []
    for ckpt in (False, True):
        model = _model(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).train()
        if ckpt:
            (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()
        feats = capture(model, ids, mask, types)
        assert feats.scores[0].requires_grad
        sum(s.pow(2).mean() for s in feats.scores).backward()
        grads.append(model.encoder.layer[0].attention.self.query.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_non_transformers_module_is_rejected():
    with pytest.raises(TypeError, match="PreTrainedModel"):
        capture(torch.nn.Linear(2, 2), torch.zeros(1, 2, dtype=torch.long), None)
