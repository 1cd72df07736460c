"""Bad input is refused early, in one line naming the problem and the fix (README: "Bad input").

Config: keys the schema does not know (even with Hydra's ``+``), invalid training settings,
an experiment preset that must not replace a group the user chose. Data files: not UTF-8, a
TSV named ``.csv``, a 0-byte corpus file. The home: not writable, full. The console shows one
line and no traceback; result.json and the log file keep the traceback.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import tinyfw.__main__ as entry
from tinyfw.config import ConfigError, TaskCfg, validate
from tinyfw.data.corpus import CorpusError, load_corpus
from tinyfw.data.tasks import TaskDataError, load_task

from conftest import run_tinyfw

ROOT = Path(__file__).resolve().parent.parent


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(entry.CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def _cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "TINYFW_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    cmd = [sys.executable, "-m", "tinyfw", *overrides, f"hydra.run.dir={tmp_path / 'run'}"]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_plus_key_unknown_to_the_schema_is_refused_naming_the_nearest_key():
    cfg = _compose("stage=general", "experiment=smoke", "+distill.weigths.attn=0")
    assert cfg.distill.weigths.attn == 0  # Hydra's `+` let it in past the schema ...
    with pytest.raises(ConfigError, match=r"unknown config key distill\.weigths\.attn \(did you mean "
                                          r"distill\.weights\.attn\?\)"):
        validate(cfg)  # ... the runner refuses it before any stage work
    with pytest.raises(ConfigError, match="unknown config key bogus"):
        validate(_compose("+bogus=1"))
    validate(_compose("stage=task", "task=custom", "+task.files.extra=x.csv"))  # a Dict field takes any key


@pytest.mark.parametrize("override,message", [
    ("general.train.batch_size=0", "general.train.batch_size=0: must be >= 1"),
    ("task_distill.step2.lr=-1e-4", "task_distill.step2.lr=-0.0001: must be a positive number"),
    ("mlm.train.warmup_ratio=2", "mlm.train.warmup_ratio=2.0: must be between 0 and 1"),
    ("teacher_ft.train.grad_accum=0", "teacher_ft.train.grad_accum=0: must be >= 1"),
])
def test_invalid_training_settings_are_refused_at_composition(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("+", r"\+")):
        validate(_compose("stage=general", override))


@pytest.mark.parametrize("override,choices", [
    ("distill.attn_mode=maskd", "masked, reference"),
    ("task_distill.gd_off_init=teacher", "random, teacher_layers"),
    ("bench.attn=flash", "sdpa, eager"),
    ("augmenter.precision=fp8", "auto, fp32, bf16, fp16"),
    ("logging.wandb.mode=of", "online, offline, disabled"),
])
def test_a_typo_in_a_choice_fails_at_composition_naming_the_choices(override, choices):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as err:
        _compose(override)
    assert f"expected one of [{choices}]" in str(err.value.__cause__)


def test_console_gets_one_line_and_result_json_the_traceback(tmp_path):
    p = _cli(tmp_path, "stage=general", "experiment=smoke", "general.train.batch_size=0")
    assert p.returncode == 1
    assert "Traceback" not in p.stderr + p.stdout
    lines = [ln for ln in (p.stderr + p.stdout).splitlines() if "batch_size=0" in ln]
    assert len(lines) == 1 and "must be >= 1" in lines[0]
    rec = json.loads((tmp_path / "run" / "result.json").read_text())
    assert rec["status"] == "failed" and "general.train.batch_size=0" in rec["error"]
    assert "Traceback" in rec["traceback"] and "ConfigError" in rec["traceback"]
    assert "Traceback" in (tmp_path / "run" / "__main__.log").read_text()
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before any training


def test_experiment_smoke_keeps_the_task_the_user_chose(tmp_path):
    cfg = _compose("task=custom", "experiment=smoke")
    assert cfg.task.name == "custom" and cfg.teacher.name_or_path == "random"
    assert _compose("experiment=smoke").task.name == "smoke"
    assert _compose("experiment=smoke", "corpus=wikipedia").corpus.source == "wikimedia/wikipedia"
    # task.labels=[] then infers the labels from the training file, as documented
    rows = "text,label\n" + "".join(f"{w} film,{lab}\n" for w, lab in (("good", "yes"), ("bad", "no")) * 4)
    for split in ("train", "dev"):
        (tmp_path / f"{split}.csv").write_text(rows)
    cfg = _compose("task=custom", "experiment=smoke", "task.labels=[]", f"task.files.train={tmp_path / 'train.csv'}",
                   f"task.files.validation={tmp_path / 'dev.csv'}", "~task.files.test")
    task = load_task(cfg.task, tmp_path)
    assert task.name == "custom" and task.label_names == ["no", "yes"]


def _task_cfg(path: Path, **kw):
    return OmegaConf.structured(TaskCfg(name="custom", files={"train": str(path), "validation": str(path)},
                                        text_columns=["text"], labels=["neg", "pos"], **kw))


def test_custom_task_file_not_utf8_or_tsv_named_csv_is_named(tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncafé good,pos\nbad,neg\n".encode("latin-1"))
    with pytest.raises(TaskDataError, match=r"latin\.csv is not UTF-8 text \(at byte offset 14\).*iconv"):
        load_task(_task_cfg(latin), tmp_path)
    late = tmp_path / "late.csv"  # the bad byte past the sniffed head: found when datasets fails
    late.write_bytes(b"text,label\n" + b"fine,pos\n" * 120_000 + "caf\xe9,neg\n".encode("latin-1"))
    with pytest.raises(TaskDataError, match=r"late\.csv is not UTF-8 text \(at byte offset 1080014\)"):
        load_task(_task_cfg(late), tmp_path)
    tsv = tmp_path / "train.csv"
    tsv.write_text("text\tlabel\nhello, world\tpos\nbad, bad film\tneg\n")
    with pytest.raises(TaskDataError, match=r"train\.csv looks tab-separated .* rename it to \.tsv"):
        load_task(_task_cfg(tsv), tmp_path)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(TaskDataError, match=r"empty\.csv is empty \(0 bytes\)"):
        load_task(_task_cfg(empty), tmp_path)


def test_zero_byte_or_non_utf8_corpus_file_is_named(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(CorpusError, match=r"corpus file .*empty\.txt is empty \(0 bytes\).*corpus\.source="):
        load_corpus(str(empty), tmp_path)
    good = tmp_path / "d" / "a.txt"
    good.parent.mkdir()
    good.write_text("some text here\n")
    (tmp_path / "d" / "b.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"b\.txt is not UTF-8 text \(at byte offset 3\)"):
        load_corpus(str(good.parent), tmp_path)


def test_home_that_cannot_be_written_is_named(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    rec = run_tinyfw("stage=general", "experiment=smoke", run_dir=tmp_path / "run", home=blocker / "home",
                     expect_ok=False)
    assert rec["status"] == "failed"
    assert f"TINYFW_HOME={blocker / 'home'} is not writable" in rec["error"] and "set TINYFW_HOME" in rec["error"]
    if os.geteuid() != 0:  # root writes into a read-only directory anyway
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        rec = run_tinyfw("stage=general", "experiment=smoke", run_dir=tmp_path / "run2", home=ro, expect_ok=False)
        assert f"TINYFW_HOME={ro} is not writable (Permission denied)" in rec["error"]


def test_disk_full_while_writing_the_cache_names_tinyfw_home(tmp_path, monkeypatch):
    """A full disk mid-stage (the write probe passed): the failing write's real OSError is named."""
    from tinyfw import cache

    real = cache.atomic_write_json

    def full(path, obj):
        if "key.json" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, obj)

    monkeypatch.setattr(cache, "atomic_write_json", full)
    home = tmp_path / "home"
    rec = run_tinyfw("stage=general", "experiment=smoke", "general.train.max_steps=2", run_dir=tmp_path / "run",
                     home=home, expect_ok=False)
    assert "No space left on device" in rec["error"] and f"$TINYFW_HOME ({home.resolve()})" in rec["error"]
    assert "set TINYFW_HOME" in rec["error"]
    assert not list((home / "cache").rglob("key.json"))  # the failed build left no entry ...
    assert not list((home / "cache").glob("*/.*.tmp-*"))  # ... and no half-written one


