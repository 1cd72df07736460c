"""The other recipes (issue 23): each loss variant against an independent formula on fixed
tensors (padding-invariant like the masked default), the recipe groups, the checks that name
the recipe that can, the default path's keys unchanged, and a 16-head teacher distilled into a
12-head student with recipe=minilm."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from transformers import BertConfig, BertModel

from tinyfw import __main__ as entry
from tinyfw.distill import recipes
from tinyfw.distill.losses import (
    attention_kl, hidden_cosine, logits_mse, mlm_soft_loss, prediction_kl, prediction_variant, relation_kl,
)
from tinyfw.distill.objective import Distiller
from tinyfw.models.capture import Features, capture

from conftest import run_tinyfw


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(entry.CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    p, q = _softmax(p_logits), _softmax(q_logits)
    return float(sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q)))


MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


def _pad_time(x: torch.Tensor, extra: int, dims, g: torch.Generator) -> torch.Tensor:
    """``x`` padded with ``extra`` random positions along each of ``dims``."""
    shape = list(x.shape)
    for d in dims:
        shape[d] += extra
    out = torch.randn(*shape, generator=g) * 5
    out[tuple(slice(0, n) for n in x.shape)] = x
    return out


LONG_MASK = torch.cat([MASK, torch.zeros(2, 4, dtype=MASK.dtype)], dim=1)

# ---- prediction ---------------------------------------------------------------------------------


def test_prediction_kl_and_mse_hand_computed():
    s = torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]])
    t = torch.tensor([[2.0, 0.0, 1.0], [1.0, 1.0, -1.0]])
    for temp in (1.0, 2.0):
        want = np.mean([_kl(t[i].numpy() / temp, s[i].numpy() / temp) for i in range(2)])
        assert prediction_kl(s, t, temp).item() == pytest.approx(want, rel=1e-5)
        assert prediction_variant(s, t, temp, "kl").item() == pytest.approx(want, rel=1e-5)
    assert logits_mse(s, t).item() == pytest.approx(sum((a - b) ** 2 for a, b in zip(s.flatten().tolist(),
                                                                                      t.flatten().tolist())) / 6)
    assert prediction_variant(s, t, 1.0, "mse").item() == pytest.approx(logits_mse(s, t).item())
    one_s, one_t = torch.tensor([[0.5], [2.0]]), torch.tensor([[1.0], [1.0]])
    assert prediction_variant(one_s, one_t, 2.0, "kl").item() == pytest.approx((0.25 + 1.0) / 2)  # regression: MSE
    with pytest.raises(ValueError, match="distill.pred_loss"):
        prediction_variant(s, t, 1.0, "nope")


def test_mlm_soft_loss_is_t_squared_kl():
    s, t = torch.tensor([[0.3, -0.2, 1.0, 0.0]]), torch.tensor([[1.0, 0.5, -1.0, 0.2]])
    assert mlm_soft_loss(s, t, 2.0).item() == pytest.approx(4 * _kl(t[0].numpy() / 2, s[0].numpy() / 2), rel=1e-5)


def test_hard_label_weight_mixes_the_task_loss_into_step2():
    from tinyfw.distill.steps import prediction_loss_fn

    class Head(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            return type("O", (), {"logits": torch.tensor([[1.0, 0.0], [0.0, 2.0]])})()

    batch = {"input_ids": torch.zeros(2, 1), "labels": torch.tensor([1, 1]), "t_logits": torch.tensor([[0.0, 1.0], [0.0, 1.0]])}
    soft = -(torch.softmax(batch["t_logits"], -1) * torch.log_softmax(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), -1)).sum(-1).mean()
    hard = (math.log(1 + math.e) + math.log(1 + math.exp(-2))) / 2  # CE of class 1 in each row
    loss, logs = prediction_loss_fn(1.0, 1.0, False, kind="soft_ce", hard_label_weight=0.5)({"student": Head()}, batch)
    assert loss.item() == pytest.approx(soft.item() + 0.5 * hard, rel=1e-5)
    assert logs["hard"] == pytest.approx(hard, rel=1e-5)


# ---- attention and hidden ---------------------------------------------------------------------------


def test_attention_kl_hand_computed_over_valid_cells_and_padding_invariant():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(2, 2, 3, 3, generator=g), torch.randn(2, 2, 3, 3, generator=g)
    total, rows = 0.0, 0
    for b in range(2):
        n = int(MASK[b].sum())
        for h in range(2):
            for i in range(n):
                total += _kl(t[b, h, i, :n].numpy(), s[b, h, i, :n].numpy())
                rows += 1
    assert rows == 2 * 3 + 2 * 2
    assert attention_kl(s, t, MASK).item() == pytest.approx(total / rows, rel=1e-5)
    g2 = torch.Generator().manual_seed(9)
    long = attention_kl(_pad_time(s, 4, (2, 3), g2), _pad_time(t, 4, (2, 3), g2), LONG_MASK)
    torch.testing.assert_close(long, attention_kl(s, t, MASK))


def test_hidden_cosine_hand_computed_with_and_without_projection():
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    terms = [1 - float(s[b, i] @ t[b, i]) / float(s[b, i].norm() * t[b, i].norm())
             for b in range(2) for i in range(int(MASK[b].sum()))]
    assert hidden_cosine(s, t, None, MASK).item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    g2 = torch.Generator().manual_seed(5)
    torch.testing.assert_close(hidden_cosine(_pad_time(s, 4, (1,), g2), _pad_time(t, 4, (1,), g2), None, LONG_MASK),
                               hidden_cosine(s, t, None, MASK))
    proj = torch.nn.Linear(2, 4, bias=False)
    s2 = torch.randn(2, 3, 2, generator=g)
    assert hidden_cosine(s2, t, proj, MASK).item() == pytest.approx(hidden_cosine(proj(s2), t, None, MASK).item())


# ---- MiniLM relations ---------------------------------------------------------------------------------


def _relation_by_hand(x: np.ndarray, y: np.ndarray, heads: int, b: int, r: int, n: int) -> np.ndarray:
    d = x.shape[-1] // heads
    xs, ys = x[b, :n, r * d:(r + 1) * d], y[b, :n, r * d:(r + 1) * d]
    return xs @ ys.T / math.sqrt(d)  # [n, n] logits over the real tokens


def test_relation_kl_hand_computed_for_other_widths_and_padding_invariant():
    g = torch.Generator().manual_seed(6)
    heads = 4
    tq, tk = torch.randn(2, 3, 16, generator=g), torch.randn(2, 3, 16, generator=g)  # teacher width 16
    sq, sk = torch.randn(2, 3, 12, generator=g), torch.randn(2, 3, 12, generator=g)  # student width 12
    total, rows = 0.0, 0
    for b in range(2):
        n = int(MASK[b].sum())
        for r in range(heads):
            rt = _relation_by_hand(tq.numpy(), tk.numpy(), heads, b, r, n)
            rs = _relation_by_hand(sq.numpy(), sk.numpy(), heads, b, r, n)
            for i in range(n):
                total += _kl(rt[i], rs[i])
                rows += 1
    assert relation_kl(sq, sk, tq, tk, MASK, heads).item() == pytest.approx(total / rows, rel=1e-5)
    g2 = torch.Generator().manual_seed(8)
    pad = lambda x: _pad_time(x, 4, (1,), g2)  # noqa: E731
    torch.testing.assert_close(relation_kl(pad(sq), pad(sk), pad(tq), pad(tk), LONG_MASK, heads),
                               relation_kl(sq, sk, tq, tk, MASK, heads))
    with pytest.raises(ValueError, match="relation heads"):
        relation_kl(sq, sk, tq, tk, MASK, 5)


def test_attention_relation_with_the_head_count_is_the_attention_kl_of_the_scores():
    """With r = the models' head count the attention relation is the attention distribution."""
    g = torch.Generator().manual_seed(10)
    h, d = 2, 3
    q_s, k_s, q_t, k_t = (torch.randn(2, 3, h * d, generator=g) for _ in range(4))

    def scores(q, k):
        qh, kh = q.view(2, 3, h, d).transpose(1, 2), k.view(2, 3, h, d).transpose(1, 2)
        return qh @ kh.transpose(-1, -2) / math.sqrt(d)

    torch.testing.assert_close(relation_kl(q_s, k_s, q_t, k_t, MASK, h),
                               attention_kl(scores(q_s, k_s), scores(q_t, k_t), MASK))


