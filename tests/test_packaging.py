"""tinyfw installs like a library: the config tree (top-level ``conf/`` in the repository, one
copy) ships inside the package as ``tinyfw/conf``, so a wheel
installed into a fresh virtualenv runs `tinyfw ...` from any directory; `python -m tinyfw` and
the `tinyfw` script are the same entry; user config directories join via `hydra.searchpath`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import tinyfw.__main__ as entry

ROOT = Path(__file__).resolve().parent.parent


def test_config_tree_lives_at_the_top_level_once():
    assert entry.CONF_DIR == ROOT / "conf" and (entry.CONF_DIR / "config.yaml").is_file()
    stray = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tinyfw").rglob("*.yaml"))
    assert not stray, f"config files inside the package dir are a second copy: git mv them into conf/ ({stray})"


def _build_wheel(tmp_path: Path) -> Path:
    """A wheel of a copy of the repository (no build artefacts in the checkout; no download:
    the running environment's setuptools builds it)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for pkg in ("tinyfw", "augment", "conf"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(dist), str(src)], check=True, capture_output=True, text=True, timeout=300)
    wheels = list(dist.glob("tinyfw-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _venv_with(wheel: Path, where: Path) -> Path:
    """A fresh virtualenv with the wheel installed (no dependencies: the running environment's
    site-packages are added behind the venv's own, so torch & co. are not downloaded)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    site = Path(subprocess.run([str(where / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "parent-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(where / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    "--ignore-installed", str(wheel)], check=True, capture_output=True, text=True, timeout=300)
    return where / "bin"


@pytest.mark.slow
def test_wheel_runs_general_distillation_from_an_empty_directory(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n for n in names if n.startswith("tinyfw/conf/")}
    expected = {f"tinyfw/conf/{p.relative_to(entry.CONF_DIR)}" for p in entry.CONF_DIR.rglob("*.yaml")}
    assert expected and shipped == expected

    bin_dir = _venv_with(wheel, tmp_path / "venv")
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(TINYFW_HOME=str(tmp_path / "home"), WANDB_MODE="disabled")

    def run(*cmd: str) -> subprocess.CompletedProcess:
        p = subprocess.run(list(cmd), cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, f"{cmd}\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}"
        return p

    where = run(str(bin_dir / "python"), "-c", "import tinyfw; print(tinyfw.__file__)").stdout.strip()
    assert Path(where).is_relative_to(tmp_path / "venv"), where  # the wheel, not the checkout

    # one entry: the script and `python -m tinyfw` compose the same config
    script = run(str(bin_dir / "tinyfw"), "stage=general", "experiment=smoke", "--cfg", "job").stdout
    module = run(str(bin_dir / "python"), "-m", "tinyfw", "stage=general", "experiment=smoke", "--cfg", "job").stdout
    assert script == module and "stage: general" in script

    # a user config directory joins the search path
    user = tmp_path / "user-conf" / "student"
    user.mkdir(parents=True)
    (user / "wide.yaml").write_text("shape: {num_layers: 1, hidden_size: 48, intermediate_size: 96, num_heads: 4}\n")
    shown = run(str(bin_dir / "tinyfw"), "stage=info", "student=wide", f"hydra.searchpath=[file://{user.parent}]",
                "--cfg", "job").stdout
    assert "hidden_size: 48" in shown

    run(str(bin_dir / "tinyfw"), "stage=general", "experiment=smoke")
    results = list((work / "runs").glob("*/*-general/result.json"))
    assert len(results) == 1, list(work.rglob("result.json"))
    rec = json.loads(results[0].read_text())
    assert rec["status"] == "ok" and rec["stage"] == "general"
    assert sorted(p.name for p in work.iterdir()) == ["runs"]  # nothing else lands in the working dir