# --------------------------------------------------------------------------------------
# issue 22: silently accepted or unclear before (each refused in one line now)


def _csv(path: Path, rows) -> Path:
    import csv

    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def test_custom_task_with_an_empty_text_cell_is_refused_naming_the_row(tmp_path):
    train = _csv(tmp_path / "train.csv", [("good film", "pos"), ("", "neg"), ("bad film", "neg")])
    with pytest.raises(TaskDataError, match=r"train\.csv line 3: empty text in column 'text' \(task\.text_columns\)"
                                            r".*fill it in or remove the row"):
        load_task(_task_cfg(train), tmp_path)


def test_train_split_missing_a_declared_class_or_holding_one_class_is_refused(tmp_path):
    train = _csv(tmp_path / "train.csv", [("good film", "pos"), ("great film", "pos")])
    with pytest.raises(TaskDataError, match=r"train\.csv holds no row of class 'neg' \(task\.labels = \['neg', "
                                            r"'pos'\]\)"):
        load_task(_task_cfg(train), tmp_path)
    inferred = OmegaConf.merge(_task_cfg(train), {"labels": []})
    with pytest.raises(TaskDataError, match=r"one class \('pos'\).*train\.csv.*at least two"):
        load_task(inferred, tmp_path)  # inferred from a one-class file: not a classification task


