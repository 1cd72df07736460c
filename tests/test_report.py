"""stage=report: run records from sweep dirs, wandb offline logs and wandb.Api -> table, CSV, chart."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from tinyfw.report import records, table

from conftest import run_tinyfw

FLAG_GRID = list(itertools.product(["on", "off"], repeat=3))  # (gd, td, da), basic-sweeper order
SEEDS = [1, 2]
ROW_ORDER = ["teacher", "GD+TD+DA (full)", "w/o GD", "w/o TD", "w/o DA", "w/o GD, TD",
             "w/o GD, DA", "w/o TD, DA", "w/o GD, TD, DA"]


def score(flags, seed, task="mr", weights=None):
    """Synthetic accuracy: 0.80, minus 0.05 per flag off, minus 0.1 per zero weight, +0.01/seed."""
    off = sum(v == "off" for v in flags)
    zero = sum(v == 0 for v in (weights or {}).values())
    return round(0.80 - 0.05 * off - 0.1 * zero + 0.01 * (seed - 1) + (0.02 if task == "sst2" else 0), 6)


def run_config(flags, seed, task="mr", weights=None):
    w = {"embd": 1.0, "attn": 1.0, "hidn": 1.0, "pred": 1.0, **(weights or {})}
    gd, td, da = flags
    return {"stage": "task", "gd": gd, "td": td, "augment": da, "seed": seed,
            "task": {"name": task, "max_seq_len": 32}, "distill": {"weights": w, "temperature": 1.0},
            "student": {"shape": {"num_layers": 2}}, "home": "/somewhere"}


def result(flags, seed, task="mr", weights=None, status="ok", nested=True):
    acc = score(flags, seed, task, weights)
    teacher = round(0.90 + 0.01 * (seed - 1), 6)
    if nested:
        metrics = {"main_metric": "accuracy", "dev": {"accuracy": acc + 0.005, "loss": 0.5},
                   "test": {"accuracy": acc}, "teacher": {"dev": {"accuracy": teacher + 0.005},
                                                          "test": {"accuracy": teacher}}}
    else:  # the flat spelling of the same metrics
        metrics = {"main_metric": "accuracy", "dev/accuracy": acc + 0.005, "test/accuracy": acc,
                   "teacher/dev/accuracy": teacher + 0.005, "teacher/test/accuracy": teacher}
    rec = {"stage": "task", "status": status, "flags": dict(zip(("gd", "td", "da"), flags)),
           "metrics": metrics if status == "ok" else {}, "outputs": {}, "group": "sweep",
           "config": run_config(flags, seed, task, weights)}
    if status == "failed":
        rec["error"] = "RuntimeError: synthetic failure"
    return rec


FAILED = (("off", "on", "on"), 2)  # w/o GD, seed 2: failed
MISSING = (("on", "off", "on"), 2)  # w/o TD, seed 2: job dir without result.json


def write_sweep(root: Path, drop_dir: int | None = None) -> Path:
    """A fake multirun sweep: 8 flag combos x 2 seeds of task mr, one failed, one missing."""
    root.mkdir(parents=True, exist_ok=True)
    overrides = ["stage=task", "gd=on,off", "td=on,off", "augment=on,off", "seed=1,2"]
    hydra = {"sweep": {"dir": str(root), "subdir": "${hydra.job.num}"}, "overrides": {"task": overrides},
             "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"}}
    (root / "multirun.yaml").write_text(OmegaConf.to_yaml({"hydra": hydra}))
    for num, (flags, seed) in enumerate(itertools.product(FLAG_GRID, SEEDS)):
        if num == drop_dir:
            continue
        job = root / str(num)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(run_config(flags, seed)))
        if (flags, seed) == MISSING:
            continue
        status = "failed" if (flags, seed) == FAILED else "ok"
        (job / "result.json").write_text(json.dumps(result(flags, seed, status=status, nested=num % 2 == 0)))
    return root


def cells(tab):
    return {row[0]: row[1:] for row in tab.cell_texts()}


def test_sweep_table_rows_cells_and_problems(tmp_path):
    recs, kind = records.load(str(write_sweep(tmp_path / "sweep")))
    assert kind == "sweep" and len(recs) == 16
    tab = table.build(recs)
    assert [label for label, _ in tab.rows] == ROW_ORDER
    assert tab.columns == ["mr"] and tab.metric == {"mr": "test/accuracy"}
    c = cells(tab)
    assert c["teacher"] == ["90.5 ± 0.7 (n=2)"]  # one teacher per seed: 90, 91
    assert c["GD+TD+DA (full)"] == ["80.5 ± 0.7 (n=2)"]  # 80, 81
    assert c["w/o GD"] == ["75.0 (n=1; 1 failed)"]
    assert c["w/o TD"] == ["75.0 (n=1; 1 missing)"]
    assert c["w/o GD, TD, DA"] == ["65.5 ± 0.7 (n=2)"]
    full = dict(tab.rows)["GD+TD+DA (full)"]["mr"]
    assert full.mean == pytest.approx(80.5) and full.std == pytest.approx(0.70711, abs=1e-4)
    assert (tab.runs_ok, tab.runs_failed, tab.runs_missing) == (14, 1, 1)
    probs = {(p.row, p.seed, p.status) for p in tab.problems}
    assert probs == {("w/o GD", 2, "failed"), ("w/o TD", 2, "missing")}
    assert any("synthetic failure" in p.error for p in tab.problems)
    md = tab.markdown()
    assert md.splitlines()[0] == "| variant | mr |" and "| w/o TD | 75.0 (n=1; 1 missing) |" in md
    df = tab.frame()
    assert list(df["variant"]) == ROW_ORDER
    assert df.loc[2, "mr_failed"] == 1 and df.loc[3, "mr_missing"] == 1 and df.loc[1, "mr_n"] == 2


def test_all_seeds_failed_or_missing_cells_and_never_started_job(tmp_path):
    root = write_sweep(tmp_path / "sweep", drop_dir=3)  # job 3 = (on,on,off) seed 2 never started
    (root / "2" / "result.json").write_text(json.dumps(result(("on", "on", "off"), 1, status="failed")))
    tab = table.build(records.load(str(root))[0])
    assert cells(tab)["w/o DA"] == ["failed (1), missing (1)"]
    missing = [p for p in tab.problems if p.run == "3"]
    assert missing and missing[0].status == "missing" and missing[0].seed == 2
    assert "never started" in missing[0].error and missing[0].row == "w/o DA"


def test_custom_subdirs_and_nested_run_dirs(tmp_path):
    root = tmp_path / "sweep"
    for i, (task, seed) in enumerate(itertools.product(["mr", "sst2"], SEEDS)):
        job = root / task / f"seed{seed}"
        (job / "teacher_ft").mkdir(parents=True)
        (job / "result.json").write_text(json.dumps(result(("on", "on", "on"), seed, task)))
        # a run dir nested in a job (a sub-stage's own result) is part of the job, not a run
        (job / "teacher_ft" / "result.json").write_text(json.dumps(result(("off", "off", "off"), seed)))
    recs, kind = records.load(str(root))
    assert kind == "sweep" and sorted(r.name for r in recs) == ["mr/seed1", "mr/seed2", "sst2/seed1", "sst2/seed2"]
    assert cells(table.build(recs))["GD+TD+DA (full)"] == ["80.5 ± 0.7 (n=2)", "82.5 ± 0.7 (n=2)",
                                                          "81.5 ± 0.7 (n=2)"]


def test_objective_ablations_two_tasks_and_average(tmp_path):
    recs = []
    variants = [({}, "GD+TD+DA (full)"), ({"embd": 0.0}, "w/o Embd"), ({"pred": 0.0}, "w/o Pred"),
                ({"attn": 0.0, "hidn": 0.0}, "w/o Trm"), ({"attn": 0.0}, "w/o Attn"),
                ({"hidn": 0.0}, "w/o Hidn"), ({"attn": 0.5}, "GD+TD+DA, attn×0.5")]
    for i, ((w, _), task, seed) in enumerate(itertools.product(variants, ["mr", "sst2"], SEEDS)):
        recs.append(records.from_result(result(("on", "on", "on"), seed, task, w), str(i), "x"))
    recs.append(records.from_result(result(("off", "on", "on"), 1, "mr", {"embd": 0.0}), "gd", "x"))
    tab = table.build(recs)
    assert [label for label, _ in tab.rows] == ["teacher"] + [v for _, v in variants[:-1]] + [
        "w/o GD, Embd", "GD+TD+DA, attn×0.5"]
    assert tab.columns == ["mr", "sst2", "avg"]
    c = cells(tab)
    assert c["GD+TD+DA (full)"] == ["80.5 ± 0.7 (n=2)", "82.5 ± 0.7 (n=2)", "81.5 ± 0.7 (n=2)"]
    assert c["w/o Trm"][2] == "61.5 ± 0.7 (n=2)"
    # sst2 never ran for w/o GD, Embd: not in the sweep ("—"), so no average either
    assert c["w/o GD, Embd"] == ["65.0 (n=1)", "—", "—"]


def test_mnli_mismatched_gets_its_own_column():
    recs = []
    for seed in SEEDS:
        d = result(("on", "on", "on"), seed, "mnli")
        del d["metrics"]["test"], d["metrics"]["teacher"]["test"]  # GLUE test labels are hidden
        d["metrics"]["validation_mismatched"] = {"accuracy": 0.7 + 0.01 * seed}
        d["metrics"]["teacher"]["validation_mismatched"] = {"accuracy": 0.85}
        recs.append(records.from_result(d, str(seed), "x"))
    recs.append(records.from_result(result(("on", "on", "on"), 1, "mnli", status="failed"), "f", "x"))
    tab = table.build(recs)
    assert tab.columns == ["mnli", "mnli-mm", "avg"]
    assert tab.metric == {"mnli": "dev/accuracy", "mnli-mm": "validation_mismatched/accuracy"}
    c = cells(tab)
    assert c["teacher"] == ["91.0 ± 0.7 (n=2)", "85.0 ± 0.0 (n=2)", "88.0 ± 0.4 (n=2)"]
    assert c["GD+TD+DA (full)"][:2] == ["81.0 ± 0.7 (n=2; 1 failed)", "71.5 ± 0.7 (n=2; 1 failed)"]
    assert c["GD+TD+DA (full)"][2] == "76.2 ± 0.7 (n=2)"  # per seed: (80.5+71)/2, (81.5+72)/2 -> sd 0.7
    assert (tab.runs_ok, tab.runs_failed, len(tab.problems)) == (2, 1, 1)  # the failure listed once


def test_metric_choice(tmp_path):
    ok = result(("on", "on", "on"), 1)
    dev_only = result(("on", "on", "on"), 2)
    del dev_only["metrics"]["test"]
    recs = [records.from_result(ok, "0", "a"), records.from_result(dev_only, "1", "b")]
    assert table.build(recs).metric == {"mr": "dev/accuracy"}  # test not in every run: dev
    assert table.build(recs[:1]).metric == {"mr": "test/accuracy"}
    assert table.build(recs[:1], metric="dev").rows[1][1]["mr"].mean == pytest.approx(80.5)
    assert table.build(recs[:1], metric="dev/loss", percent=False).rows[0][1]["mr"].mean == 0.5
    tab = table.build(recs, metric="test")  # the dev-only run has no test metric: failed, listed
    assert tab.runs_failed == 1 and "no metric 'test/accuracy'" in tab.problems[0].error
    unnamed = result(("on", "on", "on"), 1)
    unnamed["metrics"] = {"dev": {"matthews_correlation": 0.3}}  # no main_metric: known names
    assert table.build([records.from_result(unnamed, "0", "c")]).metric == {"mr": "dev/matthews_correlation"}


def test_bad_sources_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="report.source is empty"):
        records.load("")
    with pytest.raises(FileNotFoundError, match="no such directory"):
        records.load(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither job dirs"):
        records.load(str(tmp_path / "empty"))
    info = tmp_path / "info"
    (info / "0").mkdir(parents=True)
    (info / "0" / "result.json").write_text(json.dumps({"stage": "info", "status": "ok", "config": {}}))
    with pytest.raises(ValueError, match="no task runs"):
        records.load(str(info))
    with pytest.raises(ValueError, match="ENTITY/PROJECT/GROUP"):
        records.load("wandb:only/two")


def test_other_swept_setting_splits_rows(tmp_path):
    recs = []
    for p in (0.2, 0.4):
        d = result(("on", "on", "on"), 1)
        d["config"]["augmenter"] = {"p_replace": p}
        recs.append(records.from_result(d, str(p), "x"))
    labels = [label for label, _ in table.build(recs).rows]
    assert labels == ["teacher", "GD+TD+DA (full) [augmenter.p_replace=0.2]",
                      "GD+TD+DA (full) [augmenter.p_replace=0.4]"]


def test_one_shared_teacher_counts_once_and_per_seed_teachers_each():
    """Runs of three seeds distilled from one teacher (same teacher settings and score): the
    teacher cell is that teacher, n=1. With ``teacher_ft.seed`` following the run seed, or the
    same settings scoring differently (another cache): one teacher each."""
    def rec(seed, teacher_seed, teacher_acc):
        d = result(("on", "on", "on"), seed)
        d["metrics"]["teacher"]["test"]["accuracy"] = teacher_acc
        d["config"]["teacher"] = {"name_or_path": "minilm-l6", "seed": 42}
        d["config"]["teacher_ft"] = {"seed": teacher_seed, "train": {"lr": 5e-5}}
        return records.from_result(d, f"s{seed}", "x")

    shared = table.build([rec(s, 42, 0.905) for s in (1, 2, 3)])
    assert cells(shared)["teacher"] == ["90.5 (n=1)"]
    assert cells(shared)["GD+TD+DA (full)"] == ["81.0 ± 1.0 (n=3)"]
    per_seed = table.build([rec(s, s, 0.90 + 0.01 * (s - 1)) for s in (1, 2, 3)])
    assert cells(per_seed)["teacher"] == ["91.0 ± 1.0 (n=3)"]
    elsewhere = table.build([rec(1, 42, 0.905), rec(2, 42, 0.915)])  # same settings, another score
    assert cells(elsewhere)["teacher"] == ["91.0 ± 0.7 (n=2)"]


def test_settings_a_run_does_not_use_do_not_split_rows():
    """The fine-tune's lr of the w/o TD runs (td=off) differs from the value the runs with TD
    carry unused: no row label; two w/o TD runs with different fine-tune lrs do split."""
    def rec(flags, seed, lr, step2_lr=3e-4):
        d = result(flags, seed)
        d["config"]["task_distill"] = {"finetune": {"lr": lr}, "step2": {"lr": step2_lr}}
        return records.from_result(d, f"{flags}{seed}{lr}", "x")

    full, wo_td = ("on", "on", "on"), ("on", "off", "on")
    recs = [rec(full, s, 3e-4) for s in (1, 2)] + [rec(wo_td, s, 1e-4, step2_lr=1e-3) for s in (1, 2)]
    assert [label for label, _ in table.build(recs).rows] == ["teacher", "GD+TD+DA (full)", "w/o TD"]
    recs.append(rec(wo_td, 3, 5e-4))
    assert [label for label, _ in table.build(recs).rows] == [
        "teacher", "GD+TD+DA (full)", "w/o TD [task_distill.finetune.lr=0.0001]",
        "w/o TD [task_distill.finetune.lr=0.0005]"]


def write_wandb_runs(root: Path, cases) -> None:
    """Runs logged exactly as the runner does: tracking.start, summary of flat metrics, finish."""
    from tinyfw import tracking
    from tinyfw.config import Config
    from tinyfw.runner import _flat

    for i, (flags, seed, status) in enumerate(cases):
        cfg = OmegaConf.structured(Config)
        gd, td, da = flags
        cfg.merge_with({"stage": "task", "gd": gd, "td": td, "augment": da, "seed": seed,
                        "logging": {"wandb": {"mode": "offline"}}})
        cfg.task.name = "mr"
        run_dir = root / f"run{i}"
        run_dir.mkdir(parents=True)
        tracker = tracking.start(cfg, run_dir, group="g")
        tracker.log({"train/loss": 1.0 / (i + 1)}, step=1)
        if status == "ok":
            tracker.summary({"status": "ok", **_flat(result(flags, seed)["metrics"])})
            tracker.finish()
        else:
            tracker.summary({"status": "failed"})
            tracker.finish(exit_code=1)


@pytest.mark.slow
def test_wandb_offline_records_give_the_same_table(tmp_path, no_wandb_env):
    cases = [(f, s, "failed" if (f, s) == FAILED else "ok")
             for f in [("on", "on", "on"), ("off", "on", "on")] for s in SEEDS]  # 4 runs
    write_wandb_runs(tmp_path / "wb", cases)
    recs, kind = records.load(str(tmp_path / "wb"))  # no result.json there: the .wandb logs
    assert kind == "wandb-dir" and len(recs) == 4
    assert {r.stage for r in recs} == {"task"} and {r.task for r in recs} == {"mr"}
    from_wandb = table.build(recs)
    from_json = table.build([records.from_result(result(f, s, status=st), str(i), "x")
                             for i, (f, s, st) in enumerate(cases)])
    assert from_wandb.cell_texts() == from_json.cell_texts()
    assert cells(from_wandb)["w/o GD"] == ["75.0 (n=1; 1 failed)"]
    assert [p.status for p in from_wandb.problems] == ["failed"]
    # the same logs in numbered job dirs without result.json: a sweep read from its wandb logs
    for i in range(len(cases)):
        (tmp_path / "wb" / f"run{i}").rename(tmp_path / "wb" / str(i))
    recs, kind = records.load(str(tmp_path / "wb"))
    assert kind == "sweep" and table.build(recs).cell_texts() == from_json.cell_texts()


def test_wandb_api_source_with_a_mock_api():
    def run(i, flags, seed, state="finished"):
        gd, td, da = flags
        summary = {"status": "ok", "_step": 3, **{k: v for k, v in records.flatten(
            result(flags, seed)["metrics"], "/").items()}}
        if state != "finished":
            summary = {"_step": 1}
        return SimpleNamespace(id=f"r{i}", state=state, job_type="task", tags=[f"gd:{gd}"],
                               config={"gd": gd, "td": td, "da": da, "task": "mr", "seed": seed,
                                       "stage": "task", "cfg": run_config(flags, seed)},
                               summary=summary)

    class Api:
        def runs(self, path, filters):
            assert path == "ent/proj" and filters == {"group": "grp"}
            return [run(0, ("on", "on", "on"), 1), run(1, ("on", "on", "on"), 2),
                    run(2, ("off", "on", "on"), 1, state="crashed"),
                    SimpleNamespace(id="rep", state="finished", job_type="report", tags=[],
                                    config={"stage": "report"}, summary={"status": "ok"})]

    recs = records.read_wandb_api("ent/proj/grp", api=Api())
    tab = table.build([r for r in recs if r.stage == records.TASK_STAGE])
    assert cells(tab) == {"teacher": ["90.5 ± 0.7 (n=2)"], "GD+TD+DA (full)": ["80.5 ± 0.7 (n=2)"],
                          "w/o GD": ["failed"]}


@pytest.mark.slow
def test_stage_via_hydra_writes_md_csv_png(tmp_path, shared_home, no_wandb_env):
    sweep = write_sweep(tmp_path / "sweep")
    out = tmp_path / "out"
    rec = run_tinyfw("stage=report", f"report.source={sweep}", run_dir=out, home=shared_home,
                     )
    assert rec["metrics"] == {"rows": 9, "runs_ok": 14, "runs_failed": 1, "runs_missing": 1, "runs_collapsed": 0,
                              "runs_skipped": 0}
    outs = rec["outputs"]
    assert set(outs) == {"markdown", "csv", "png"}
    assert all(Path(outs[k]).parent == out for k in outs)
    md = Path(outs["markdown"]).read_text()
    assert "| w/o GD | 75.0 (n=1; 1 failed) |" in md and "**missing**" in md and "**failed**" in md
    assert "TinyBERT4 (GD+TD+DA) | 82.8" in md and "![ablation chart](report.png)" in md
    import pandas as pd

    df = pd.read_csv(outs["csv"])
    assert list(df["variant"]) == ROW_ORDER and df.loc[1, "mr_mean"] == pytest.approx(80.5)
    png = Path(outs["png"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    bad = run_tinyfw("stage=report", f"report.source={tmp_path / 'nope'}", run_dir=tmp_path / "bad",
                     home=shared_home, expect_ok=False)
    assert bad["status"] == "failed" and "no such directory" in bad["error"]


@pytest.mark.slow
def test_stage_logs_table_and_chart_to_its_wandb_run(tmp_path, shared_home, no_wandb_env):
    sweep = write_sweep(tmp_path / "sweep")
    out = tmp_path / "out"
    run_tinyfw("stage=report", f"report.source={sweep}", "logging.wandb.mode=offline",
               run_dir=out, home=shared_home)
    logs = list((out / "wandb").rglob("run-*.wandb"))
    assert len(logs) == 1
    run = records.inspect_wandb_log(logs[0])
    summary = records.flatten(run["summary"], ".")  # wandb media summaries: "key._type"
    assert run["job_type"] == "report" and summary["report/chart._type"] == "image-file"
    assert any(k.startswith("report/table.") for k in summary)
    assert summary["rows"] == 9 and summary["runs_failed"] == 1
    assert list((out / "wandb").rglob("media/images/report/chart_*.png"))
    assert list((out / "wandb").rglob("media/table/report/table_*.table.json"))


def test_source_is_shown_relative_to_the_working_directory(tmp_path, monkeypatch):
    from tinyfw.report.document import shown

    (tmp_path / "runs" / "sweep").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert shown(str(tmp_path / "runs" / "sweep")) == "runs/sweep"
    assert shown("/elsewhere/sweep") == "/elsewhere/sweep"
    assert shown("wandb:me/tinyfw/grid-1") == "wandb:me/tinyfw/grid-1"


def test_collapsed_runs_are_shown_apart_not_averaged(tmp_path):
    root = write_sweep(tmp_path / "sweep")
    # w/o DA, seed 1 collapsed: its result.json says so (as stage=task writes it)
    job = next(j for j in sorted(root.iterdir()) if j.is_dir() and (j / "result.json").exists()
               and json.loads((j / "result.json").read_text())["flags"] == {"gd": "on", "td": "on", "da": "off"}
               and json.loads((j / "result.json").read_text())["config"]["seed"] == 1)
    rec = json.loads((job / "result.json").read_text())
    rec["metrics"]["test"]["accuracy"] = 0.5
    rec["metrics"].update(collapsed=True, health={"collapsed": True, "reasons": ["every dev prediction is class 1"]})
    (job / "result.json").write_text(json.dumps(rec))
    tab = table.build(records.load(str(root))[0])
    c = cells(tab)
    assert c["w/o DA"] == ["76.0 (n=1; 1 collapsed)"]  # seed 2 only (0.75 + 0.01); the 50.0 is not in the mean
    assert tab.runs_collapsed == 1 and tab.runs_ok == 13
    [p] = [p for p in tab.problems if p.status == "collapsed"]
    assert p.row == "w/o DA" and p.seed == 1 and "class 1" in p.error


def test_differences_to_the_full_recipe_paired_over_seeds(tmp_path):
    from scipy import stats

    tab = table.build(records.load(str(write_sweep(tmp_path / "sweep")))[0])
    d = dict(table.deltas(tab))
    # w/o DA: 0.75 / 0.76 against the full 0.80 / 0.81 -> -5.0 for both seeds: zero spread
    wo_da = d["w/o DA"]["mr"]
    assert wo_da.diffs == pytest.approx([-5.0, -5.0]) and wo_da.ci95() == pytest.approx((-5.0, -5.0))
    # w/o GD: seed 2 failed -> one pair, no interval
    assert d["w/o GD"]["mr"].n == 1 and d["w/o GD"]["mr"].ci95() is None
    assert "teacher" not in d and "GD+TD+DA (full)" not in d
    # a spread: hand-computed t interval, 1 degree of freedom
    delta = table.Delta([-4.0, -2.0])
    half = stats.t.ppf(0.975, 1) * 2 ** 0.5 / 2 ** 0.5  # sd = sqrt(2), n = 2
    assert delta.ci95() == pytest.approx((-3.0 - half, -3.0 + half))
    assert delta.text(1) == f"-3.0 [{-3.0 - half:+.1f}, {-3.0 + half:+.1f}] (n=2)"
    md = table.deltas_markdown(tab)
    assert md.splitlines()[0] == "| variant | Δ mr |" and "| w/o DA | -5.0 [-5.0, -5.0] (n=2) |" in md


def test_a_directory_mixing_stages_reports_task_runs_and_lists_the_rest(tmp_path, shared_home, no_wandb_env):
    root = tmp_path / "mixed"
    for name, flags in (("task-full", ("on", "on", "on")), ("task-nogd", ("off", "on", "on"))):
        (root / name).mkdir(parents=True)
        (root / name / "result.json").write_text(json.dumps(result(flags, 1)))
    teacher = {"stage": "teacher", "status": "ok", "flags": {"gd": "on", "td": "on", "da": "on"},
               "metrics": {"main_metric": "accuracy", "dev": {"accuracy": 0.93}, "test": {"accuracy": 0.92}},
               "config": {**run_config(("on", "on", "on"), 1), "stage": "teacher"}}
    general = {"stage": "general", "status": "ok", "flags": {"gd": "on", "td": "on", "da": "on"},
               "metrics": {"steps": 30, "final": {"total": 1.0}},
               "config": {**run_config(("on", "on", "on"), 1), "stage": "general"}}
    for name, rec in (("teacher-run", teacher), ("gd-run", general)):
        (root / name).mkdir()
        (root / name / "result.json").write_text(json.dumps(rec))
    (root / "gd-killed" / ".hydra").mkdir(parents=True)  # a GD run killed before its result.json
    (root / "gd-killed" / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml({"stage": "general", "seed": 1}))
    rec = run_tinyfw("stage=report", f"report.source={root}", run_dir=tmp_path / "out", home=shared_home)
    assert rec["metrics"] == {"rows": 3, "runs_ok": 2, "runs_failed": 0, "runs_missing": 0, "runs_collapsed": 0,
                              "runs_skipped": 3}
    c = cells(table.build(records.load(str(root))[0]))
    assert set(c) == {"teacher", "GD+TD+DA (full)", "w/o GD"}
    assert c["GD+TD+DA (full)"] == ["80.0 (n=1)"]  # the teacher run is not averaged in as the full recipe
    md = Path(rec["outputs"]["markdown"]).read_text()
    assert "## Skipped runs (not stage=task)" in md
    for line in ("run `teacher-run`: stage teacher, ok", "run `gd-run`: stage general, ok",
                 "run `gd-killed`: stage general, missing"):
        assert line in md
    assert "**failed**" not in md and "**missing**" not in md  # the GD runs are not failed task runs
