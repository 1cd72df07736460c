"""Sweep launchers (the optional `sweep` extra): the SLURM configs compose and validate here,
joblib runs a sweep's jobs in parallel processes, and a submitit job with 2 tasks trains
data-parallel (the torchrun variables exported from the job) with one result.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install -e '.[sweep]'")
pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[sweep]'")

ROOT = Path(__file__).resolve().parent.parent


def _tinyfw(args, tmp_path: Path, timeout: int = 300, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, TINYFW_HOME=str(tmp_path / "home"), WANDB_MODE="disabled", OMP_NUM_THREADS="1",
               ACCELERATE_USE_CPU="true")
    p = subprocess.run([sys.executable, "-m", "tinyfw", *args], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=timeout)
    if check:
        assert p.returncode == 0, f"{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    return p


def _launcher(args, tmp_path: Path) -> dict:
    out = _tinyfw([*args, "stage=info", "experiment=smoke", "--cfg", "hydra"], tmp_path).stdout
    return yaml.safe_load(out)["hydra"]["launcher"]


def test_slurm_configs_compose_and_validate(tmp_path):
    l = _launcher(["hydra/launcher=slurm_gpu", "hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=8",
                   "hydra.launcher.tasks_per_node=8", "hydra.launcher.timeout_min=2880"], tmp_path)
    assert l["_target_"].endswith("SlurmLauncher")
    assert (l["partition"], l["gpus_per_node"], l["tasks_per_node"], l["timeout_min"]) == ("gpu", 8, 8, 2880)
    assert l["cpus_per_task"] == 8 and l["array_parallelism"] == 32
    plain = _launcher(["hydra/launcher=submitit_slurm", "hydra.launcher.gpus_per_node=1"], tmp_path)
    assert plain["_target_"].endswith("SlurmLauncher") and plain["gpus_per_node"] == 1
    joblib = _launcher(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], tmp_path)
    assert joblib["_target_"].endswith("JoblibLauncher") and joblib["n_jobs"] == 2
    # the launcher schema catches typos
    bad = _tinyfw(["hydra/launcher=slurm_gpu", "hydra.launcher.gpus_per_nod=8", "stage=info", "--cfg", "hydra"],
                  tmp_path, check=False)
    assert bad.returncode != 0 and "gpus_per_nod" in bad.stderr


@pytest.mark.slow
def test_joblib_runs_sweep_jobs_in_parallel_processes(tmp_path):
    sweep = tmp_path / "sweep"
    p = _tinyfw(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "stage=info", "experiment=smoke",
                 "seed=1,2", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert "Joblib.Parallel(n_jobs=2" in p.stdout + p.stderr
    recs = [json.loads((sweep / str(i) / "result.json").read_text()) for i in (0, 1)]
    assert [r["status"] for r in recs] == ["ok", "ok"]
    assert sorted(r["config"]["seed"] for r in recs) == [1, 2]


@pytest.mark.slow
def test_submitit_job_with_two_tasks_trains_data_parallel(tmp_path):
    """`tasks_per_node=2` (here with the local executor; SLURM is the same code path): the
    two tasks form one process group and write one result.json."""
    sweep = tmp_path / "sweep"
    _tinyfw(["-m", "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2", "hydra.launcher.timeout_min=5",
             "stage=general", "experiment=smoke", "general.train.max_steps=4", f"hydra.sweep.dir={sweep}"],
            tmp_path, timeout=400)
    results = list(sweep.rglob("result.json"))
    assert results == [sweep / "0" / "result.json"]
    rec = json.loads(results[0].read_text())
    assert rec["status"] == "ok", rec.get("error")
    seg = rec["config"]["corpus"]["max_seq_len"]
    # one global batch per step = 2 ranks x 8 full segments: tokens are counted over both ranks
    assert rec["metrics"]["steps"] == 4
    assert rec["metrics"]["tokens"] > 4 * 8 * seg
