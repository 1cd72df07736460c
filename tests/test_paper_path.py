"""``preset=paper`` end to end with local stand-ins for the hub: a BERT checkpoint in the hub's
pre-training layout (``BertForPreTraining``: encoder + ``cls.predictions`` + ``cls.seq_relationship``)
as the teacher and as the augmenter's masked LM (its own MLM head), a local text corpus, a
GLUE-format SST-2 (``sentence``/``label`` TSVs) and GloVe-format vectors. Every heavy budget is
cut to a few steps and the shapes to tiny ones; everything else is the preset's."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from conftest import run_tinyfw, save_tiny_mlm
from kwtask import FILL, NEG, POS


def glue_sst2(d: Path) -> Path:
    """train.tsv / dev.tsv with SST-2's header (sentence, label 0/1)."""
    d.mkdir(parents=True)
    rng = random.Random(0)
    for name, n in (("train", 24), ("dev", 12)):
        rows = ["sentence\tlabel"]
        for i in range(n):
            words = [rng.choice(FILL) for _ in range(4)] + [rng.choice(POS if i % 2 else NEG)]
            rows.append(f"{' '.join(words)}\t{i % 2}")
        (d / f"{name}.tsv").write_text("\n".join(rows) + "\n")
    return d


def local_corpus(path: Path) -> Path:
    from gensim.test.utils import datapath

    lines = Path(datapath("lee_background.cor")).read_text(encoding="utf-8", errors="replace").splitlines()
    path.write_text("\n".join(lines[:40]) + "\n")
    return path


def glove_txt(path: Path, words) -> Path:
    """GloVe text format (no header): `word v1 ... v8`, seeded random vectors."""
    rng = random.Random(1)
    path.write_text("".join(f"{w} {' '.join(f'{rng.gauss(0, 1):.4f}' for _ in range(8))}\n" for w in sorted(words)))
    return path


@pytest.mark.slow
def test_paper_preset_runs_gd_mlm_augment_teacher_td_on_local_stand_ins(tmp_path):
    from transformers import BertForPreTraining

    # a small BERT saved exactly as the hub publishes bert-base-uncased (pre-training heads)
    bert = save_tiny_mlm(tmp_path / "bert-base-uncased", BertForPreTraining, hidden=64, heads=4)
    sst2 = glue_sst2(tmp_path / "SST-2")
    corpus = local_corpus(tmp_path / "wiki.txt")
    words = {w for t in (sst2 / "train.tsv").read_text().split() for w in [t.lower()] if w.isalpha()}
    vectors = glove_txt(tmp_path / "glove.6B.8d.txt", words | set(FILL) | set(POS) | set(NEG))
    home = tmp_path / "home"
    rec = run_tinyfw(
        "stage=task", "preset=paper", "precision=fp32",  # fp16 needs a GPU
        f"teacher.name_or_path={bert}",
        "student.shape.num_layers=1", "student.shape.hidden_size=32", "student.shape.intermediate_size=64",
        "student.shape.num_heads=4",
        f"corpus.source={corpus}", "corpus.streaming=false", "corpus.config_name=null", "corpus.max_seq_len=32",
        "general.train.max_steps=3", "general.train.batch_size=4",
        f"augmenter.mlm={bert}", f"augmenter.vectors={vectors}", "augmenter.n_aug=2", "augmenter.top_k=3",
        "augmenter.batch_size=16",
        f"+task.files.train={sst2 / 'train.tsv'}", f"+task.files.validation={sst2 / 'dev.tsv'}", "task.max_seq_len=32",
        "teacher_ft.train.max_steps=3", "teacher_ft.train.batch_size=8",
        "task_distill.budget=steps",  # the paper counts epochs (20 + 3); a few steps here
        "task_distill.step1.max_steps=2", "task_distill.step1.batch_size=8",
        "task_distill.step2.max_steps=2", "task_distill.step2.batch_size=8", "task_distill.eval_batch_size=16",
        run_dir=tmp_path / "run", home=home)
    assert rec["status"] == "ok"
    cfg, m = rec["config"], rec["metrics"]
    # the paper's settings stayed in force where not cut for time
    assert cfg["task"]["name"] == "sst2" and cfg["augmenter"]["p_replace"] == 0.4
    assert cfg["task_distill"]["step2"]["lr"] == 3e-5 and cfg["general"]["train"]["lr"] == 5e-5
    # GD from the pre-training checkpoint, the teacher fine-tuned from it, the set augmented with its MLM head
    gd = [p for p in (home / "cache" / "gd-student").iterdir() if p.is_dir()]
    assert len(gd) == 1 and json.loads((gd[0] / "key.json").read_text())["teacher"]["name_or_path"] == str(bert)
    assert m["init"] == f"gd:{gd[0] / 'student'}"
    teacher = Path(rec["outputs"]["teacher"])
    assert teacher.parent.name == "teacher" and "dev" in m["teacher"]
    aug = [p for p in (home / "cache" / "augmented").iterdir() if p.is_dir()]
    assert len(aug) == 1
    stats = json.loads((aug[0] / "stats.json").read_text())
    assert stats["inputs"] == 24 and stats["outputs"] > 24 and stats["candidates"]["mlm_words"] > 0
    assert json.loads((aug[0] / "key.json").read_text())["mlm"] == {"name_or_path": str(bert)}
    assert m["original_train_examples"] == 24 and m["train_examples"] == stats["outputs"]
    assert m["steps"] == {"step1": 2, "step2": 2} and 0.0 <= m["dev"]["accuracy"] <= 1.0
