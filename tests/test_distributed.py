"""Scale-out on CPU: 2 processes (torchrun, gloo) give what one process gives on the same global
batch, resume under 2 processes, DDP's find_unused_parameters only where a loss leaves
parameters out, the CLI under torchrun writes one result.json in one run
directory; stage=augment split across 2 ranks writes the same bytes as one process; precision and
gradient checkpointing flags; fp16 on CPU fails early."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dist_step import run_gd, run_unused  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env.update(ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1", TINYFW_HOME=str(tmp_path / "home"),
               WANDB_MODE="disabled", PYTHONPATH=str(ROOT))
    return env


def _torchrun(args, tmp_path: Path, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    p = subprocess.run(cmd, cwd=cwd, env=_env(tmp_path), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"torchrun failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}"
    return p


def _maxdiff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.mark.slow
def test_two_processes_equal_one_process_on_the_global_batch_and_resume(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    # 2 ranks x batch 4, 4 GD steps: uninterrupted; stopped after 2 (checkpoint each step); resumed
    _torchrun([str(ROOT / "tests" / "dist_step.py"), "--out", str(out), "--batch-size", "4", "--steps", "4",
               "--stop-after", "2"], tmp_path, cwd=tmp_path)
    two = torch.load(out / "full.pt", weights_only=False)
    assert two["world"] == 2
    # trainable modules are DDP-wrapped; the teacher is frozen and not wrapped
    assert two["module_types"] == {"student": "DistributedDataParallel", "distiller": "DistributedDataParallel",
                                   "teacher": "BertModel"}
    assert not two["teacher_requires_grad"]

    one = run_gd(None, batch_size=8, steps=4)  # one process, the same global batches
    assert one["world"] == 1
    losses1 = [h["loss"] for h in one["history"]]
    losses2 = [h["loss"] for h in two["history"]]
    assert len(losses2) == 4
    assert losses2 == pytest.approx(losses1, abs=1e-5)
    assert _maxdiff(one["params"], two["params"]) < 1e-6
    # the tolerance means something: one process on half the batch ends elsewhere
    half = run_gd(None, batch_size=4, steps=4)
    assert _maxdiff(half["params"], two["params"]) > 1e-4

    # resume under 2 processes: same parameters and loss history as the uninterrupted run
    assert torch.load(out / "stopped.pt", weights_only=False) == {"stopped": True}
    resumed = torch.load(out / "resumed.pt", weights_only=False)
    assert resumed["resumed_from"] == 2
    assert _maxdiff(resumed["params"], two["params"]) < 1e-7
    assert [h["loss"] for h in resumed["history"]] == pytest.approx(losses2, abs=1e-7)


@pytest.mark.slow
def test_find_unused_parameters_only_for_a_loss_that_leaves_parameters_out(tmp_path):
    """GD (above) trains under DDP without the flag. A classifier trained on its hidden states
    alone (TD step 1's shape: pooler and head get no gradient) fails at its second step
    without it; with it, 2 processes equal one process on the global batch."""
    out = tmp_path / "out"
    out.mkdir()
    _torchrun([str(ROOT / "tests" / "dist_step.py"), "--out", str(out), "--batch-size", "4", "--steps", "3",
               "--phase", "unused-flag,unused-noflag"], tmp_path, cwd=tmp_path)
    failed = torch.load(out / "unused-noflag.pt", weights_only=False)
    assert "find_unused_parameters=True" in failed.get("error", ""), failed
    two = torch.load(out / "unused-flag.pt", weights_only=False)
    one = run_unused(None, batch_size=8, steps=3, find_unused=False)  # one process: no DDP, no flag needed
    assert two["world"] == 2 and one["world"] == 1 and len(two["history"]) == 3
    assert [h["loss"] for h in two["history"]] == pytest.approx([h["loss"] for h in one["history"]], abs=1e-5)
    assert _maxdiff(one["params"], two["params"]) < 1e-5
    head = [k for k in two["params"] if k.startswith(("bert.pooler.", "classifier."))]
    assert len(head) == 4 and all(torch.equal(two["params"][k], two["init"][k]) for k in head)  # untouched
    assert all(not torch.equal(two["params"][k], two["init"][k]) for k in two["params"] if k not in head)


@pytest.mark.slow
def test_torchrun_cli_general_writes_one_result_in_one_run_dir(tmp_path):
    """The issue's command: ranks share the run dir (no hydra.run.dir given); rank 0 writes."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    _torchrun(["-m", "tinyfw", "stage=general", "experiment=smoke", "general.train.max_steps=6",
               "general.train.log_every=2"], tmp_path, cwd=cwd)
    run_dirs = [p.parent for p in (cwd / "runs").rglob(".hydra")]
    assert len(run_dirs) == 1, run_dirs
    results = list((cwd / "runs").rglob("result.json"))
    assert results == [run_dirs[0] / "result.json"]
    rec = json.loads(results[0].read_text())
    assert rec["status"] == "ok", rec.get("error")
    m = rec["metrics"]
    assert m["steps"] == 6
    # each step consumed a global batch of 2 ranks x 8 segments (tokens summed over ranks)
    seg_len = rec["config"]["corpus"]["max_seq_len"]
    assert 6 * 8 * seg_len < m["tokens"] <= 6 * 16 * seg_len
    assert (run_dirs[0] / "student" / "config.json").exists()
    assert (run_dirs[0] / "checkpoints" / "step-6").is_dir()


