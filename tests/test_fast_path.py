"""The fast training step (``fast_path=true``) computes the losses and gradients of the former one
on fixed batches: fp32 within 1e-5 relative, bf16 autocast within 2e-2 relative on each loss and
a gradient cosine > 0.999 (the scale is applied to the bf16 query instead of the bf16 scores:
another rounding). Dropout is on: the fast path draws the same dropout masks."""

from __future__ import annotations


import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel

from tinyfw.distill.objective import Distiller
from tinyfw.distill.steps import feature_loss_fn, prediction_loss_fn

MAPPING = [2, 4]


def _teacher(cls=BertModel):
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                     intermediate_size=48, max_position_embeddings=32, num_labels=2)
    return cls(cfg).eval().requires_grad_(False)


def _student(cls=BertModel):
    torch.manual_seed(1)
    cfg = BertConfig(vocab_size=120, hidden_size=24, num_hidden_layers=2, num_attention_heads=2,  # head dim 12
                     intermediate_size=40, max_position_embeddings=32, num_labels=2)
    return cls(cfg).train()


def _batch(padded: bool):
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 120, (4, 16), generator=g)
    mask = torch.ones_like(ids)
    if padded:
        for row, n in enumerate((16, 11, 7, 3)):
            mask[row, n:] = 0
            ids[row, n:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _features_run(fast: bool, padded: bool, bf16: bool):
    teacher, student = _teacher(), _student()
    torch.manual_seed(2)
    distiller = Distiller(24, 32, MAPPING, {"embd": 1, "attn": 1, "hidn": 1}, fast=fast)
    mods = {"teacher": teacher, "student": student, "distiller": distiller}
    torch.manual_seed(4)  # the student's dropout masks
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss, logs = feature_loss_fn(True, MAPPING, fast=fast)(mods, _batch(padded))
    loss.backward()
    grads = torch.cat([p.grad.flatten() for m in (student, distiller) for p in m.parameters() if p.grad is not None])
    return logs, grads


def _close(a, b, rel):
    assert set(a) == set(b)
    for k in a:
        assert abs(a[k] - b[k]) <= rel * abs(b[k]) + 1e-12, (k, a[k], b[k])


@pytest.mark.parametrize("padded", [False, True])
def test_gd_and_step1_losses_and_gradients_equal_the_former_path_fp32(padded):
    fast_logs, fast_g = _features_run(True, padded, bf16=False)
    old_logs, old_g = _features_run(False, padded, bf16=False)
    assert old_logs["attn"] > 0 and old_logs["hidn"] > 0 and old_logs["embd"] > 0
    _close(fast_logs, old_logs, 1e-5)
    assert fast_g.shape == old_g.shape
    assert torch.allclose(fast_g, old_g, rtol=1e-5, atol=1e-5 * old_g.abs().max().item())


@pytest.mark.parametrize("padded", [False, True])
def test_gd_and_step1_losses_and_gradients_match_the_former_path_bf16(padded):
    fast_logs, fast_g = _features_run(True, padded, bf16=True)
    old_logs, old_g = _features_run(False, padded, bf16=True)
    _close(fast_logs, old_logs, 2e-2)
    assert torch.nn.functional.cosine_similarity(fast_g, old_g, dim=0) > 0.999


def test_padding_changes_the_losses_so_the_padded_case_tests_masking():
    full, _ = _features_run(True, False, bf16=False)
    pad, _ = _features_run(True, True, bf16=False)
    assert abs(full["attn"] - pad["attn"]) > 0.01 * full["attn"]


@pytest.mark.parametrize("bf16", [False, True])
def test_step2_loss_and_gradients_equal_the_former_path(bf16):
    out = {}
    for fast in (True, False):
        student = _student(BertForSequenceClassification)  # train mode: dropout on, the same masks drawn
        torch.manual_seed(5)
        batch = {**_batch(True), "t_logits": torch.tensor([[0.5, -0.2], [1.0, 0.3], [-0.7, 0.1], [0.0, 2.0]])}
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = prediction_loss_fn(1.0, 1.0, False, fast=fast)({"student": student}, batch)
        loss.backward()
        out[fast] = (loss.item(), torch.cat([p.grad.flatten() for p in student.parameters() if p.grad is not None]))
    rel = 2e-2 if bf16 else 1e-5
    assert abs(out[True][0] - out[False][0]) <= rel * abs(out[False][0])
    if bf16:
        assert torch.nn.functional.cosine_similarity(out[True][1], out[False][1], dim=0) > 0.999
    else:
        assert torch.allclose(out[True][1], out[False][1], rtol=1e-5, atol=1e-5 * out[False][1].abs().max().item())


def test_fused_adamw_makes_the_former_update():
    from tinyfw.train.optim import param_groups

    params = {}
    for fused in (True, False):
        model = _student()
        opt = torch.optim.AdamW(param_groups([model], 0.01), lr=1e-3, fused=True if fused else None)
        for step in range(3):
            torch.manual_seed(step)
            for p in model.parameters():
                p.grad = torch.randn_like(p)
            opt.step()
        params[fused] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.allclose(params[True], params[False], rtol=1e-5, atol=1e-6)
    assert not torch.equal(params[True], torch.cat([p.detach().flatten() for p in _student().parameters()]))


def test_step2_in_eval_takes_the_fused_kernel_with_the_same_logits():
    from tinyfw.models.capture import enable_capture, fast_attention

    student = enable_capture(_student(BertForSequenceClassification).eval())
    batch = _batch(True)
    with torch.no_grad():
        plain = student(**batch).logits
        with fast_attention():
            fused = student(**batch).logits
    assert torch.allclose(fused, plain, rtol=1e-5, atol=1e-6)
