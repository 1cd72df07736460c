"""stage=general end to end (smoke): result.json, falling losses, a loadable student, the
cache entry the task stage uses, and clear failures for an empty corpus or a vocab mismatch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def run_general(run_dir: Path, home: Path, *overrides: str, console: list = None, refused: bool = False) -> dict:
    """The run's result.json; with ``refused``, the refusal record the command left beside it."""
    env = {**os.environ, "WANDB_MODE": "disabled", "TINYFW_HOME": str(home)}
    cmd = [sys.executable, "-m", "tinyfw", "stage=general", "experiment=smoke",
           f"hydra.run.dir={run_dir}", f"home={home}", *overrides]
    before = set(run_dir.glob("refused-*.json"))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    res = run_dir / "result.json"
    if refused:
        new = sorted(set(run_dir.glob("refused-*.json")) - before)
        assert len(new) == 1, proc.stderr[-3000:]
        res = new[0]
    assert res.exists(), proc.stderr[-3000:]
    if console is not None:
        console.append(proc.stdout + proc.stderr)
    return json.loads(res.read_text())


@pytest.mark.slow
def test_smoke_gd(tmp_path):
    from transformers import AutoModel

    home, run_dir = tmp_path / "home", tmp_path / "run"
    r = run_general(run_dir, home)
    assert r["status"] == "ok", r.get("error")
    m = r["metrics"]
    assert m["steps"] == 30 and m["tokens"] > 0 and m["tokens_per_s"] > 0
    for k in ("embd", "hidn", "total"):
        assert m["final"][k] < m["initial"][k], (k, m["initial"], m["final"])
    assert set(m["initial"]) == {"embd", "attn", "hidn", "total"}  # no prediction loss in GD
    assert m["heldout"]["heldout_total"] > 0
    # the precision chosen and why, in result.json (GD: the global precision, fp32 by default)
    assert r["precision"]["precision"]["requested"] == "fp32" and r["precision"]["precision"]["resolved"] == "fp32"
    assert m["precision"] == "fp32" and r["precision"]["precision"]["reason"]
    # the student: HF format, loads with no missing/unexpected keys, projections kept apart
    student = Path(r["outputs"]["student"])
    model, info = AutoModel.from_pretrained(student, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert model.config.num_hidden_layers == 1 and model.config.hidden_size == 32
    assert (student / "tokenizer.json").exists() or (student / "vocab.txt").exists()
    proj = torch.load(run_dir / "projections.pt")
    assert proj and all(k.startswith("proj") for k in proj)
    assert not any("proj" in k for k in model.state_dict())
    # registered in the cache where the task stage looks it up
    cached = Path(r["outputs"]["cache"])
    assert (cached / "student" / "config.json").exists() and (cached / "projections.pt").exists()
    from hydra import compose, initialize_config_dir

    import tinyfw.__main__  # noqa: F401  (registers the schema and resolvers)
    from tinyfw.artefacts.gd import ensure_gd_student

    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose("config", overrides=["stage=general", "experiment=smoke", f"home={home}"])
    assert ensure_gd_student(cfg, home) == cached / "student"  # found, not retrained
    # a re-run in the same directory resumes from the final checkpoint and returns at once
    again = run_general(run_dir, home)
    assert again["status"] == "ok" and again["metrics"]["resumed_from"] == 30
    assert again["metrics"]["final"] == pytest.approx(m["final"])


def test_empty_corpus_fails_clearly(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    r = run_general(tmp_path / "run", tmp_path / "home", f"corpus.source={empty}")
    assert r["status"] == "failed"
    assert "no non-empty document" in r["error"] and str(empty) in r["error"]


def test_vocab_mismatch_fails_clearly(tmp_path):
    from transformers import BertConfig, BertModel

    ckpt = tmp_path / "other-vocab"
    BertModel(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                         intermediate_size=64)).save_pretrained(ckpt)
    r = run_general(tmp_path / "run", tmp_path / "home", f"student.init={ckpt}")
    assert r["status"] == "failed"
    assert "vocabulary (100) differs" in r["error"] and "tokenizer" in r["error"]
    assert not (tmp_path / "run" / "student").exists()


@pytest.mark.slow
def test_ensure_gd_student_trains_once(tmp_path):
    from hydra import compose, initialize_config_dir
    from transformers import AutoModel

    import tinyfw.__main__  # noqa: F401  (registers the schema and resolvers)
    from tinyfw.artefacts.gd import ensure_gd_student

    home = tmp_path / "home"
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose("config", overrides=["stage=task", "experiment=smoke", f"home={home}",
                                           "general.train.max_steps=4"])
    path = ensure_gd_student(cfg, home)
    assert (path / "config.json").exists() and (path.parent / "projections.pt").exists()
    assert not (home / "cache" / "gd-work").exists() or not any((home / "cache" / "gd-work").iterdir())
    AutoModel.from_pretrained(path)
    stamp = (path / "config.json").stat().st_mtime_ns
    assert ensure_gd_student(cfg, home) == path  # cached: not retrained
    assert (path / "config.json").stat().st_mtime_ns == stamp


def _stamps(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_resume_with_another_config_is_refused_and_the_cache_untouched(tmp_path):
    """The issue's case: a finished GD run, re-run in the same dir with the attention loss off."""
    home, run_dir = tmp_path / "home", tmp_path / "run"
    base = ("general.train.max_steps=8", "general.train.save_every=4")
    first = run_general(run_dir, home, *base)
    assert first["status"] == "ok" and first["metrics"]["resumed_from"] is None
    gd_cache = home / "cache" / "gd-student"
    before, student_before = _stamps(gd_cache), _stamps(run_dir / "student")
    console: list = []
    result = (run_dir / "result.json").read_bytes()
    bad = run_general(run_dir, home, *base, "distill.weights.attn=0", console=console, refused=True)
    assert bad["status"] == "refused" and bad["error"].startswith("ResumeError: GD: ")
    assert (run_dir / "result.json").read_bytes() == result  # the finished run's record stays as it was
    assert "distill.weights.attn: 1.0 -> 0.0" in bad["error"]
    assert "hydra.run.dir" in bad["error"] and "resume=false" in bad["error"]
    assert "Traceback" not in console[0] and console[0].count("distill.weights.attn: 1.0 -> 0.0") == 1
    assert _stamps(gd_cache) == before and _stamps(run_dir / "student") == student_before  # nothing written
    # a width change: the same refusal, naming the key, instead of a state_dict size mismatch
    wide = run_general(run_dir, home, *base, "student.shape.hidden_size=48", refused=True)
    assert wide["status"] == "refused" and "student.shape.hidden_size: 32 -> 48" in wide["error"]
    lr = run_general(run_dir, home, *base, "general.train.lr=2e-3", refused=True)  # named by its config key
    assert lr["status"] == "refused" and "general.train.lr: 0.001 -> 0.002" in lr["error"]
    assert _stamps(gd_cache) == before
    # the explicit restart trains the new configuration from scratch and caches it under its own key
    fresh = run_general(run_dir, home, *base, "distill.weights.attn=0", "resume=false")
    assert fresh["status"] == "ok" and fresh["metrics"]["resumed_from"] is None and fresh["metrics"]["steps"] == 8
    entries = [p for p in gd_cache.iterdir() if p.is_dir()]
    new = [p for p in entries if f"{p.name}/key.json" not in before]
    assert len(entries) == 2 and len(new) == 1
    assert json.loads((new[0] / "key.json").read_text())["distill"]["weights"]["attn"] == 0.0
    assert all(gd_cache.joinpath(k).stat().st_mtime_ns == t for k, t in before.items())  # the old entry kept


def _teacher_with_vocab(d: Path, tokens: list) -> Path:
    """A small pre-trained-looking teacher (BertModel) saved with its own WordPiece vocabulary."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d.mkdir(parents=True)
    (d / "vocab.txt").write_text("\n".join(tokens) + "\n")
    BertTokenizerFast(vocab=str(d / "vocab.txt"), do_lower_case=True).save_pretrained(d)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokens), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=128)).save_pretrained(d)
    return d


def test_a_tokenizer_that_is_not_the_teachers_is_refused_before_training(tmp_path):
    """`teacher=<real model> teacher.tokenizer=tiny`: refused before any training, whether the
    vocabulary sizes differ (the issue's MiniLM case) or not."""
    from conftest import run_tinyfw
    from tinyfw.models.load import tiny_vocab

    tiny = tiny_vocab()
    bigger = _teacher_with_vocab(tmp_path / "bigger", tiny + [f"w{i}" for i in range(300)])
    same_size = _teacher_with_vocab(tmp_path / "same-size", tiny[:5] + tiny[5:][::-1])  # same specials, other ids
    for teacher, why in ((bigger, f"it has {len(tiny)} tokens, the model's vocabulary {len(tiny) + 300}"),
                         (same_size, "its vocabulary differs from the one saved with the model")):
        run_dir = tmp_path / f"run-{teacher.name}"
        r = run_tinyfw("stage=general", "experiment=smoke", f"teacher.name_or_path={teacher}", "teacher.tokenizer=tiny",
                       run_dir=run_dir, home=tmp_path / "home", expect_ok=False)
        assert r["status"] == "failed" and "the tokenizer is not teacher" in r["error"] and why in r["error"]
        assert "teacher.tokenizer=''" in r["error"]
        assert not (run_dir / "checkpoints").exists() and not (tmp_path / "home" / "cache" / "gd-student").exists()
    # the teacher's own tokenizer passes the same check
    ok = run_tinyfw("stage=general", "experiment=smoke", f"teacher.name_or_path={same_size}", "teacher.tokenizer=''",
                    "general.train.max_steps=2",
                    run_dir=tmp_path / "run-ok", home=tmp_path / "home")
    assert ok["metrics"]["steps"] == 2