def test_relation_heads_auto_and_refusal():
    assert recipes.relation_heads(0, 16, 64, 48) == 16
    assert recipes.relation_heads(0, 12, 384, 312) == 12
    assert recipes.relation_heads(0, 12, 768, 768) == 12
    assert recipes.relation_heads(8, 16, 64, 48) == 8
    with pytest.raises(ValueError, match=r"distill.relation_heads=12 must divide both widths \(teacher 64, student 48\)"):
        recipes.relation_heads(12, 16, 64, 48)


def _bert(hidden: int, heads: int, layers: int = 2) -> BertModel:
    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=40, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                intermediate_size=2 * hidden, max_position_embeddings=32), add_pooling_layer=False).eval()


def test_capture_qkv_is_the_last_layers_projections_and_only_when_asked():
    m = _bert(16, 4)
    ids, att = torch.tensor([[2, 5, 7, 3], [2, 9, 3, 0]]), torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    plain_f = capture(m, ids, att)
    assert plain_f.qkv is None
    f = capture(m, ids, att, need_qkv=True)
    attn = m.encoder.layer[-1].attention.self
    x = f.hidden[-2]  # the last layer's input
    for got, lin in zip(f.qkv, (attn.query, attn.key, attn.value)):
        torch.testing.assert_close(got, lin(x))
    torch.testing.assert_close(f.hidden[-1], plain_f.hidden[-1])  # outputs unchanged
    assert not attn.query._forward_hooks  # hooks removed


