"""One shape per artefact (issue 22 item 7): every artefact's cache key and resume fingerprint
come from its ``key_parts`` through one normaliser (``artefacts.keys.settings``), so cadence
(how often a job logs, saves, loads) enters none of them, while a real setting changes the key
of what it shapes and the fingerprint names it by config key."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Dict

import pytest
from hydra import compose, initialize_config_dir

import tinyfw.__main__ as entry
from tinyfw.artefacts import augmented, gd, mlm, task_distill, teacher
from tinyfw.cache import key_of
from tinyfw.fingerprint import differences
from tinyfw.models.start import Origin, StartPoint

# the augmenter's window is switched off so that no tokenizer is loaded (its part: tests/test_augment_tokens.py)
BASE = ("stage=task", "experiment=smoke", "augmenter.window=false")


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(entry.CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=[*BASE, *overrides])


def _step1(cfg) -> Dict:
    student = SimpleNamespace(config=SimpleNamespace(num_hidden_layers=1, hidden_size=32, intermediate_size=64,
                                                     num_attention_heads=4, num_labels=2, vocab_size=99))
    enc = type("E", (), {"column_names": ["input_ids"], "__getitem__": lambda self, k: [[1, 2]],
                         "__len__": lambda self: 1})()
    return task_distill.step1_key_parts(cfg, Path("/t"), StartPoint(Origin.random, None), enc, [1], student,
                                        cfg.task_distill.step1, "fp32")


def keys(home: Path, *overrides: str) -> Dict[str, str]:
    """Every artefact's cache key (and the task run's fingerprint's) for the smoke config."""
    from datasets import Dataset

    cfg = _cfg(*overrides)
    ds = Dataset.from_dict({"text": ["a good film", "a bad film"], "label": [1, 0]})
    return {
        "teacher": key_of(teacher.key_parts(cfg, home)),
        "gd-student": key_of(gd.key_parts(cfg, home)),
        "mlm": key_of(mlm.key_parts(cfg, home)),
        "augmented": key_of(augmented.key_parts(cfg, home, ds, ["text"])),
        "td-step1": key_of(_step1(cfg)),
        "task run": key_of(task_distill.fingerprint(cfg, home)),
    }


CADENCE = ["teacher_ft.train.log_every=1", "teacher_ft.train.save_every=3", "teacher_ft.train.num_workers=1",
           "general.train.save_every=7", "general.train.log_every=2", "mlm.train.log_every=1",
           "task_distill.step1.save_every=5", "task_distill.step2.log_every=1", "corpus.num_proc=2"]


@pytest.mark.parametrize("override", CADENCE)
def test_cadence_changes_no_key_nor_fingerprint(tmp_path, override):
    base = keys(tmp_path)
    assert keys(tmp_path, override) == base
    assert differences(task_distill.fingerprint(_cfg(), tmp_path), task_distill.fingerprint(_cfg(override), tmp_path)) == []


def test_step2_eval_every_changes_no_cache_key(tmp_path):
    """TD step 2's eval_every enters no cached artefact's key; the task run's fingerprint keeps it,
    as the teacher's key keeps ``teacher_ft.train.eval_every``: there the dev evals pick the kept
    weights (restore_best), so it changes what the run ends with."""
    base = keys(tmp_path)
    changed = keys(tmp_path, "task_distill.step2.eval_every=3")
    assert {k: v for k, v in changed.items() if k != "task run"} == {k: v for k, v in base.items() if k != "task run"}
    assert differences(task_distill.fingerprint(_cfg(), tmp_path),
                       task_distill.fingerprint(_cfg("task_distill.step2.eval_every=3"), tmp_path)) == [
        "task_distill.step2.eval_every: 0 -> 3"]
    assert keys(tmp_path, "teacher_ft.train.eval_every=3")["teacher"] != base["teacher"]


