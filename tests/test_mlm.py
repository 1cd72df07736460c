"""stage=mlm: an encoder becomes a tied masked LM that learns on the corpus, cached for the augmenter."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_tinyfw


@pytest.mark.slow
def test_stage_mlm_smoke_lowers_loss_and_caches(tmp_path, shared_home):
    rec = run_tinyfw("stage=mlm", "experiment=smoke", run_dir=tmp_path / "run", home=shared_home)
    m = rec["metrics"]
    assert m["steps"] == 30
    assert m["train_loss_final"] < m["train_loss_initial"] - 0.3
    assert m["heldout_after"]["loss"] < m["heldout_before"]["loss"]
    assert m["heldout_before"]["masked_words"] == m["heldout_after"]["masked_words"] > 0
    assert any(k.startswith("cls.predictions.transform") for k in m["new_head_keys"])  # BertModel base: new head
    cached = Path(rec["outputs"]["cache"])
    assert (cached / "config.json").exists() and (cached.parent / "mlm_metrics.json").exists()

    from augment import load_masked_lm

    model, tok = load_masked_lm(str(cached))  # a complete masked LM now (no fresh head weights)
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()

    # augmenter.mlm=mlm resolves to the same entry without training again
    from omegaconf import OmegaConf

    from tinyfw.stages.mlm import ensure_mlm

    cfg = OmegaConf.create(rec["config"])
    assert ensure_mlm(cfg, shared_home) == cached
