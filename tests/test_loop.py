"""The shared training loop: loss falls, grad accumulation, and kill + resume equivalence."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertModel

from tinyfw.config import TrainCfg
from tinyfw.train.batches import Batches
from tinyfw.train.loop import fit


def tiny_bert(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32)
    return BertModel(cfg)  # dropout on: resume must restore the RNG too


def dataset(n: int = 20):
    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(n):
        L = 4 + i % 5
        out.append({"input_ids": torch.randint(5, 50, (L,), generator=g).tolist(), "target": float(i % 3)})
    return out


def collate(rows):
    L = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros(len(rows), L, dtype=torch.long)
    mask = torch.zeros(len(rows), L, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
        mask[i, : len(r["input_ids"])] = 1
    # a random token drop, like MLM masking: the collate draws from the global RNG
    drop = (torch.rand(ids.shape) < 0.1) & (mask == 1)
    ids = ids.masked_fill(drop, 4)
    return {"input_ids": ids, "attention_mask": mask, "target": torch.tensor([r["target"] for r in rows])}


class Kill(RuntimeError):
    pass


def make_loss(kill_at: int | None = None):
    calls = {"n": 0}

    def loss_fn(modules, batch):
        calls["n"] += 1
        if kill_at is not None and calls["n"] == kill_at:
            raise Kill(f"simulated kill at call {kill_at}")
        out = modules["model"](input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        pred = modules["head"](out.pooler_output).squeeze(-1)
        loss = nn.functional.mse_loss(pred, batch["target"])
        return loss, {"mse": loss.item()}

    return loss_fn


def run(tmp, kill_at=None, save_every=3, max_steps=8, accum=2, epochs=1.0):
    model = tiny_bert()
    torch.manual_seed(1)
    head = nn.Linear(16, 1)
    cfg = TrainCfg(batch_size=4, grad_accum=accum, lr=1e-2, warmup_ratio=0.2, max_steps=max_steps,
                   epochs=epochs, log_every=1, save_every=save_every)
    res = fit({"model": model, "head": head}, make_loss(kill_at), dataset(), collate, cfg,
              out_dir=tmp, seed=7, desc="test")
    return res, model, head


def params(*mods):
    return [p.detach().clone() for m in mods for p in m.parameters()]


def test_loss_falls_and_history(tmp_path):
    res, _, _ = run(tmp_path / "a", save_every=0, max_steps=-1, accum=1, epochs=6)
    assert res.steps == res.total_steps == 30  # 20 examples / batch 4 = 5 steps per epoch
    assert len(res.history) == 30 and res.history[-1]["step"] == 30
    assert res.mean("loss", last=0.2) < res.mean("loss", first=0.2)
    assert res.tokens > 0 and res.tokens_per_s > 0
    assert {"loss", "mse", "lr"} <= set(res.final)
    # warmup then linear decay to zero
    lrs = [h["lr"] for h in res.history]
    assert max(lrs) == pytest.approx(1e-2) and lrs[-1] == pytest.approx(0.0)
    ckpts = sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir())
    assert ckpts == ["step-30"]


@pytest.mark.parametrize("save_every,kill_at", [(3, 13), (2, 9)])
def test_kill_and_resume_matches_uninterrupted(tmp_path, save_every, kill_at):
    ref, m_ref, h_ref = run(tmp_path / "ref", save_every=save_every)
    assert ref.steps == 8
    with pytest.raises(Kill):
        run(tmp_path / "killed", kill_at=kill_at, save_every=save_every)
    left = sorted(p.name for p in (tmp_path / "killed" / "checkpoints").iterdir())
    assert left and all(not n.endswith(".tmp") for n in left) and len(left) <= 2
    res, m, h = run(tmp_path / "killed", save_every=save_every)  # same arguments: resumes
    assert res.resumed_from is not None and 0 < res.resumed_from < 8
    assert res.steps == 8
    for a, b in zip(params(m_ref, h_ref), params(m, h)):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), (a - b).abs().max()
    assert [r["step"] for r in res.history] == list(range(1, 9))
    for a, b in zip(ref.history, res.history):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
        assert a["lr"] == pytest.approx(b["lr"])
    # a finished run's re-run loads the final checkpoint and returns at once
    again, m2, h2 = run(tmp_path / "killed", save_every=save_every)
    assert again.resumed_from == 8 and again.steps == 8
    for a, b in zip(params(m_ref, h_ref), params(m2, h2)):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)
    state = json.loads((tmp_path / "killed" / "checkpoints" / "step-8" / "trainer_state.json").read_text())
    assert state["step"] == 8 and state["final"]


def test_rank_sharding_covers_global_batch():
    one = Batches(10, 4, 1, 0, seed=3, shuffle=True).epoch(0)
    r0 = Batches(10, 2, 2, 0, seed=3, shuffle=True).epoch(0)
    r1 = Batches(10, 2, 2, 1, seed=3, shuffle=True).epoch(0)
    assert len(one) == len(r0) == len(r1) == 3
    for b, x, y in zip(one[:2], r0, r1):
        assert x + y == b  # two ranks together see the single process's global batch
    assert len(r0[-1]) == len(r1[-1]) == 2  # padded by wrapping: equal work per rank


def test_bad_inputs(tmp_path):
    cfg = TrainCfg(batch_size=2, max_steps=-1)
    with pytest.raises(ValueError, match="empty"):
        fit({"m": nn.Linear(2, 2)}, make_loss(), [], collate, cfg, out_dir=None)
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="requires_grad"):
        fit({"m": frozen}, make_loss(), dataset(), collate, cfg, out_dir=None)


def test_constant_schedule_and_step0_eval(tmp_path):
    model = tiny_bert()
    torch.manual_seed(1)
    head = nn.Linear(16, 1)
    seen = []

    def evaluate(mods):
        seen.append(float(next(mods["head"].parameters()).detach().sum()))
        return {"score": float(len(seen))}

    cfg = TrainCfg(batch_size=4, lr=1e-2, warmup_ratio=0.25, schedule="constant", max_steps=8, log_every=1, eval_every=4)
    res = fit({"model": model, "head": head}, make_loss(), dataset(), collate, cfg, out_dir=None, seed=7,
              evaluate=evaluate)
    lrs = [h["lr"] for h in res.history]
    assert lrs[0] < 1e-2 and all(lr == pytest.approx(1e-2) for lr in lrs[1:])  # warmup, then constant
    # evaluated before the first step (step 0: the untrained weights), at step 4 and at the end
    assert [e["step"] for e in res.evals] == [0, 4, 8]
    assert seen[0] != seen[-1]
    with pytest.raises(ValueError, match="unknown schedule"):
        fit({"model": tiny_bert()}, make_loss(), dataset(), collate,
            TrainCfg(batch_size=4, max_steps=2, schedule="cosine"), out_dir=None)


def test_length_grouped_batches_cover_the_epoch_with_less_padding():
    import random

    rnd = random.Random(0)
    lengths = [rnd.randint(5, 64) for _ in range(1000)]
    plain = Batches(1000, 8, 1, 0, seed=3, shuffle=True).epoch(0)
    grouped = Batches(1000, 8, 1, 0, seed=3, shuffle=True, lengths=lengths).epoch(0)
    assert sorted(i for b in grouped for i in b) == list(range(1000))  # every example once
    assert len(grouped) == len(plain) == 125

    def padded(batches):
        return sum(max(lengths[i] for i in b) * len(b) for b in batches)

    assert padded(grouped) < 0.75 * padded(plain)
    assert grouped == Batches(1000, 8, 1, 0, seed=3, shuffle=True, lengths=lengths).epoch(0)  # deterministic
    assert grouped != Batches(1000, 8, 1, 0, seed=3, shuffle=True, lengths=lengths).epoch(1)  # reshuffled per epoch
    # the order of batches stays random: long and short batches are mixed, not sorted
    maxes = [max(lengths[i] for i in b) for b in grouped[:50]]
    assert maxes != sorted(maxes) and maxes != sorted(maxes, reverse=True)
    # two ranks together still see the one-process global batch
    r0 = Batches(1000, 4, 2, 0, seed=3, shuffle=True, lengths=lengths).epoch(0)
    r1 = Batches(1000, 4, 2, 1, seed=3, shuffle=True, lengths=lengths).epoch(0)
    assert [a + b for a, b in zip(r0, r1)] == grouped


def test_bf16_fit_leaves_a_plain_fp32_model():
    import copy

    model = tiny_bert()
    torch.manual_seed(1)
    head = nn.Linear(16, 1)
    cfg = TrainCfg(batch_size=4, lr=1e-3, max_steps=2, log_every=1)
    fit({"model": model, "head": head}, make_loss(), dataset(), collate, cfg, precision="bf16", out_dir=None)
    assert "_original_forward" not in model.__dict__  # Accelerate's autocast wrapper is gone
    model.eval()
    twin = copy.deepcopy(model)
    twin.load_state_dict(model.state_dict())
    ids = torch.randint(5, 50, (2, 6))
    out = model(input_ids=ids).last_hidden_state
    assert out.dtype == torch.float32 and torch.equal(out, twin(input_ids=ids).last_hidden_state)


class StepTracker:
    """Records the step of fit()'s last log call: the evaluation below scores by step."""

    def __init__(self):
        self.step = 0

    def log(self, values, step):
        self.step = step