def test_grad_checkpointing_and_bf16_match_fp32_closely():
    ref = run_gd(None, batch_size=8, steps=2)
    for precision, gc in (("fp32", True), ("bf16", True)):
        r = run_gd(None, batch_size=8, steps=2, precision=precision, grad_checkpointing=gc)
        tol = 1e-6 if precision == "fp32" else 5e-3  # checkpointing recomputes exactly; bf16 rounds
        assert [h["loss"] for h in r["history"]] == pytest.approx([h["loss"] for h in ref["history"]], abs=tol)


def test_fp16_on_cpu_fails_early_with_the_fix():
    from tinyfw.train.loop import make_accelerator

    with pytest.raises(ValueError, match="fp16 needs a GPU.*bf16"):
        make_accelerator("fp16", cpu=True)


@pytest.mark.slow
def test_torchrun_task_stage_trains_teacher_mlm_gd_augment_td_together(tmp_path):
    """stage=task builds the teacher, the GD student and the masked LM with every rank (each
    trains under DDP), augments on rank 0, then runs TD step 1 (the classifier head unused:
    DDP must allow it) and step 2: one result.json, no deadlock."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    _torchrun(["-m", "tinyfw", "stage=task", "experiment=smoke", "augment=on", "hydra.run.dir=run"], tmp_path,
              cwd=cwd, timeout=400)
    rec = json.loads((cwd / "run" / "result.json").read_text())
    assert rec["status"] == "ok", rec.get("error")
    assert rec["flags"]["da"] == "on"
    kinds = {p.name for p in (tmp_path / "home" / "cache").iterdir()}
    assert {"teacher", "gd-student", "mlm", "augmented"} <= kinds, kinds
    assert not list((tmp_path / "home" / "cache").glob("*/.*.tmp-*"))  # no half-built entries


def test_collective_build_inside_a_rank0_only_build_fails_clearly(tmp_path):
    from tinyfw import cache

    cache._SOLO.append("augmented/abc")
    try:
        with pytest.raises(RuntimeError, match="needs every rank.*augmented/abc"):
            cache._ensure_collective(tmp_path / "x", {}, lambda tmp: None, lambda: None)
    finally:
        cache._SOLO.pop()


@pytest.mark.slow
def test_torchrun_augment_shards_across_ranks_byte_identical_to_one_process(tmp_path, monkeypatch):
    """stage=augment under 2 processes: each rank augments its shards (6 shards of 3 rows),
    rank 0 merges; the cached dataset's files equal a single-process run's, byte for byte."""
    from conftest import run_tinyfw, save_tiny_mlm

    args = ["stage=augment", "experiment=smoke", f"augmenter.mlm={save_tiny_mlm(tmp_path / 'mlm')}",
            "augmenter.shard_size=3", "augmenter.batch_size=5"]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    _torchrun(["-m", "tinyfw", *args, "hydra.run.dir=run"], tmp_path, cwd=cwd)
    two = json.loads((cwd / "run" / "result.json").read_text())
    assert two["status"] == "ok", two.get("error")
    m = two["metrics"]
    assert m["shards"] == 6 and m["rows_by_rank"] == {"0": 9, "1": 7}  # shards 0,2,4 and 1,3,5 (1 row)
    assert not list((tmp_path / "home" / "cache" / "augment-work").glob("*/*"))  # work dir cleaned up

    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")  # the same device as the 2 ranks
    one = run_tinyfw(*args, run_dir=tmp_path / "run1", home=tmp_path / "home1")
    assert one["metrics"]["rows_by_rank"] == {"0": 16} and one["metrics"]["outputs"] == m["outputs"]
    d1, d2 = Path(one["outputs"]["dataset"]), Path(two["outputs"]["dataset"])
    assert d1.parent.name == d2.parent.name  # the same cache key
    files = sorted(p.name for p in d2.iterdir())
    assert files == sorted(p.name for p in d1.iterdir()) and "data-00000-of-00001.arrow" in files
    for name in files:  # arrow data, dataset_info.json, state.json (its fingerprint included)
        assert (d1 / name).read_bytes() == (d2 / name).read_bytes(), name


@pytest.mark.slow
def test_cache_present_is_rank0s_answer_on_every_rank(tmp_path):
    """Ranks that see a cache entry differently (it appeared between their checks) still take
    the same branch: cache.present broadcasts rank 0's view."""
    script = tmp_path / "present.py"
    script.write_text(
        "import json, sys\n"
        "from pathlib import Path\n"
        "from tinyfw import cache, dist\n"
        "dist.init()\n"
        "r, d = dist.rank(), Path(sys.argv[1])\n"
        "(d / 'only-rank1').mkdir(exist_ok=True) if r == 1 else None\n"
        "(d / 'only-rank0').mkdir(exist_ok=True) if r == 0 else None\n"
        "dist.barrier()\n"
        "seen = {n: cache.present(d / f'only-rank{n}' if r == n else d / f'absent-{n}') for n in (0, 1)}\n"
        "(d / f'rank{r}.json').write_text(json.dumps(seen))\n"
    )
    _torchrun([str(script), str(tmp_path)], tmp_path, ROOT, timeout=120)
    views = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # what rank 0 sees decides: "0" exists for rank 0, "1" does not exist for rank 0
    assert views[0] == views[1] == {"0": True, "1": False}