def test_distiller_minilm_16_heads_into_12_and_distilbert_cosine_without_projection():
    t, s = _bert(64, 16), _bert(48, 12, layers=1)
    ids, att = torch.tensor([[2, 5, 7, 3], [2, 9, 3, 0]]), torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    ft, fs = capture(t, ids, att, need_qkv=True), capture(s, ids, att, need_qkv=True)
    r = recipes.relation_heads(0, 16, 64, 48)
    d = Distiller(48, 64, [2], {"embd": 0, "attn": 0, "hidn": 0, "rel_attn": 1.0, "rel_value": 2.0}, relation_heads=r)
    total, losses = d(fs, ft)
    want_a = relation_kl(*fs.qkv[:2], *ft.qkv[:2], att, r)
    want_v = relation_kl(fs.qkv[2], fs.qkv[2], ft.qkv[2], ft.qkv[2], att, r)
    assert losses["rel_attn"].item() == pytest.approx(want_a.item())
    assert total.item() == pytest.approx(want_a.item() + 2 * want_v.item(), rel=1e-6)
    assert not list(d.parameters())  # no layer map, no projection
    same = Distiller(16, 16, [1, 2], {"embd": 0, "attn": 0, "hidn": 1.0}, hidn_loss="cosine")
    assert same.proj_h is None  # equal widths: DistilBERT's cosine without W_h
    assert Distiller(12, 16, [1, 2], {"embd": 0, "attn": 0, "hidn": 1.0}, hidn_loss="cosine").proj_h is not None