SCORES = {0: 0.0, 2: 1.0, 4: 3.0, 6: 2.0, 8: 1.5}  # best dev score at step 4, not at the end


def run_best(tmp, kill_at=None, restore_best=True):
    model = tiny_bert()
    torch.manual_seed(1)
    head = nn.Linear(16, 1)
    tracker = StepTracker()
    cfg = TrainCfg(batch_size=4, lr=1e-2, max_steps=8, log_every=1, save_every=2, eval_every=2)
    res = fit({"model": model, "head": head}, make_loss(kill_at), dataset(), collate, cfg, out_dir=tmp, seed=7,
              tracker=tracker, evaluate=lambda mods: {"score": SCORES[tracker.step]}, eval_key="score",
              restore_best=restore_best, desc="test")
    return res, params(model, head)


def test_restore_best_after_kill_and_resume_matches_uninterrupted(tmp_path):
    ref, w_ref = run_best(tmp_path / "ref")
    assert ref.best_eval["step"] == 4 and [e["step"] for e in ref.evals] == [0, 2, 4, 6, 8]
    _, w_last = run_best(tmp_path / "last", restore_best=False)
    assert any(not torch.equal(a, b) for a, b in zip(w_ref, w_last))  # restoring changes the weights
    with pytest.raises(Kill):
        run_best(tmp_path / "killed", kill_at=7)  # killed in step 7: after the best eval (4) and the save at 6
    res, w = run_best(tmp_path / "killed")
    assert res.resumed_from == 6 and res.best_eval["step"] == 4
    for a, b in zip(w_ref, w):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), (a - b).abs().max()
    again, w2 = run_best(tmp_path / "killed")  # a re-run of the finished run restores the best too
    assert again.resumed_from == 8
    assert all(torch.allclose(a, b, atol=1e-6, rtol=0) for a, b in zip(w_ref, w2))


