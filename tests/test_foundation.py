"""Config composition, schema validation, run directories, result.json and wandb modes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

import tinyfw.__main__ as entry
from tinyfw import rundir
from tinyfw.config import Stage, Switch
from tinyfw.fsutil import atomic_dir, atomic_write_json
from tinyfw.stages import STAGES

from conftest import run_tinyfw

CONF = str(entry.CONF_DIR)


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def _groups():
    return {g.name: sorted(p.stem for p in g.glob("*.yaml")) for g in Path(CONF).iterdir()
            if g.is_dir() and g.name != "hydra"}


def test_every_stage_is_in_schema_and_registry():
    assert {s.value for s in Stage} == set(STAGES)


@pytest.mark.parametrize("stage", [s.value for s in Stage])
def test_compose_every_stage_with_smoke(stage):
    cfg = _compose(f"stage={stage}", "experiment=smoke")
    assert cfg.stage == Stage(stage)
    assert cfg.teacher.name_or_path == "random"  # smoke swaps in a tiny teacher


def test_compose_every_group_option():
    groups = _groups()
    assert {"teacher", "student", "corpus", "task", "experiment", "preset"} <= set(groups)
    # a group the root defaults list does not name (td_budget: pulled in by task files) is added with +
    root = {str(k).removeprefix("override ") for d in OmegaConf.load(Path(CONF) / "config.yaml").defaults
            if not isinstance(d, str) for k in d}
    for group, options in groups.items():
        for option in options:
            cfg = _compose(f"{'' if group in root else '+'}{group}={option}")
            OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


def test_schema_rejects_unknown_key_and_bad_values():
    with pytest.raises(ConfigCompositionException, match="bogus"):
        _compose("bogus=1")
    with pytest.raises(ConfigCompositionException) as err:
        _compose("stage=bogus")
    assert "general, mlm, augment, teacher, task, report" in str(err.value.__cause__)
    with pytest.raises(ConfigCompositionException) as err:
        _compose("gd=maybe")
    assert "expected one of [on, off]" in str(err.value.__cause__)
    with pytest.raises(ConfigCompositionException):
        _compose("general.train.lr=fast")  # typed: float
    with pytest.raises(ConfigCompositionException):
        _compose("student=tinybert5")  # unknown group option


def test_on_off_stay_strings():
    cfg = _compose("gd=off", "td=on", "augment=off")
    assert cfg.gd == Switch.off and cfg.td == Switch.on and cfg.augment == Switch.off
    plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert (plain["gd"], plain["td"], plain["augment"]) == ("off", "on", "off")
    yaml_text = OmegaConf.to_yaml(cfg)
    assert "gd: 'off'" in yaml_text  # quoted, so YAML does not turn it into a boolean


def test_paper_preset_composes():
    cfg = _compose("preset=paper", "stage=general")
    assert cfg.teacher.name_or_path == "bert-base-uncased"
    assert cfg.general.train.batch_size == 256 and cfg.general.train.lr == 5e-5
    assert cfg.corpus.max_seq_len == 128


def test_run_ids_unique_within_one_second():
    ids = {rundir.run_id() for _ in range(50)}
    assert len(ids) == 50


def test_run_id_shared_by_ranks_of_one_launch(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("MASTER_PORT", "29500")
    a = rundir.run_id()
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert rundir.run_id() == a  # same parent process -> same directory


def test_result_json_ok(tmp_path):
    rec = run_tinyfw("stage=info", run_dir=tmp_path / "run", home=tmp_path / "home")
    assert rec["stage"] == "info" and rec["status"] == "ok"
    assert rec["flags"] == {"gd": "on", "td": "on", "da": "on"}
    assert rec["config"]["stage"] == "info"
    assert rec["outputs"]["home"] == str((tmp_path / "home").resolve())
    assert set(rec["outputs"]["assets"]) == {"minilm-l6", "glove-50d", "mr", "offline", "conll2003", "pos"}


def test_result_json_failed_run_records_error(tmp_path):
    # a teacher path that does not exist: the stage fails, result.json says why
    rec = run_tinyfw(
        "stage=general", "experiment=smoke", "teacher.name_or_path=/nonexistent/teacher",
        "gd=off", run_dir=tmp_path / "run", home=tmp_path / "home", expect_ok=False,
    )
    assert rec["status"] == "failed"
    assert "/nonexistent/teacher" in rec["error"]
    assert rec["flags"]["gd"] == "off"


def test_wandb_disabled_leaves_no_files(tmp_path, no_wandb_env):
    run_tinyfw("stage=info", "logging.wandb.mode=disabled", run_dir=tmp_path / "run", home=tmp_path / "h")
    assert not list((tmp_path / "run").rglob("*wandb*"))


def test_wandb_offline_run_with_group_and_tags(tmp_path, no_wandb_env):
    run_tinyfw("stage=info", "logging.wandb.mode=offline", "td=off", "logging.wandb.group=g1",
               run_dir=tmp_path / "run", home=tmp_path / "h")
    records = list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(records) == 1
    needles = (b"td:off", b"gd:on", b"g1", b"info")
    # wandb-core may still be flushing the record log when finish() returns (on a loaded machine
    # the file held only its 7-byte header when read at once, also before this change): re-read
    # it for up to a minute
    import time

    deadline = time.monotonic() + 60
    blob = records[0].read_bytes()
    while not all(n in blob for n in needles) and time.monotonic() < deadline:
        time.sleep(0.5)
        blob = records[0].read_bytes()
    for needle in needles:
        assert needle in blob


def test_env_wandb_mode_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run_tinyfw("stage=info", "logging.wandb.mode=offline", run_dir=tmp_path / "run", home=tmp_path / "h")
    assert not (tmp_path / "run" / "wandb").exists()


def test_atomic_writes_leave_no_half_files(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "part.bin").write_bytes(b"x" * 10)
            raise RuntimeError("killed mid-way")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    atomic_write_json(tmp_path / "r.json", {"a": 1})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640)])
def test_atomic_write_gives_the_mode_of_a_plain_write(tmp_path, umask, mode):
    """mkstemp makes 0600 files; a published report must be readable like any written file.
    The umask is read, not changed: it is the same after the write."""
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "r.json", {"a": 1})
        (tmp_path / "plain.txt").write_text("x")
        assert os.umask(umask) == umask
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777 == mode


def test_cli_unknown_stage_exits_nonzero_naming_stages(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "tinyfw", "stage=bogus"], capture_output=True,
                          text=True, cwd=tmp_path, env={**os.environ, "HYDRA_FULL_ERROR": "0"})
    assert proc.returncode != 0
    assert "general" in proc.stderr and "bogus" in proc.stderr


def test_cli_help_lists_groups_and_stages(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "tinyfw", "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0
    for word in ("teacher:", "student:", "experiment:", "general", "augment", "report", "bench"):
        assert word in proc.stdout


def test_no_stage_imports_another():
    """Stages only wire the layers below: none imports another (stage=prune's recovery and
    stage=task both call tinyfw.td)."""
    import ast

    stages_dir = Path(entry.__file__).parent / "stages"
    found = set()
    for path in stages_dir.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = ([node.module.rsplit(".", 1)[1]] if node.module.startswith("tinyfw.stages.")
                         else [a.name for a in node.names] if node.module == "tinyfw.stages" else [])
                found |= {(path.stem, n) for n in names if n in STAGES}
            elif isinstance(node, ast.Import):
                found |= {(path.stem, a.name.rsplit(".", 1)[1]) for a in node.names
                          if a.name.startswith("tinyfw.stages.")}
    assert found == set(), found