def test_distiller_mlm_losses_at_the_masked_positions():
    d = Distiller(4, 4, [1], {"embd": 0, "attn": 0, "hidn": 0, "mlm": 2.0, "mlm_soft": 1.0}, vocab_size=6,
                  mlm_temperature=2.0)
    g = torch.Generator().manual_seed(11)
    h, emb, t_logits = torch.randn(3, 4, generator=g), torch.randn(6, 4, generator=g), torch.randn(3, 6, generator=g)
    labels = torch.tensor([1, 4, 0])
    f = Features(torch.zeros(1, 1, 4), [torch.zeros(1, 1, 4)], [], torch.ones(1, 1))
    total, losses = d(f, f, mlm=(h, emb, t_logits, labels))
    s_logits = d.mlm_head(h, emb)
    ce = np.mean([-math.log(_softmax(s_logits[i].detach().numpy())[labels[i]]) for i in range(3)])
    soft = 4 * np.mean([_kl(t_logits[i].numpy() / 2, s_logits[i].detach().numpy() / 2) for i in range(3)])
    assert losses["mlm"].item() == pytest.approx(ce, rel=1e-5)
    assert losses["mlm_soft"].item() == pytest.approx(soft, rel=1e-5)
    assert total.item() == pytest.approx(2 * ce + soft, rel=1e-5)


# ---- config: recipes, keys, checks --------------------------------------------------------------------------


def test_recipe_groups_set_losses_and_stay_overridable_and_composable():
    cfg = _compose("recipe=minilm")
    assert (cfg.distill.weights.rel_attn, cfg.distill.weights.attn, cfg.task_distill.intermediate) == (1.0, 0.0, False)
    cfg = _compose("recipe=minilm", "distill.weights.rel_value=0", "experiment=smoke")
    assert cfg.distill.weights.rel_value == 0.0 and cfg.teacher.name_or_path == "random"
    cfg = _compose("recipe=distilbert", "ablation=wo_pred", "gd=off")
    assert (cfg.distill.weights.pred, cfg.distill.weights.mlm_soft, str(cfg.distill.hidn_loss), str(cfg.gd)) == \
        (0.0, 5.0, "cosine", "off")
    assert str(_compose("recipe=distilbert", "experiment=smoke").student.init) == "every_other"
    with pytest.raises(Exception, match="attn_loss"):
        _compose("distill.attn_loss=nope")


def test_the_default_paths_keys_take_no_new_key():
    """The GD key, the TD fingerprint and the step-1 key of the default and smoke configs hold
    exactly the keys they held before the recipes (their values unchanged: checked by hand)."""
    from tinyfw.artefacts import task_distill
    from tinyfw.artefacts.gd import key_parts

    old_distill = {"weights", "layer_reduction", "share_projection", "attn_mode", "temperature"}
    for ov in ([], ["experiment=smoke"], ["recipe=tinybert", "ablation=wo_attn"]):
        cfg = _compose(*ov)
        gd = key_parts(cfg, None) if ov else None
        if gd is not None:
            assert set(gd["distill"]) == old_distill and set(gd["distill"]["weights"]) == {"embd", "attn", "hidn"}
            assert "teacher_mlm" not in gd
        from omegaconf import OmegaConf

        plain_d = OmegaConf.to_container(cfg.distill, enum_to_str=True)
        view = recipes.key_view(plain_d)
        assert set(view) == old_distill and set(view["weights"]) == {"embd", "attn", "hidn", "pred"}
    smoke = _compose("experiment=smoke", "task_distill.gd_checkpoint=/x")
    fp = task_distill.fingerprint(smoke, Path("/nonexistent"))
    assert set(fp["distill"]) == old_distill and "intermediate" not in fp["task_distill"]
    minilm = recipes.key_view(OmegaConf.to_container(_compose("recipe=minilm").distill, enum_to_str=True))
    assert minilm["weights"]["rel_attn"] == 1.0 and "recipe" not in minilm