def test_custom_task_infers_its_labels_by_default(tmp_path, caplog):
    rows = [(f"{w} news", w) for w in ("sport", "politics", "tech")] * 3
    for split in ("train", "dev"):
        _csv(tmp_path / f"{split}.csv", rows)
    cfg = _compose("task=custom", "experiment=smoke", f"task.files.train={tmp_path / 'train.csv'}",
                   f"task.files.validation={tmp_path / 'dev.csv'}", "~task.files.test")
    assert list(cfg.task.labels) == []
    with caplog.at_level("INFO"):
        task = load_task(cfg.task, tmp_path)
    assert task.label_names == ["politics", "sport", "tech"] and "labels inferred" in caplog.text


def test_paper_preset_with_a_max_steps_override_is_refused(tmp_path, shared_home):
    rec = run_tinyfw("stage=info", "preset=paper", "experiment=smoke", "task_distill.step2.max_steps=50",
                     run_dir=tmp_path / "run", home=shared_home, expect_ok=False)
    assert rec["status"] == "failed"
    assert ("task_distill.step2.max_steps=50 has no effect: task_distill.budget=epochs counts epochs"
            in rec["error"]) and "task_distill.budget=steps" in rec["error"]
    ok = run_tinyfw("stage=info", "preset=paper", "experiment=smoke", "task_distill.budget=steps",
                    "task_distill.step2.max_steps=50", run_dir=tmp_path / "run2", home=shared_home)
    assert ok["status"] == "ok"


def test_teacher_directory_without_config_json_is_named(tmp_path, shared_home):
    empty = tmp_path / "teacher"
    empty.mkdir()
    (empty / "model.safetensors").write_bytes(b"")
    rec = run_tinyfw("stage=general", "experiment=smoke", f"teacher.name_or_path={empty}",
                     run_dir=tmp_path / "run", home=shared_home, expect_ok=False)
    assert f"teacher.name_or_path={empty} has no config.json" in rec["error"] and "save_pretrained" in rec["error"]
    rec = run_tinyfw("stage=task", "experiment=smoke", "gd=off", "augment=off", f"teacher_ft.path={empty}",
                     run_dir=tmp_path / "run2", home=shared_home, expect_ok=False)
    assert f"teacher_ft.path={empty} has no config.json" in rec["error"]


def test_truncated_checkpoint_on_resume_is_named_with_the_ways_out(tmp_path, shared_home):
    run = tmp_path / "run"
    args = ("stage=general", "experiment=smoke", "general.train.max_steps=4", "general.train.save_every=2")
    run_tinyfw(*args, run_dir=run, home=shared_home)
    broken = run / "checkpoints" / "step-4" / "model.safetensors"
    broken.write_bytes(broken.read_bytes()[:100])
    assert run_tinyfw(*args, run_dir=run, home=shared_home, expect_ok=False)["status"] == "ok"  # the finished run's
    (refused,) = run.glob("refused-*.json")  # the failed re-run's record, beside it
    rec = json.loads(refused.read_text())
    assert rec["status"] == "refused" and f"{broken} cannot be read" in rec["error"]
    assert "resume=false" in rec["error"] and f"remove {broken.parent} to resume from step-2" in rec["error"]


