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


def run_general(run_dir: Path, home: Path, *overrides: str) -> dict:
    env = {**os.environ, "WANDB_MODE": "disabled", "TINYFW_HOME": str(home)}
    cmd = [sys.executable, "-m", "tinyfw", "stage=general", "experiment=smoke",
           f"hydra.run.dir={run_dir}", f"home={home}", *overrides]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    res = run_dir / "result.json"
    assert res.exists(), proc.stderr[-3000:]
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
    from tinyfw.stages.general import ensure_gd_student

    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "tinyfw" / "conf")):
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
    from tinyfw.stages.general import ensure_gd_student

    home = tmp_path / "home"
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "tinyfw" / "conf")):
        cfg = compose("config", overrides=["stage=task", "experiment=smoke", f"home={home}",
                                           "general.train.max_steps=4"])
    path = ensure_gd_student(cfg, home)
    assert (path / "config.json").exists() and (path.parent / "projections.pt").exists()
    assert not (home / "cache" / "gd-work").exists() or not any((home / "cache" / "gd-work").iterdir())
    AutoModel.from_pretrained(path)
    stamp = (path / "config.json").stat().st_mtime_ns
    assert ensure_gd_student(cfg, home) == path  # cached: not retrained
    assert (path / "config.json").stat().st_mtime_ns == stamp
