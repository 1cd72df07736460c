"""Each distillation loss against a hand computation; padding invariance; the Distiller."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForSequenceClassification, BertModel

from tinyfw.distill.losses import (
    attention_loss,
    embedding_loss,
    hidden_loss,
    prediction_loss,
    regression_loss,
    soft_loss,
)
from tinyfw.distill.objective import Distiller
from tinyfw.models.capture import Features, capture
from tinyfw.models.student import build_student, layer_mapping


def test_soft_loss_is_the_prediction_loss_or_mse_for_one_output():
    s, t = torch.tensor([[0.2, -1.0], [1.5, 0.3]]), torch.tensor([[1.0, 0.0], [-0.5, 2.0]])
    assert soft_loss(s, t, 2.0).item() == pytest.approx(prediction_loss(s, t, 2.0).item())
    s1, t1 = torch.tensor([[0.5], [2.0]]), torch.tensor([[1.0], [1.0]])
    assert soft_loss(s1, t1, 2.0).item() == pytest.approx((0.25 + 1.0) / 2)  # temperature unused


# ---- token-level MSE ---------------------------------------------------------------------------


def test_embedding_loss_hand_computed_over_real_tokens():
    s = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]])  # [1,3,2], last token padding
    t = torch.tensor([[[1.0, 0.0], [0.0, 4.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0]])
    # real tokens: squared errors 0,4 | 9,0 -> 13 over 2 tokens x 2 dims
    assert embedding_loss(s, t, None, mask).item() == pytest.approx(13 / 4)
    # reference: plain mean including the padded token (81 + 81)
    assert embedding_loss(s, t, None, mask, mode="reference").item() == pytest.approx((13 + 162) / 6)


def test_hidden_loss_applies_projection():
    proj = torch.nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        proj.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    s = torch.tensor([[[1.0, 2.0]]])  # -> [1, 2, 3]
    t = torch.tensor([[[0.0, 2.0, 5.0]]])
    assert hidden_loss(s, t, proj, torch.ones(1, 1)).item() == pytest.approx((1 + 0 + 4) / 3)
    with pytest.raises(ValueError, match="shapes differ"):
        hidden_loss(s, t, None, torch.ones(1, 1))


def test_token_losses_invariant_to_extra_padding():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 4, 3, generator=g), torch.randn(2, 4, 3, generator=g)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    pad = lambda x: torch.cat([x, torch.randn(2, 3, 3, generator=g)], dim=1)  # noqa: E731
    mask_long = torch.cat([mask, torch.zeros(2, 3, dtype=mask.dtype)], dim=1)
    a = hidden_loss(s, t, None, mask)
    b = hidden_loss(pad(s), pad(t), None, mask_long)
    torch.testing.assert_close(a, b)
    assert hidden_loss(s, t, None, mask, mode="reference") != hidden_loss(pad(s), pad(t), None, mask_long, mode="reference")


# ---- attention -----------------------------------------------------------------------------------


def _scores():
    """A batch of 2, 2 heads, 3 tokens; example 2 has one padded token."""
    g = torch.Generator().manual_seed(1)
    s = torch.randn(2, 2, 3, 3, generator=g)
    t = torch.randn(2, 2, 3, 3, generator=g)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    return s, t, mask


def test_attention_masked_hand_computed():
    s, t, mask = _scores()
    total, cells = 0.0, 0
    for b in range(2):
        n = int(mask[b].sum())
        for h in range(2):
            for i in range(n):
                for j in range(n):
                    total += float(s[b, h, i, j] - t[b, h, i, j]) ** 2
                    cells += 1
    assert cells == 2 * 9 + 2 * 4
    assert attention_loss(s, t, mask).item() == pytest.approx(total / cells, rel=1e-6)


def test_attention_reference_hand_computed():
    s, t, mask = _scores()
    s2, t2 = s.clone(), t.clone()
    s2[1, :, :, 2] = 0.0  # padded key column of example 2 -> -10000 -> zeroed
    t2[1, :, :, 2] = 0.0
    # padded query row 2 of example 2 stays; mean over all 2*2*3*3 cells
    want = ((s2 - t2) ** 2).sum().item() / 36
    assert attention_loss(s, t, mask, mode="reference").item() == pytest.approx(want, rel=1e-6)
    # the reference also zeroes genuine scores <= -100 (its quirk, reproduced)
    s3 = s.clone()
    s3[0, 0, 0, 0] = -500.0
    t3 = t.clone()
    t3[0, 0, 0, 0] = 0.0
    s2[0, 0, 0, 0], t2[0, 0, 0, 0] = 0.0, 0.0
    assert attention_loss(s3, t3, mask, mode="reference").item() == pytest.approx(
        ((s2 - t2) ** 2).sum().item() / 36, rel=1e-6
    )


def _pad_scores(x: torch.Tensor, extra: int, value_gen: torch.Generator) -> torch.Tensor:
    b, h, n, _ = x.shape
    out = torch.randn(b, h, n + extra, n + extra, generator=value_gen) * 3
    out[:, :, :n, :n] = x
    return out


def test_attention_masked_invariant_to_extra_padding_reference_is_not():
    s, t, mask = _scores()
    g = torch.Generator().manual_seed(7)
    s_long, t_long = _pad_scores(s, 4, g), _pad_scores(t, 4, g)
    mask_long = torch.cat([mask, torch.zeros(2, 4, dtype=mask.dtype)], dim=1)
    short, long = attention_loss(s, t, mask), attention_loss(s_long, t_long, mask_long)
    torch.testing.assert_close(short, long)
    ref_short = attention_loss(s, t, mask, mode="reference")
    ref_long = attention_loss(s_long, t_long, mask_long, mode="reference")
    # the reference loss depends on how far the same batch is padded
    assert abs(ref_short.item() - ref_long.item()) > 0.1 * ref_short.item()


def test_attention_errors():
    s, t, mask = _scores()
    with pytest.raises(ValueError, match="equal head counts.*distill.weights.attn=0"):
        attention_loss(s[:, :1], t, mask)
    with pytest.raises(ValueError, match="unknown loss mode"):
        attention_loss(s, t, mask, mode="nope")


# ---- prediction --------------------------------------------------------------------------------


def test_prediction_loss_hand_computed():
    s = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    t = torch.tensor([[2.0, 0.0, 1.0], [1.0, 1.0, -1.0]])

    def soft_ce(si, ti, temp):
        p = [math.exp(v / temp) for v in ti]
        p = [v / sum(p) for v in p]
        z = math.log(sum(math.exp(v / temp) for v in si))
        return -sum(pi * (v / temp - z) for pi, v in zip(p, si))

    for temp in (1.0, 2.0):
        want = (soft_ce(s[0].tolist(), t[0].tolist(), temp) + soft_ce(s[1].tolist(), t[1].tolist(), temp)) / 2
        assert prediction_loss(s, t, temp).item() == pytest.approx(want, rel=1e-6)
    # minimised (to the teacher's entropy) when the student matches the teacher
    ent = prediction_loss(t, t)
    assert ent < prediction_loss(s, t)
    torch.testing.assert_close(ent, -(F.softmax(t, -1) * F.log_softmax(t, -1)).sum(-1).mean())


def test_regression_loss_to_teacher_output():
    assert regression_loss(torch.tensor([[1.0], [3.0]]), torch.tensor([0.0, 1.0])).item() == pytest.approx(2.5)


# ---- Distiller ---------------------------------------------------------------------------------


def _feats(seed, hidden, layers, heads=2, b=2, t=5, logits=None) -> Features:
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    mask = torch.tensor([[1] * t, [1] * (t - 2) + [0] * 2])
    return Features(
        embeddings=r(b, t, hidden),
        hidden=[r(b, t, hidden) for _ in range(layers)],
        scores=[r(b, heads, t, t) for _ in range(layers)],
        mask=mask,
        logits=None if logits is None else r(b, logits),
    )


def test_distiller_hand_computed_and_mapping():
    s, t = _feats(0, 4, 2), _feats(1, 6, 4)
    d = Distiller(4, 6, [2, 4], dict(embd=1.0, attn=2.0, hidn=3.0))
    total, parts = d(s, t)
    assert set(parts) == {"embd", "attn", "hidn", "total"}
    e = embedding_loss(s.embeddings, t.embeddings, d.proj_e, s.mask)
    # default layer_reduction=sum: the reference's L = embd + sum_m attn_m + sum_m hidn_m
    a = attention_loss(s.scores[0], t.scores[1], s.mask) + attention_loss(s.scores[1], t.scores[3], s.mask)
    h = hidden_loss(s.hidden[0], t.hidden[1], d.proj_h, s.mask) + hidden_loss(s.hidden[1], t.hidden[3], d.proj_h, s.mask)
    torch.testing.assert_close(parts["embd"], e)
    torch.testing.assert_close(parts["attn"], a)
    torch.testing.assert_close(parts["hidn"], h)
    torch.testing.assert_close(total, e + 2 * a + 3 * h)
    assert parts["total"] is total
    assert d.proj_e is not d.proj_h and d.proj is None
    assert set(d.state_dict()) == {"proj_e.weight", "proj_e.bias", "proj_h.weight", "proj_h.bias"}


def _constant_feats(emb: float, layer_values, b=2, t=3, hidden=4, heads=2):
    """Features whose every tensor is a constant: embeddings ``emb``, layer i hidden states and
    attention scores ``layer_values[i]``; all tokens real."""
    full = lambda v, *shape: torch.full(shape, float(v))  # noqa: E731
    return Features(embeddings=full(emb, b, t, hidden), hidden=[full(v, b, t, hidden) for v in layer_values],
                    scores=[full(v, b, heads, t, t) for v in layer_values], mask=torch.ones(b, t, dtype=torch.long))


@pytest.mark.parametrize("reduction, want", [("sum", 11.0), ("mean", 6.0)])
def test_distiller_layer_reduction_hand_computed(reduction, want):
    # student: zeros everywhere; teacher: embeddings 1, layer n = n. Identity projections, so
    # embd MSE = 1, layer pair (m, n): attn MSE = hidn MSE = n^2. Mapping [1, 2]:
    # sum  = 1 + (1 + 4) + (1 + 4) = 11 (each layer weighs as much as the embedding term);
    # mean = 1 + 2.5 + 2.5 = 6 (the embedding term weighs M = 2 layers).
    s, t = _constant_feats(0.0, [0.0, 0.0]), _constant_feats(1.0, [1.0, 2.0])
    d = Distiller(4, 4, [1, 2], dict(embd=1, attn=1, hidn=1), layer_reduction=reduction)
    with torch.no_grad():
        for proj in (d.proj_e, d.proj_h):
            proj.weight.copy_(torch.eye(4))
            proj.bias.zero_()
    total, parts = d(s, t)
    total, parts = total.detach(), {k: v.detach() for k, v in parts.items()}
    assert float(parts["embd"]) == pytest.approx(1.0)
    assert float(parts["attn"]) == pytest.approx(5.0 if reduction == "sum" else 2.5)
    assert float(parts["hidn"]) == pytest.approx(5.0 if reduction == "sum" else 2.5)
    assert float(total) == pytest.approx(want)
    with pytest.raises(ValueError, match="layer_reduction"):
        Distiller(4, 4, [1, 2], dict(attn=1), layer_reduction="max")


def test_distiller_zero_weights_omit_losses_and_projections():
    s, t = _feats(0, 4, 2, logits=3), _feats(1, 6, 4, logits=3)
    d = Distiller(4, 6, [2, 4], dict(embd=0.0, attn=1.0, hidn=0.0, pred=0.0))
    total, parts = d(s, t)
    assert set(parts) == {"attn", "total"}
    assert list(d.parameters()) == []
    torch.testing.assert_close(total, parts["attn"])
    # attention off: student scores are not even needed
    s.scores, t.scores = [], []
    d = Distiller(4, 6, [2, 4], dict(embd=1.0, attn=0.0, hidn=1.0, pred=0.0))
    total, parts = d(s, t)
    assert set(parts) == {"embd", "hidn", "total"}  # logits present: the prediction loss is TD step 2's
    with pytest.raises(ValueError, match="no distillation loss is active"):
        Distiller(4, 6, [2, 4], dict(embd=0, attn=0, hidn=0, pred=0))(_feats(0, 4, 2), _feats(1, 6, 4))
    with pytest.raises(ValueError, match="the prediction loss is TD step 2's"):
        Distiller(4, 6, [2, 4], dict(embd=1, pred=1.0))


def test_distiller_shared_projection():
    s, t = _feats(0, 4, 2), _feats(1, 6, 4)
    d = Distiller(4, 6, [2, 4], dict(embd=1, attn=1, hidn=1), share_projection=True)
    _, parts = d(s, t)
    assert d.projection("embd") is d.projection("hidn") is d.proj
    assert set(d.state_dict()) == {"proj.weight", "proj.bias"}
    torch.testing.assert_close(parts["embd"], embedding_loss(s.embeddings, t.embeddings, d.proj, s.mask))


def test_distiller_reference_mode_and_errors():
    s, t = _feats(0, 4, 2), _feats(1, 6, 4)
    d = Distiller(4, 6, [2, 4], dict(embd=0, attn=1, hidn=0, pred=0), attn_mode="reference")
    _, parts = d(s, t)
    want = attention_loss(s.scores[0], t.scores[1], s.mask, "reference") + attention_loss(s.scores[1], t.scores[3], s.mask, "reference")
    torch.testing.assert_close(parts["attn"], want)
    with pytest.raises(ValueError, match="unknown loss weights.*valid keys"):
        Distiller(4, 6, [2, 4], dict(embed=1.0))
    with pytest.raises(ValueError, match="attn_mode"):
        Distiller(4, 6, [2, 4], dict(attn=1.0), attn_mode="x")
    with pytest.raises(ValueError, match="needs teacher layer 4.*provides 2"):
        Distiller(4, 6, [2, 4], dict(hidn=1.0))(s, _feats(1, 6, 2))
    with pytest.raises(ValueError, match="mapping has 3 entries"):
        Distiller(4, 6, [1, 2, 4], dict(hidn=1.0))(s, t)


# ---- end to end: a tiny student learns from a tiny teacher -----------------------------------


def _tiny_teacher(cls=BertModel, **kw):
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16, attn_implementation="eager", **kw,
    )
    return cls(cfg).eval()


def _batch():
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1, 30, (4, 8), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[3, 4:] = 0
    return ids.masked_fill(mask == 0, 0), mask


@pytest.mark.parametrize("autocast", [False, True])
def test_optimizer_steps_lower_the_total_loss(autocast):
    teacher = _tiny_teacher()
    mapping = layer_mapping("uniform", 1, 2)
    shape = SimpleNamespace(num_layers=1, hidden_size=8, intermediate_size=16, num_heads=2, max_position_embeddings=16)
    torch.manual_seed(1)
    student = build_student(shape, teacher, "random", mapping).train()
    distiller = Distiller(8, 16, mapping, dict(embd=1, attn=1, hidn=1, pred=0))
    params = [p for p in list(student.parameters()) + list(distiller.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    ids, mask = _batch()
    with torch.inference_mode():
        t = capture(teacher, ids, mask)
    losses = []
    for _ in range(30):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            s = capture(student, ids, mask)
            total, parts = distiller(s, t)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item())
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.5 * losses[0], losses
    assert distiller.proj_h.weight.grad is not None
    assert student.pooler.dense.weight.grad is None  # frozen, never trained


def test_prediction_distillation_with_classifier_heads():
    teacher = _tiny_teacher(BertForSequenceClassification, num_labels=3)
    torch.manual_seed(2)
    student = BertForSequenceClassification(
        BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                   max_position_embeddings=16, num_labels=3, attn_implementation="eager")
    ).train()
    opt = torch.optim.AdamW(student.parameters(), lr=1e-2)
    ids, mask = _batch()
    with torch.inference_mode():
        t = capture(teacher, ids, mask, need_scores=False)
    first = None
    for _ in range(10):
        total = soft_loss(capture(student, ids, mask, need_scores=False).logits, t.logits.clone())
        opt.zero_grad()
        total.backward()
        opt.step()
        first = first if first is not None else total.item()
    assert total.item() < first


def test_real_models_masked_objective_ignores_extra_padding():
    """Student and teacher run on the same batch padded to 8 and to 14 tokens."""
    teacher = _tiny_teacher()
    shape = SimpleNamespace(num_layers=1, hidden_size=8, intermediate_size=16, num_heads=2, max_position_embeddings=16)
    torch.manual_seed(1)
    student = build_student(shape, teacher, "random", [2]).eval()
    ids, mask = _batch()
    ids_long = torch.cat([ids, torch.zeros(4, 6, dtype=ids.dtype)], dim=1)
    mask_long = torch.cat([mask, torch.zeros(4, 6, dtype=mask.dtype)], dim=1)
    weights = dict(embd=1, attn=1, hidn=1, pred=0)
    results = {}
    for mode in ("masked", "reference"):
        torch.manual_seed(5)
        d = Distiller(8, 16, [2], weights, attn_mode=mode)
        with torch.inference_mode():
            short = d(capture(student, ids, mask), capture(teacher, ids, mask))[1]
            long = d(capture(student, ids_long, mask_long), capture(teacher, ids_long, mask_long))[1]
        results[mode] = (short, long)
    short, long = results["masked"]
    for k in ("embd", "attn", "hidn", "total"):
        torch.testing.assert_close(short[k], long[k], rtol=1e-5, atol=1e-6)
    short, long = results["reference"]
    assert not torch.allclose(short["attn"], long["attn"], rtol=1e-3)
    assert not torch.allclose(short["hidn"], long["hidn"], rtol=1e-3)


def _save_projections(d: Path, distiller: Distiller, share: bool, hidden=(4, 6)) -> None:
    import json

    d.mkdir(parents=True, exist_ok=True)
    torch.save(distiller.state_dict(), d / "projections.pt")
    (d / "projections.json").write_text(json.dumps({"share_projection": share, "student_hidden": hidden[0],
                                                    "teacher_hidden": hidden[1]}))


def test_gd_projections_carry_over_into_td(tmp_path):
    from tinyfw.distill.objective import carry_over_projections

    torch.manual_seed(0)
    gd = Distiller(4, 6, [2, 4], dict(embd=1, attn=1, hidn=1))
    _save_projections(tmp_path / "gd", gd, share=False)
    (tmp_path / "gd" / "student").mkdir()
    td = Distiller(4, 6, [1, 2], dict(embd=1, attn=1, hidn=1))  # another mapping: W_e/W_h still fit
    assert not torch.equal(td.proj_h.weight, gd.proj_h.weight)
    info = carry_over_projections(td, tmp_path / "gd" / "student")  # found beside the student dir
    assert info["loaded"] == ["proj_e", "proj_h"] and info["fresh"] == [] and info["reason"] == ""
    for k, v in gd.state_dict().items():
        assert torch.equal(td.state_dict()[k], v)
    # GD without the embedding loss: W_e stays fresh, and the reason says so
    gd2 = Distiller(4, 6, [2, 4], dict(attn=1, hidn=1))
    _save_projections(tmp_path / "gd2", gd2, share=False)
    info = carry_over_projections(Distiller(4, 6, [1, 2], dict(embd=1, hidn=1)), tmp_path / "gd2")
    assert info["loaded"] == ["proj_h"] and info["fresh"] == ["proj_e"] and "proj_e" in info["reason"]
    # other widths: nothing fits
    wide = Distiller(5, 6, [1, 2], dict(embd=1, hidn=1))
    info = carry_over_projections(wide, tmp_path / "gd")
    assert info["loaded"] == [] and info["fresh"] == ["proj_e", "proj_h"]
    assert "shape" in info["reason"]
    # share_projection differs: refused with the reason
    info = carry_over_projections(Distiller(4, 6, [1, 2], dict(embd=1, hidn=1), share_projection=True), tmp_path / "gd")
    assert info["loaded"] == [] and "share_projection" in info["reason"]
    # no GD (gd=off) or no file
    assert "gd=off" in carry_over_projections(td, None)["reason"]
    assert "no projections.pt" in carry_over_projections(td, tmp_path / "nothing")["reason"]