def test_step1_key_of_the_default_takes_no_new_key():
    from types import SimpleNamespace

    from tinyfw.artefacts import task_distill as td
    from tinyfw.models.start import Origin, StartPoint

    cfg = _compose("experiment=smoke")
    random = StartPoint(Origin.random, None)
    student = SimpleNamespace(config=SimpleNamespace(num_hidden_layers=1, hidden_size=32, intermediate_size=64,
                                                     num_attention_heads=4, num_labels=2, vocab_size=99))
    enc = type("E", (), {"column_names": ["input_ids"], "__getitem__": lambda self, k: [[1, 2]], "__len__": lambda self: 1})()
    parts = td.step1_key_parts(cfg, Path("/t"), random, enc, [2], student, cfg.task_distill.step1, "fp32")
    assert "recipe" not in parts
    assert set(parts["distill"]) == {"weights", "attn_mode", "layer_reduction", "share_projection"}
    kl = td.step1_key_parts(_compose("experiment=smoke", "distill.attn_loss=kl"), Path("/t"), random, enc, [2],
                            student, cfg.task_distill.step1, "fp32")
    assert kl["recipe"] == {"attn_loss": "kl"}


def test_check_names_the_recipe_that_can():
    cfg = _compose("experiment=smoke")
    t = BertConfig(hidden_size=64, num_attention_heads=16)
    s = BertConfig(hidden_size=48, num_attention_heads=12)
    with pytest.raises(ValueError, match=r"^attention MSE needs equal head counts \(teacher 16, student 12\): use "
                                         r"recipe=minilm or distill.weights.attn=0$"):
        recipes.check(cfg.distill, s, t, attn_weight=1.0)
    recipes.check(cfg.distill, s, t, attn_weight=1.0, intermediate=False)  # no TD step 1: no attention loss
    minilm = _compose("recipe=minilm", "distill.relation_heads=12")
    with pytest.raises(ValueError, match="relation_heads=12 must divide both widths"):
        recipes.check(minilm.distill, s, t, attn_weight=0.0)
    recipes.check(_compose("recipe=minilm").distill, s, t, attn_weight=0.0)
    for bad, msg in (("distill.relation_heads=-4", r"^distill.relation_heads=-4: must be >= 0 \(0: auto\)$"),
                     ("distill.hard_label_weight=-1", r"^distill.hard_label_weight=-1.0: must be >= 0$"),
                     ("distill.mlm_temperature=0", r"^distill.mlm_temperature=0.0: must be > 0$")):
        with pytest.raises(ValueError, match=msg):
            recipes.check(_compose("recipe=minilm", bad).distill, s, t, attn_weight=0.0)
    with pytest.raises(ValueError, match="relation_heads=-4: must be >= 0"):
        recipes.relation_heads(-4, 16, 64, 48)


def test_every_other_init():
    assert recipes.every_other(3, 6) == [1, 3, 5]
    with pytest.raises(ValueError, match="every_other needs a teacher with >= 7 layers"):
        recipes.every_other(4, 6)
    shape = type("S", (), {"num_layers": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 4})()
    tcfg = BertConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=4)
    assert recipes.resolve_init("every_other", shape, tcfg, [2, 4])[:2] == ("teacher_layers", [1, 3])
    wide = BertConfig(hidden_size=64, intermediate_size=64, num_attention_heads=4, num_hidden_layers=4)
    assert recipes.resolve_init("every_other", shape, wide, [2, 4])[:2] == ("random", [2, 4])


# ---- end to end (experiment=smoke) ------------------------------------------------------------------------

HEADS_16_TO_12 = ("experiment=smoke", "teacher.shape.num_heads=16", "student.shape.hidden_size=48",
                  "student.shape.num_heads=12", "student.shape.intermediate_size=96")


