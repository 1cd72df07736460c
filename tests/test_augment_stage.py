"""stage=augment: cached, resumable, labelled augmented split; ensure_augmented for stage=task."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import run_tinyfw, save_tiny_mlm
from tinyfw.config import Config


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory) -> Path:
    return save_tiny_mlm(tmp_path_factory.mktemp("mlm"))


def _cfg(mlm_dir: Path, **aug):
    cfg = OmegaConf.structured(Config)
    cfg.augmenter.mlm = str(mlm_dir)
    cfg.augmenter.vectors = "smoke"
    cfg.augmenter.update({"n_aug": 4, "top_k": 3, "shard_size": 3, **aug})
    return cfg


def _pairs():
    from datasets import Dataset

    a = ["the film was good", "a boring plot", "great acting and a fun story", "the worst movie",
         "i love this comedy", "never funny"]
    b = ["it was fun", "the story is thin", "very good", "nothing works", "the director did well", "too long"]
    return Dataset.from_dict({"sentence1": a, "sentence2": b, "label": [1, 0, 1, 0, 1, 0], "idx": list(range(6))})


def interrupted_after_one_shard(cfg, home, ds, monkeypatch) -> None:
    """A build killed in its second shard: no cache entry, one finished shard in the work dir."""
    from tinyfw.artefacts import augmented as stage

    real = stage._augment_rows
    calls = {"n": 0}

    def flaky(aug, part, cols, start):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real(aug, part, cols, start)

    monkeypatch.setattr(stage, "_augment_rows", flaky)
    with pytest.raises(KeyboardInterrupt):
        stage.ensure_augmented(cfg, home, ds)
    monkeypatch.setattr(stage, "_augment_rows", real)


def test_ensure_augmented_pairs_labels_cache_and_resume(mlm_dir, tmp_path, monkeypatch):
    from tinyfw.artefacts import augmented as stage

    ds = _pairs()
    cfg = _cfg(mlm_dir)
    home = tmp_path / "home"
    interrupted_after_one_shard(cfg, home, ds, monkeypatch)
    assert not [p for p in (home / "cache" / "augmented").iterdir() if p.is_dir()]
    entry, hit = stage.ensure_augmented_entry(cfg, home, ds)
    assert not hit
    import json

    stats = json.loads((entry / "stats.json").read_text())
    assert stats["resumed_shards"] == 1 and stats["shards"] == 2 and stats["inputs"] == 6
    out = stage.ensure_augmented(cfg, home, ds)
    assert stage.ensure_augmented_entry(cfg, home, ds) == (entry, True)  # cache hit

    # same result as an uninterrupted build elsewhere (deterministic, shard-independent)
    fresh = stage.ensure_augmented(_cfg(mlm_dir, shard_size=100, batch_size=2), tmp_path / "home2", ds)
    assert fresh.to_list() == out.to_list()

    assert set(out.column_names) == {"sentence1", "sentence2", "label", "idx", "source_row", "is_original"}
    assert len(out) == stats["outputs"] > 6 and sum(out["is_original"]) == 6
    for r in out:
        src = ds[r["source_row"]]
        assert r["label"] == src["label"] and r["idx"] == src["idx"]
        if r["is_original"]:
            assert (r["sentence1"], r["sentence2"]) == (src["sentence1"], src["sentence2"])
        else:  # one side changed at a time
            assert (r["sentence1"] == src["sentence1"]) != (r["sentence2"] == src["sentence2"])

    # a different setting is a different entry
    other, hit = stage.ensure_augmented_entry(_cfg(mlm_dir, seed=7), home, ds)
    assert other != entry and not hit


def test_resume_logs_shards_refuses_another_shard_size_and_reports_a_late_cache_hit(mlm_dir, tmp_path,
                                                                                   monkeypatch, caplog):
    import json
    import logging

    from tinyfw import cache
    from tinyfw.artefacts import augmented as stage

    ds, home = _pairs(), tmp_path / "home"
    interrupted_after_one_shard(_cfg(mlm_dir), home, ds, monkeypatch)  # one of two shards done (shard_size 3)
    # the finished shard holds rows 0-2: another shard size would mis-assemble them
    with pytest.raises(ValueError, match=r"unfinished work made with other settings \(augmenter\.shard_size: 3 -> 2\).*"
                                         r"resume=false"):
        stage.ensure_augmented_entry(_cfg(mlm_dir, shard_size=2), home, ds)
    with caplog.at_level(logging.INFO, logger="tinyfw.augment"):
        entry, hit = stage.ensure_augmented_entry(_cfg(mlm_dir), home, ds)
    assert not hit and "1 of 2 shards already done" in caplog.text
    assert json.loads((entry / "stats.json").read_text())["resumed_shards"] == 1
    # resume=false discards unfinished work instead of resuming it
    interrupted_after_one_shard(_cfg(mlm_dir, seed=3), home, ds, monkeypatch)
    restart = _cfg(mlm_dir, seed=3, shard_size=2)
    restart.resume = False
    e3, _ = stage.ensure_augmented_entry(restart, home, ds)
    assert json.loads((e3 / "stats.json").read_text())["resumed_shards"] == 0
    # an entry that appears after the presence check (another job built it meanwhile) is a hit
    monkeypatch.setattr(cache, "present", lambda final: False)
    info: dict = {}
    assert stage.ensure_augmented_entry(_cfg(mlm_dir), home, ds, info=info) == (entry, True)
    assert info["resumed_shards"] == 0 and info["waited_s"] >= 0


def test_missing_vectors_and_bad_columns(mlm_dir, tmp_path):
    from datasets import Dataset

    from tinyfw.artefacts import augmented as stage

    ds = _pairs()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        stage.ensure_augmented(_cfg(mlm_dir, vectors=str(tmp_path / "none.kv")), tmp_path / "h", ds)
    three = Dataset.from_dict({"a": ["x"], "b": ["y"], "c": ["z"], "label": [0]})
    with pytest.raises(ValueError, match="one or two text columns"):
        stage.ensure_augmented(_cfg(mlm_dir), tmp_path / "h", three)


@pytest.mark.slow
def test_stage_augment_smoke(tmp_path, shared_home):
    rec = run_tinyfw("stage=augment", "experiment=smoke", run_dir=tmp_path / "run", home=shared_home)
    m = rec["metrics"]
    assert m["inputs"] == 16 and m["originals"] == 16 and 16 < m["outputs"] <= 16 * 4
    assert m["sentences_per_s"] > 0 and m["candidates"]["eligible"] > 0 and m["candidates"]["mlm_words"] > 0
    assert not m["cache_hit"]
    from datasets import load_from_disk

    ds = load_from_disk(rec["outputs"]["dataset"])
    assert len(ds) == m["outputs"] and {"text", "label", "source_row", "is_original"} <= set(ds.column_names)
    again = run_tinyfw("stage=augment", "experiment=smoke", run_dir=tmp_path / "run2", home=shared_home)
    assert again["metrics"]["cache_hit"] and again["outputs"] == rec["outputs"]
    # the build's timings are the builder's: kept apart, not reported as this run's own
    assert "seconds" not in again["metrics"] and "sentences_per_s" not in again["metrics"]
    assert again["metrics"]["build"]["seconds"] == m["seconds"] and again["metrics"]["outputs"] == m["outputs"]