def test_resume_refuses_another_training_and_restarts_on_request(tmp_path):
    from tinyfw.train.checkpoint import ResumeError

    def go(fingerprint, hidden=16, resume=True):
        torch.manual_seed(0)
        model = BertModel(BertConfig(vocab_size=50, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=32))
        head = nn.Linear(hidden, 1)
        cfg = TrainCfg(batch_size=4, lr=1e-2, max_steps=3, log_every=1)
        return fit({"model": model, "head": head}, make_loss(), dataset(), collate, cfg, out_dir=tmp_path,
                   seed=7, fingerprint=fingerprint, resume=resume, desc="GD")

    fp = {"distill": {"weights": {"attn": 1.0, "hidn": 1.0}}, "student": {"hidden": 16}}
    first = go(fp)
    with pytest.raises(ResumeError) as err:
        go({"distill": {"weights": {"attn": 0.0, "hidn": 1.0}}, "student": {"hidden": 16}})
    msg = str(err.value)
    assert "distill.weights.attn: 1.0 -> 0.0" in msg and "hidn" not in msg and "\n" not in msg
    assert "hydra.run.dir" in msg and "resume=false" in msg
    # a width change without a fingerprint: the same kind of message, not a raw state_dict error
    with pytest.raises(ResumeError, match="does not fit this model.*size mismatch.*resume=false"):
        go(None, hidden=24)
    state = json.loads((tmp_path / "checkpoints" / "step-3" / "trainer_state.json").read_text())
    assert state["fingerprint"] == fp  # the refusals left the checkpoint alone
    again = go(fp)
    assert again.resumed_from == 3 and again.history == first.history
    fresh = go({"other": 1}, hidden=24, resume=False)  # explicit restart: trains from scratch
    assert fresh.resumed_from is None and fresh.steps == 3
    state = json.loads((tmp_path / "checkpoints" / "step-3" / "trainer_state.json").read_text())
    assert state["fingerprint"] == {"other": 1}


def test_invalid_train_settings_fail_before_training():
    for bad, match in ((dict(batch_size=0), "batch_size=0: must be >= 1"), (dict(lr=-1e-3), "lr=-0.001"),
                       (dict(max_steps=-1, epochs=0.0), "epochs=0.0: must be > 0")):
        with pytest.raises(ValueError, match=match):
            fit({"model": tiny_bert()}, make_loss(), dataset(), collate, TrainCfg(**{"max_steps": 2, **bad}),
                out_dir=None)


def test_find_unused_parameters_with_an_own_accelerator_needs_it_there_too():
    from tinyfw.train.loop import make_accelerator

    def go(acc):
        torch.manual_seed(1)
        return fit({"model": tiny_bert(), "head": nn.Linear(16, 1)}, make_loss(), dataset(), collate,
                   TrainCfg(batch_size=4, max_steps=1), out_dir=None, accelerator=acc, find_unused_parameters=True)

    with pytest.raises(ValueError, match=r"own accelerator.*make_accelerator\(precision, find_unused_parameters=True\)"):
        go(make_accelerator("fp32"))  # DDP would run without the flag the caller asked for
    assert go(make_accelerator("fp32", find_unused_parameters=True)).steps == 1
