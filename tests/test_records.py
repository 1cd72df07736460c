"""Records and caches never end up wrong (README "Re-running and resuming"): a refused re-run
leaves the run it was refused in byte for byte as it was; a finished task run keeps its
fingerprint, refuses a changed setting and returns at once for the same command; a cache key
that depends on a task file depends on its content."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hydra import compose, initialize_config_dir

import tinyfw.__main__ as entry
from conftest import run_tinyfw
from kwtask import kw_overrides, write_kw_task

RECORD = ("result.json", ".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/hydra.yaml")


def _bytes(run: Path) -> dict:
    return {p: (run / p).read_bytes() for p in RECORD}


def _refusal(run: Path) -> dict:
    found = sorted(run.glob("refused-*.json"))
    assert len(found) == 1, f"expected one refusal record in {run}, found {found}"
    return json.loads(found[0].read_text())


def test_a_refused_rerun_leaves_the_finished_run_as_it_was(tmp_path, shared_home):
    run = tmp_path / "run"
    first = run_tinyfw("stage=general", "experiment=smoke", "general.train.max_steps=4", run_dir=run, home=shared_home)
    before = _bytes(run)
    again = run_tinyfw("stage=general", "experiment=smoke", "general.train.max_steps=4", "distill.weights.attn=0",
                       run_dir=run, home=shared_home, expect_ok=False)
    assert again == first and again["status"] == "ok"  # result.json still the finished run's
    assert _bytes(run) == before  # ... and so is its .hydra/ record, byte for byte
    refused = _refusal(run)  # the refusal went to its own record beside them
    assert refused["status"] == "refused" and "distill.weights.attn: 1.0 -> 0.0" in refused["error"]
    assert "resume=false" in refused["error"] and refused["config"]["distill"]["weights"]["attn"] == 0.0
    assert "distill.weights.attn=0" in refused["overrides"]
    for f in run.glob("refused-*.json"):
        f.unlink()
    bad = run_tinyfw("stage=general", "experiment=smoke", "general.train.batch_size=0", run_dir=run,
                     home=shared_home, expect_ok=False)  # bad input next to a finished run: the same
    assert bad == first and _bytes(run) == before and "batch_size=0" in _refusal(run)["error"]


def _task_args(kw_root: Path) -> list:
    return ["stage=task", "gd=off", "augment=off", *kw_overrides(kw_root), "task_distill.step2.epochs=1",
            "teacher_ft.train.epochs=1"]


def test_a_finished_task_run_refuses_a_changed_setting_and_returns_at_once_for_the_same(tmp_path, shared_home):
    kw = write_kw_task(tmp_path / "kw", n_train=48, n_eval=16)
    run = tmp_path / "run"
    args = _task_args(kw)
    first = run_tinyfw(*args, run_dir=run, home=shared_home)
    assert not (run / "step2" / "checkpoints").exists()  # a finished task run keeps no checkpoints ...
    before, log_before = _bytes(run), (run / "__main__.log").read_text()
    again = run_tinyfw(*args, "task_distill.step2.lr=1e-3", run_dir=run, home=shared_home, expect_ok=False)
    assert again == first and _bytes(run) == before  # ... yet a changed setting is refused, not relabelled
    refused = _refusal(run)
    assert "task_distill.step2.lr: 0.005 -> 0.001" in refused["error"]
    assert "another training" in refused["error"] and "resume=false" in refused["error"]
    same = run_tinyfw(*args, run_dir=run, home=shared_home)  # the same command returns at once
    assert same == first and _bytes(run) == before
    log_after = (run / "__main__.log").read_text()[len(log_before):]
    assert "TD step 2" not in log_after and "already finished" in log_after  # no training again
    assert not (run / "step2" / "checkpoints").exists()


def test_an_edited_task_file_rebuilds_the_teacher(tmp_path, shared_home):
    kw = write_kw_task(tmp_path / "kw", n_train=32, n_eval=16)
    args = ["stage=teacher", *kw_overrides(kw), "teacher_ft.train.epochs=1"]
    assert run_tinyfw(*args, run_dir=tmp_path / "a", home=shared_home)["metrics"]["cached"] is False
    assert run_tinyfw(*args, run_dir=tmp_path / "b", home=shared_home)["metrics"]["cached"] is True
    train = kw / "train.csv"
    stat = train.stat()
    flipped = train.read_bytes().replace(b",pos", b",tmp").replace(b",neg", b",pos").replace(b",tmp", b",neg")
    train.write_bytes(flipped)  # labels flipped in place: same size; the same mtime (an edit within a second)
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert train.stat().st_size == stat.st_size
    assert run_tinyfw(*args, run_dir=tmp_path / "c", home=shared_home)["metrics"]["cached"] is False


def test_registry_task_keys_are_unchanged_and_custom_keys_hold_the_files_content(tmp_path):
    from tinyfw.artefacts.teacher import key_parts as cache_key
    from tinyfw.cache import key_of

    with initialize_config_dir(config_dir=str(entry.CONF_DIR), version_base="1.3"):
        smoke = compose(config_name="config", overrides=["experiment=smoke"])
        mr = compose(config_name="config", overrides=["task=mr"])
        kw = write_kw_task(tmp_path / "kw", n_train=8, n_eval=4)
        custom = compose(config_name="config", overrides=kw_overrides(kw))
    # as before task files entered keys, less the cadence (log_every, save_every, num_workers)
    # that issue 22 item 7 took out of the teacher's key (before: 9c0634ee7daba7a0, 720e7d0ebadef89c)
    assert key_of(cache_key(smoke)) == "aff4e03fa8766f67"
    assert key_of(cache_key(mr)) == "daa0edbd60777d29"
    key = cache_key(custom)
    assert set(key["task_files"]) == {"train", "validation", "test"}
    (kw / "dev.csv").write_text((kw / "dev.csv").read_text() + "one more film,pos\n")
    assert cache_key(custom)["task_files"]["validation"] != key["task_files"]["validation"]