def test_minilm_distils_a_16_head_teacher_into_a_12_head_student(tmp_path, shared_home):
    bad = run_tinyfw("stage=general", *HEADS_16_TO_12, run_dir=tmp_path / "refused", home=shared_home, expect_ok=False)
    assert bad["status"] == "failed" and "use recipe=minilm or distill.weights.attn=0" in bad["error"]
    gd = run_tinyfw("stage=general", "recipe=minilm", *HEADS_16_TO_12, run_dir=tmp_path / "gd", home=shared_home)
    final = gd["metrics"]["final"]
    assert set(final) == {"rel_attn", "rel_value", "total"} and all(math.isfinite(v) for v in final.values())
    assert gd["metrics"]["initial"]["total"] > final["total"]
    td = run_tinyfw("stage=task", "recipe=minilm", "augment=off", *HEADS_16_TO_12, run_dir=tmp_path / "td",
                    home=shared_home)
    m = td["metrics"]
    assert m["init"] == "gd:" + str(Path(gd["outputs"]["cache"]) / "student")  # the GD run's student
    assert set(m["steps"]) == {"step2"} and m["steps"]["step2"] > 0  # TD step 2 alone
    assert m["student"]["params"] > 0 and "dev" in m


def test_distilbert_gd_trains_the_mlm_losses_and_hidden_cosine(tmp_path, shared_home):
    gd = run_tinyfw("stage=general", "experiment=smoke", "recipe=distilbert", run_dir=tmp_path / "gd", home=shared_home)
    final = gd["metrics"]["final"]
    assert set(final) == {"hidn", "mlm", "mlm_soft", "total"} and all(math.isfinite(v) for v in final.values())
    assert gd["metrics"]["initial"]["mlm"] > final["mlm"]


# ---- the report: recipe rows with their Δ to TinyBERT ------------------------------------------------------


def test_report_rows_per_recipe_with_delta_to_tinybert():
    from tinyfw.report import records, table

    sets = {"tinybert": ({}, {}, 0.80), "minilm": ({"embd": 0.0, "attn": 0.0, "hidn": 0.0, "rel_attn": 1.0},
                                                   {"attn_loss": "mse"}, 0.78),
            "distilbert": ({"embd": 0.0, "attn": 0.0, "mlm": 2.0}, {"hidn_loss": "cosine"}, 0.75)}
    recs = []
    for name, (w, extra, base) in sets.items():
        for seed in (1, 2, 3):
            acc = base + 0.01 * seed + (0.002 * seed if name == "minilm" else 0)
            cfg = {"stage": "task", "gd": "on", "td": "on", "augment": "on", "seed": seed, "task": {"name": "mr"},
                   "distill": {"recipe": name, "weights": {"embd": 1.0, "attn": 1.0, "hidn": 1.0, "pred": 1.0, **w},
                               **extra},
                   "task_distill": {"intermediate": name == "tinybert"}}
            d = {"stage": "task", "status": "ok", "flags": {"gd": "on", "td": "on", "da": "on"}, "config": cfg,
                 "metrics": {"main_metric": "accuracy", "test": {"accuracy": acc}, "teacher": {"test": {"accuracy": 0.9}}}}
            recs.append(records.from_result(d, f"{name}{seed}", "x"))
    tab = table.build(recs)
    assert [label for label, _ in tab.rows] == ["teacher", "GD+TD+DA (full)", "recipe=distilbert", "recipe=minilm"]
    deltas = dict(table.deltas(tab))
    col = tab.columns[0]
    assert deltas["recipe=distilbert"][col].mean == pytest.approx(-0.05 * 100, abs=1e-6)
    lo, hi = deltas["recipe=minilm"][col].ci95()
    assert deltas["recipe=minilm"][col].mean == pytest.approx(-1.6, abs=1e-6) and lo < -1.6 < hi


def test_distilbert_gd_refuses_bad_settings_before_making_the_teachers_masked_lm(tmp_path):
    from tinyfw.artefacts.gd import _models

    home = tmp_path / "home"
    cfg = _compose("experiment=smoke", "recipe=distilbert", "distill.mlm_temperature=0")
    with pytest.raises(ValueError, match=r"^distill.mlm_temperature=0.0: must be > 0$"):
        _models(cfg, home)
    assert not (home / "cache" / "mlm").exists() and not (home / "cache" / "mlm-work").exists()
