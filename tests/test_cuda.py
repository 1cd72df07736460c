"""The GPU paths on a CUDA device: model and batch placement in fit(), bf16 autocast, fp16 with
its grad scaler, capture() on the GPU, the augmenter's batched masked-LM forwards, a GD run and
stage=bench on cuda. Every test here is marked ``cuda`` and skips without a GPU (conftest);
``scripts/gpu_check.sh`` runs them (``pytest -m cuda``) on a machine that has one."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForMaskedLM, BertModel

from tinyfw.config import TrainCfg
from tinyfw.models.capture import capture
from tinyfw.train.loop import fit, make_accelerator

pytestmark = pytest.mark.cuda

CUDA = torch.device("cuda")


def tiny_bert(seed: int = 0, **kw) -> BertModel:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
               max_position_embeddings=32)
    return BertModel(BertConfig(**{**cfg, **kw}))


def data(n: int = 16):
    g = torch.Generator().manual_seed(1)
    return [{"input_ids": torch.randint(5, 50, (6,), generator=g), "target": float(i % 3)} for i in range(n)]


def collate(rows):
    ids = torch.stack([r["input_ids"] for r in rows])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "target": torch.tensor([r["target"] for r in rows])}


def _fit(precision: str, loss_scale: float = 1.0, steps: int = 3, accelerator=None, seen=None):
    """fit() a tiny BERT + linear head (and a frozen teacher) on cuda; ``seen`` collects, per
    call of the loss, where the batch and the modules live and the dtype autocast gives a matmul
    (the modules' own outputs are cast back to fp32 by Accelerate's forward wrapper)."""
    model, teacher = tiny_bert(0), tiny_bert(1)
    torch.manual_seed(2)
    head = nn.Linear(16, 1)
    seen = [] if seen is None else seen

    def loss_fn(modules, batch):
        with torch.inference_mode():
            t = modules["teacher"](input_ids=batch["input_ids"]).pooler_output
        out = modules["model"](input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        pred = modules["head"](out.pooler_output).squeeze(-1)
        probe = batch["target"][:, None] @ batch["target"][None, :]  # a matmul: autocast's dtype
        seen.append({"batch": {k: v.device.type for k, v in batch.items()},
                     "params": {k: next(m.parameters()).device.type for k, m in modules.items()},
                     "matmul_dtype": probe.dtype, "teacher": t.device.type})
        loss = nn.functional.mse_loss(pred.float(), batch["target"]) + 0.0 * t.float().sum()
        return loss * loss_scale, {}

    before = [p.detach().clone() for p in (*model.parameters(), *head.parameters())]
    cfg = TrainCfg(batch_size=4, lr=1e-2, max_steps=steps, log_every=1, warmup_ratio=0.0)
    res = fit({"model": model, "head": head}, loss_fn, data(), collate, cfg, precision=precision,
              frozen={"teacher": teacher}, accelerator=accelerator)
    after = [p.detach() for p in (*model.parameters(), *head.parameters())]
    changed = any(not torch.equal(a.cpu(), b.cpu()) for a, b in zip(before, after))
    return res, model, head, seen, changed


def test_fit_puts_models_frozen_teacher_and_batches_on_cuda():
    res, model, head, seen, changed = _fit("fp32")
    assert len(seen) == 3 and changed
    for s in seen:
        assert set(s["batch"].values()) == {"cuda"}, s
        assert s["params"] == {"model": "cuda", "head": "cuda", "teacher": "cuda"}, s
        assert s["teacher"] == "cuda" and s["matmul_dtype"] == torch.float32
    assert all(p.device.type == "cuda" and p.dtype == torch.float32 for p in model.parameters())
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in res.history)
    assert res.tokens == 3 * 4 * 6  # tokens counted from the cuda attention mask


def test_bf16_autocasts_the_forward_keeps_fp32_weights_and_no_scaler():
    acc = make_accelerator("bf16")
    assert acc.device.type == "cuda" and acc.scaler is None  # bf16 needs no loss scaling
    _, model, _, seen, changed = _fit("bf16", accelerator=acc)
    assert changed and {s["matmul_dtype"] for s in seen} == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    # after fit() the model runs as it loads: plain fp32 forward, the autocast wrapper removed
    assert "_original_forward" not in model.__dict__
    ids = torch.randint(5, 50, (2, 6), device=CUDA)
    assert model.eval()(input_ids=ids).last_hidden_state.dtype == torch.float32


def test_fp16_uses_a_grad_scaler_that_skips_overflowing_steps():
    acc = make_accelerator("fp16")
    assert isinstance(acc.scaler, torch.amp.GradScaler) and acc.scaler.is_enabled()
    init = acc.scaler.get_scale()
    res, model, _, seen, changed = _fit("fp16", loss_scale=1e-3, accelerator=acc)
    assert changed and {s["matmul_dtype"] for s in seen} == {torch.float16}
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in res.history)
    assert acc.scaler.get_scale() == init  # no step overflowed, none was skipped

    # a loss whose fp16 gradients overflow once scaled: the scaler skips the optimizer step
    # (weights unchanged) and halves its scale, instead of writing inf into the weights
    acc = make_accelerator("fp16")
    init = acc.scaler.get_scale()
    _, model, head, _, changed = _fit("fp16", loss_scale=1e4, steps=1, accelerator=acc)
    assert not changed, "an overflowing fp16 step must not update the weights"
    assert acc.scaler.get_scale() == init / 2
    assert all(torch.isfinite(p).all() for p in (*model.parameters(), *head.parameters()))


def test_capture_on_cuda_matches_cpu_and_autocasts_to_bf16():
    model = tiny_bert(0, attn_implementation="eager").eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 50, (3, 7), generator=g)
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2, [1] * 3 + [0] * 4])
    gpu = copy.deepcopy(model).to(CUDA)
    with torch.inference_mode():
        ref = capture(model, ids, mask)
        f = capture(gpu, ids.to(CUDA), mask.to(CUDA))
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = capture(gpu, ids.to(CUDA), mask.to(CUDA))
    assert f.scores[0].device.type == "cuda" and f.mask.device.type == "cuda"
    assert len(f.scores) == len(f.hidden) == 2
    for a, b in zip(ref.scores + ref.hidden + [ref.embeddings], f.scores + f.hidden + [f.embeddings]):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-5)
    assert low.scores[0].dtype == torch.bfloat16
    torch.testing.assert_close(low.scores[1].float().cpu(), ref.scores[1], rtol=0.05, atol=0.05)


def test_student_gradients_flow_on_cuda_under_bf16():
    from tinyfw.distill.objective import Distiller
    from tinyfw.distill.steps import clone_features

    teacher, student = tiny_bert(0).to(CUDA).eval(), tiny_bert(1, hidden_size=8, intermediate_size=16).to(CUDA)
    distiller = Distiller(8, 16, [1, 2], {"embd": 1, "attn": 1, "hidn": 1}).to(CUDA)
    ids = torch.randint(5, 50, (4, 6), device=CUDA)
    mask = torch.ones_like(ids)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        with torch.inference_mode():
            t = capture(teacher, ids, mask)
        loss, parts = distiller(capture(student, ids, mask), clone_features(t, [1, 2]))
    loss.backward()
    assert torch.isfinite(loss) and set(parts) >= {"embd", "attn", "hidn"}
    for p in (student.embeddings.word_embeddings.weight, student.encoder.layer[0].attention.self.query.weight,
              *distiller.parameters()):
        assert p.grad is not None and p.grad.device.type == "cuda" and torch.isfinite(p.grad).all()
        assert p.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory):
    from tinyfw.models.load import write_tiny_tokenizer

    tok = write_tiny_tokenizer(tmp_path_factory.mktemp("tok"))
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, intermediate_size=128,
                                       max_position_embeddings=128)).eval()
    return model, tok


def _texts(n: int = 24):
    from pathlib import Path

    from gensim.test.utils import datapath

    lines = Path(datapath("pang_lee_polarity.cor")).read_text(encoding="latin-1").splitlines()
    return [l.split(" ", 1)[1] for l in lines[:n]]


def _overlap(a, b):
    """Mean |A ∩ B| / max(|A|, |B|) over masked-LM words, and the share of identical lists."""
    inter, same, n = 0.0, 0, 0
    for x, y in zip(a, b):
        for s, ca, cb in zip(x.source, x.candidates, y.candidates):
            if s == "mlm":
                n += 1
                inter += len(set(ca) & set(cb)) / max(len(ca), len(cb), 1)
                same += ca == cb
    assert n > 20, "too few masked-LM words to compare"
    return inter / n, same / n


def test_augmenter_batched_forwards_on_cuda_match_cpu(tiny_mlm):
    from augment import Augmenter, random_vectors, split_words

    model, tok = tiny_mlm
    texts = _texts()
    kv = random_vectors({w for t in texts for w in split_words(t)}, dim=8, seed=1)
    kw = dict(n_aug=5, top_k=8, seed=3, targets="alpha", second_segment=True, batch_size=16)
    cpu = Augmenter(model, tok, kv, **kw).analyse(texts)
    gpu_model = copy.deepcopy(model).to(CUDA)
    exact = Augmenter(gpu_model, tok, kv, **kw)
    assert exact.mlm.device.type == "cuda"
    gpu = exact.analyse(texts)
    ov, same = _overlap(cpu, gpu)
    assert ov >= 0.98 and same >= 0.9, (ov, same)  # fp32 on another device: ties may swap
    # on one device, batched exact mode equals the reference computation (one word per forward)
    ref = Augmenter(gpu_model, tok, kv, **{**kw, "targets": "reference"}, mode="reference").analyse(texts)
    exact_ref = Augmenter(gpu_model, tok, kv, **{**kw, "targets": "reference"}).analyse(texts)
    assert [a.candidates for a in ref] == [a.candidates for a in exact_ref]
    # bf16 autocast on the GPU keeps most of the top-K
    low = Augmenter(gpu_model, tok, kv, **kw, precision="bf16").analyse(texts)
    ov, _ = _overlap(gpu, low)
    assert ov >= 0.8, ov
    assert exact.stats()["mlm_forwards"] < sum(a.source.count("mlm") for a in gpu)


def test_general_stage_trains_on_cuda_in_bf16(tmp_path, shared_home):
    from conftest import run_tinyfw

    rec = run_tinyfw("stage=general", "experiment=smoke", "precision=bf16", run_dir=tmp_path / "gd",
                     home=shared_home)
    assert rec["device"] == "cuda"
    m = rec["metrics"]
    assert m["steps"] == 30 and m["precision"] == "bf16"
    assert m["final"]["total"] < m["initial"]["total"], (m["initial"], m["final"])


def test_bench_stage_times_on_cuda_only(tmp_path, shared_home):
    from conftest import run_tinyfw

    rec = run_tinyfw("stage=bench", "experiment=smoke", "bench.devices=[cuda]", "bench.batch_sizes=[1,8]",
                     run_dir=tmp_path / "bench", home=shared_home)
    models = rec["metrics"]["models"]
    assert rec["metrics"]["env"]["devices"][0].startswith("GPU: ")
    for m in models.values():
        assert set(m["devices"]) == {"cuda"} and set(m["devices"]["cuda"]) == {"b1", "b8"}
        assert all(v["median_s"] > 0 for v in m["devices"]["cuda"].values())