def test_read_only_run_directory_is_named_before_hydra_writes(tmp_path, shared_home, monkeypatch, capsys):
    import tempfile

    from hydra.core.global_hydra import GlobalHydra

    run = tmp_path / "run"
    run.mkdir()
    real = tempfile.mkstemp

    def refuse(*a, **kw):  # what the kernel answers in a read-only directory (root writes anyway)
        if Path(kw.get("dir") or "") == run:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(run))
        return real(*a, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.setattr(sys, "argv", ["tinyfw", "stage=general", "experiment=smoke", f"hydra.run.dir={run}",
                                      f"home={shared_home}", "logging.wandb.mode=disabled"])
    try:
        with pytest.raises(SystemExit) as ex:
            entry._hydra_main()
    finally:
        GlobalHydra.instance().clear()
    assert ex.value.code == 1
    err = capsys.readouterr().err
    line = [ln for ln in err.splitlines() if "hydra.run.dir" in ln]
    assert len(line) == 1 and f"run directory {run} is not writable (Permission denied)" in line[0]
    assert "Traceback" not in err and not list(run.iterdir())  # nothing written there


@pytest.mark.parametrize("fault", ["oserror", "safetensors"])
def test_disk_full_while_saving_the_model_names_the_path(tmp_path, shared_home, monkeypatch, fault):
    import transformers.modeling_utils as mu
    from safetensors import SafetensorError

    def full(*a, **kw):
        if fault == "oserror":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a write() fails: no file name
        raise SafetensorError('Error while serializing: I/O error: No space left on device (os error 28)')

    monkeypatch.setattr(mu, "safe_save_file", full)
    run = tmp_path / "run"
    rec = run_tinyfw("stage=general", "experiment=smoke", "general.train.max_steps=2", run_dir=run,
                     home=shared_home, expect_ok=False)
    assert f"cannot write {run / 'student'} (No space left on device)" in rec["error"]
    assert "hydra.run.dir" in rec["error"] and "TINYFW_HOME" in rec["error"]


def test_disk_full_while_copying_into_the_cache_names_tinyfw_home(tmp_path, monkeypatch):
    import shutil

    real = shutil.copyfile
    home = tmp_path / "home"

    def full(src, dst, *a, **kw):  # copytree gathers these into one shutil.Error (a list of them)
        if "gd-student" in str(dst):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(shutil, "copyfile", full)
    rec = run_tinyfw("stage=general", "experiment=smoke", "general.train.max_steps=2", run_dir=tmp_path / "run",
                     home=home, expect_ok=False)
    assert "No space left on device" in rec["error"] and str(home / "cache" / "gd-student") in rec["error"]
    assert f"$TINYFW_HOME ({home.resolve()})" in rec["error"] and "shutil" not in rec["error"]


def test_corpus_longer_than_the_position_embeddings_is_refused_at_start(tmp_path, shared_home):
    rec = run_tinyfw("stage=general", "experiment=smoke", "corpus.max_seq_len=1024", run_dir=tmp_path / "run",
                     home=shared_home, expect_ok=False)
    assert ("corpus.max_seq_len=1024 exceeds the teacher's max_position_embeddings (512)" in rec["error"]
            and "set corpus.max_seq_len <= 512" in rec["error"])
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_gd_checkpoint_pointing_nowhere_is_refused_before_any_work(tmp_path):
    home = tmp_path / "home"
    rec = run_tinyfw("stage=task", "experiment=smoke", "gd=on", f"task_distill.gd_checkpoint={tmp_path / 'nope'}",
                     run_dir=tmp_path / "run", home=home, expect_ok=False)
    assert f"task_distill.gd_checkpoint={tmp_path / 'nope'} does not exist" in rec["error"]
    assert not (home / "cache" / "teacher").exists()  # refused before the teacher was fine-tuned


def test_glue_task_with_no_hub_reachable_names_task_files(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled", "TINYFW_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env.pop("HYDRA_FULL_ERROR", None)
    cmd = [sys.executable, "-m", "tinyfw", "stage=teacher", "experiment=smoke", "task=sst2",
           f"hydra.run.dir={tmp_path / 'run'}"]
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = p.stderr + p.stdout
    assert p.returncode == 1 and "Traceback" not in out, out
    line = [ln for ln in out.splitlines() if "task.files" in ln]
    assert len(line) == 1 and "GLUE task 'sst2' comes from the hub (nyu-mll/glue)" in line[0]