@pytest.mark.parametrize("override, changed, named", [
    ("teacher_ft.train.lr=2e-3", {"teacher", "task run"}, "teacher_ft.train.lr: 0.001 -> 0.002"),
    ("general.train.lr=2e-3", {"gd-student", "task run"}, "general.train.lr: 0.001 -> 0.002"),
    # the augmented set is keyed by the masked LM it asks (augmenter.mlm=mlm)
    ("mlm.train.lr=2e-3", {"mlm", "augmented", "task run"}, "mlm.train.lr: 0.001 -> 0.002"),
    ("task_distill.step1.lr=2e-3", {"td-step1", "task run"}, "task_distill.step1.lr: 0.001 -> 0.002"),
    ("task_distill.step2.lr=2e-3", {"task run"}, "task_distill.step2.lr: 0.001 -> 0.002"),
])
def test_a_real_setting_changes_the_key_of_what_it_shapes(tmp_path, override, changed, named):
    base, new = keys(tmp_path), keys(tmp_path, override)
    assert {k for k in base if base[k] != new[k]} == changed
    assert differences(task_distill.fingerprint(_cfg(), tmp_path), task_distill.fingerprint(_cfg(override), tmp_path)) == [named]


@pytest.mark.parametrize("module, override, named", [
    (teacher, "teacher_ft.train.lr=2e-3", "teacher_ft.train.lr: 0.001 -> 0.002"),
    (gd, "general.train.lr=2e-3", "general.train.lr: 0.001 -> 0.002"),
    (mlm, "mlm.train.lr=2e-3", "mlm.train.lr: 0.001 -> 0.002"),
])
def test_a_trainings_fingerprint_is_its_key_named_by_config_key(tmp_path, module, override, named):
    """The resume fingerprint holds exactly the cache key's parts: equal fingerprints, equal keys."""
    cfg, other = _cfg(), _cfg(override)
    fp = module.fingerprint(cfg, tmp_path)
    parts = module.key_parts(cfg, tmp_path)
    assert list(fp.values()) == list(parts.values()) and set(fp) == {module.CONFIG_NAMES.get(k, k) for k in parts}
    assert differences(fp, module.fingerprint(other, tmp_path)) == [named]
    assert differences(fp, module.fingerprint(_cfg(*CADENCE), tmp_path)) == []


def test_a_record_written_with_cadence_still_compares_equal():
    """Checkpoints and finished.json written before the teacher's cadence left its key still match."""
    old = {"teacher_ft.train": {"lr": 1e-3, "log_every": 10, "save_every": 0, "num_workers": 0}, "seed": 1}
    assert differences(old, {"teacher_ft.train": {"lr": 1e-3}, "seed": 1}) == []
    assert differences(old, {"teacher_ft.train": {"lr": 2e-3}, "seed": 1}) == ["teacher_ft.train.lr: 0.001 -> 0.002"]


def test_step1_key_reads_the_typed_start_point(tmp_path):
    """TD step 1's key holds the start point as it did when it parsed "gd:<path>": the origin as
    ``kind`` and, for a GD student, that model's identity (its path and weights' mtime), else the
    origin again; the default path's key is pinned."""
    gd_dir = tmp_path / "gd"
    gd_dir.mkdir()
    (gd_dir / "model.safetensors").write_bytes(b"w")
    cfg = _cfg()
    enc = type("E", (), {"column_names": ["input_ids"], "__getitem__": lambda self, k: [[1, 2]],
                         "__len__": lambda self: 1})()
    student = SimpleNamespace(config=SimpleNamespace(num_hidden_layers=1, hidden_size=32, intermediate_size=64,
                                                     num_attention_heads=4, num_labels=2, vocab_size=99))

    def init(start):
        return task_distill.step1_key_parts(cfg, Path("/t"), start, enc, [1], student, cfg.task_distill.step1,
                                            "fp32")["init"]

    assert init(StartPoint(Origin.random, None)) == {"kind": "random", "model": "random"}
    assert init(StartPoint(Origin.teacher_layers, None)) == {"kind": "teacher_layers", "model": "teacher_layers"}
    mtime = (gd_dir / "model.safetensors").stat().st_mtime_ns
    assert init(StartPoint(Origin.gd, None, str(gd_dir))) == {"kind": "gd", "model": f"{gd_dir.resolve()}:{mtime}"}
    assert key_of(_step1(cfg)) == "cdd5d8638a55deab"  # as before the typed start point
