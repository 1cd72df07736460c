"""Run records for the ablation report: what each ``stage=task`` job left, read from a sweep
dir (``result.json``; a job without one is a *missing* run), a local wandb dir or a wandb
server (``wandb:ENTITY/PROJECT/GROUP``), as one record shape; runs of other stages are
skipped and listed. The ``result.json`` schema and the sources: docs/internals.md,
"Run records for the report".
"""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import yaml

log = logging.getLogger(__name__)

FLAGS = ("gd", "td", "da")
OBJECTIVES = ("embd", "attn", "hidn", "pred")
TASK_STAGE = "task"  # the only stage whose runs are ablation results
# keys that define a table cell (not "other swept settings"); see RunRecord.extra_keys
CELL_KEYS = {"seed", "gd", "td", "augment", "home", "stage", "distill.recipe"}
RECIPE_KEY, DEFAULT_RECIPE = "distill.recipe", "tinybert"  # recipe=... rows (tinyfw/distill/recipes.py)
CELL_PREFIXES = ("report.", "pipeline.", "logging.", "task.", "distill.weights.", "hydra.")


@dataclass
class RunRecord:
    """One run, normalised: which table cell it belongs to and what it measured."""

    name: str  # job number / wandb run id
    path: str  # where it was read from
    status: str  # ok | failed | missing
    stage: str = "task"
    task: Optional[str] = None
    seed: Optional[int] = None
    flags: Optional[Dict[str, str]] = None  # None: unknown (a missing run without config)
    weights: Dict[str, float] = field(default_factory=dict)
    metrics: Dict[str, Any] = field(default_factory=dict)  # flat, "/"-separated keys
    error: str = ""
    config: Dict[str, Any] = field(default_factory=dict)  # flat, "."-separated keys


def flatten(d: Any, sep: str, prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    if not isinstance(d, dict):
        return out
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, sep, key + sep))
        else:
            out[key] = v
    return out


def _switch(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    return str(v).lower()  # a Switch gives its value


def _record(name: str, path: str, status: str, config: Dict[str, Any], flags: Any = None,
            metrics: Any = None, stage: Any = None, error: str = "") -> RunRecord:
    """Build a record from a (nested) resolved config and the run's outcome."""
    flat = flatten(config, ".")
    if flags is None and any(k in flat for k in ("gd", "td", "augment")):
        flags = {"gd": flat.get("gd", "on"), "td": flat.get("td", "on"), "da": flat.get("augment", "on")}
    seed = flat.get("seed")
    weights = {k: float(flat.get(f"distill.weights.{k}", 1.0)) for k in OBJECTIVES}
    return RunRecord(
        name=name, path=path, status=status,
        stage=str(stage or flat.get("stage") or "task"),
        task=flat.get("task.name"),
        seed=int(seed) if seed is not None else None,
        flags={k: _switch(flags.get(k, "on")) for k in FLAGS} if flags else None,
        weights=weights,
        metrics=flatten(metrics or {}, "/"),
        error=error, config=flat,
    )


def from_result(d: Dict[str, Any], name: str, path: str) -> RunRecord:
    """A record from a result.json dict."""
    status = d.get("status", "failed")
    if status not in ("ok", "failed"):
        status = "failed"
    return _record(name, path, status, d.get("config") or {}, flags=d.get("flags"),
                   metrics=d.get("metrics"), stage=d.get("stage"),
                   error=d.get("error", "") if status != "ok" else "")


# settings a run does not use, by switch: a w/o TD run never reads TD's step settings, a run
# with TD never reads the hard-label fine-tune's, a w/o DA run never reads the augmenter's
_INERT = {("td", "off"): ("task_distill.step1.", "task_distill.step2."),
          ("td", "on"): ("task_distill.finetune.",),
          ("da", "off"): ("augmenter.",)}


def used(r: RunRecord, key: str) -> bool:
    """Whether the run used config ``key`` (False for a switched-off part's settings)."""
    if not r.flags:
        return True
    return not any(key.startswith(pre) for (flag, on), pres in _INERT.items()
                   if r.flags.get(flag) == on for pre in pres)


def extra_keys(records: Iterable[RunRecord]) -> List[str]:
    """Config keys (outside the table's own axes) that differ between runs: other swept settings.

    They become part of the row label, so runs that differ in e.g. ``augmenter.p_replace``
    are not averaged together. A key counts only among the runs that use it (``_INERT``): a
    fine-tune setting of the w/o TD runs does not split the runs with TD (nor label them).
    """
    recs = [r for r in records if r.config]
    by_recipe: Dict[str, List[RunRecord]] = {}
    for r in recs:
        by_recipe.setdefault(str(r.config.get(RECIPE_KEY, DEFAULT_RECIPE)), []).append(r)
    if len(by_recipe) > 1:  # what a recipe sets is its row's axis: only keys varying within one recipe count
        return sorted(set().union(*(extra_keys(group) for group in by_recipe.values())))
    values: Dict[str, set] = {}
    for r in recs:
        for k, v in r.config.items():
            if used(r, k):
                values.setdefault(k, set()).add(json.dumps(v, sort_keys=True, default=str))
    keys = []
    for k, vals in values.items():
        if k in CELL_KEYS or k.startswith(CELL_PREFIXES):
            continue
        if len(vals) > 1 or any(k not in r.config for r in recs if used(r, k)):
            keys.append(k)
    return sorted(keys)


# ---------------------------------------------------------------- multirun sweep directories


def _load_yaml(path: Path) -> Dict[str, Any]:
    from omegaconf import OmegaConf

    conf = OmegaConf.load(path)
    try:
        return OmegaConf.to_container(conf, resolve=True)  # type: ignore[return-value]
    except Exception:  # an interpolation needing Hydra's runtime: keep it unresolved
        return OmegaConf.to_container(conf, resolve=False)  # type: ignore[return-value]


def _is_job(p: Path) -> bool:
    return (p / "result.json").is_file() or (p / ".hydra").is_dir()


def _job_dirs(root: Path) -> List[Path]:
    """Job dirs of a sweep: numbered subdirs, or (custom ``hydra.sweep.subdir``) the top-most
    dirs below ``root`` holding a result.json or a .hydra dir."""
    found: List[Path] = []
    stack = sorted(p for p in root.iterdir() if p.is_dir() and p.name not in ("wandb", ".hydra"))
    while stack:
        p = stack.pop(0)
        if _is_job(p) or (p.parent == root and p.name.isdigit()):
            found.append(p)  # nested run dirs of a job (its own sub-stages) belong to it
        elif p.name not in ("wandb", ".hydra"):
            stack.extend(sorted(c for c in p.iterdir() if c.is_dir()))

    def key(p: Path):
        rel = p.relative_to(root)
        return (not rel.name.isdigit(), str(rel.parent), int(rel.name) if rel.name.isdigit() else 0, rel.name)

    return sorted(found, key=key)


def _read_job(job: Path) -> RunRecord:
    result = job / "result.json"
    if result.exists():
        try:
            return from_result(json.loads(result.read_text()), job.name, str(job))
        except (json.JSONDecodeError, OSError) as exc:
            return RunRecord(job.name, str(job), "failed", error=f"unreadable result.json: {exc}")
    logs = sorted(job.glob("wandb/*run-*/run-*.wandb"))
    if logs:  # no result.json, but the run's wandb record log says what happened
        rec = read_wandb_logs(logs[-1:])[0]
        rec.name, rec.path = job.name, str(job)
        return rec
    cfg_file = job / ".hydra" / "config.yaml"
    cfg = _load_yaml(cfg_file) if cfg_file.exists() else {}
    return _record(job.name, str(job), "missing", cfg,
                   error="no result.json (killed, still running, or crashed before the stage ended)")


def expected_jobs(root: Path) -> List[List[str]]:
    """The per-job override lists the sweep in ``root/multirun.yaml`` expands to (job order:
    the cartesian product of the sweep overrides, as Hydra's basic sweeper runs them)."""
    mr = root / "multirun.yaml"
    if not mr.exists():
        return []
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        hc = yaml.safe_load(mr.read_text())["hydra"]
        if (hc["sweep"]["subdir"] != "${hydra.job.num}"
                or not str(hc["sweeper"]["_target_"]).endswith("BasicSweeper")):
            return []  # job dirs not named by job number, or a search (Optuna): no fixed job list
        params = hc["sweeper"].get("params") or {}
        task = list(hc["overrides"]["task"]) + [f"{k}={v}" for k, v in params.items()]
        choices: Dict[str, List[str]] = {}
        for o in OverridesParser.create().parse_overrides(task):
            key = o.get_key_element()
            if o.is_sweep_override():
                if not o.is_discrete_sweep():
                    return []  # a range/interval: not a basic sweep
                choices[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
            else:
                choices[key] = [f"{key}={o.get_value_element_as_str()}"]
    except Exception as exc:  # a custom sweeper syntax: fall back to the job dirs only
        log.warning("could not expand the sweep in %s (%s); reporting the job dirs only", mr, exc)
        return []
    return [list(job) for job in itertools.product(*choices.values())]


def _apply_overrides(base: Dict[str, Any], overrides: List[str]) -> Dict[str, Any]:
    """A sibling job's config with this job's cell-defining overrides applied (best effort)."""
    cfg = json.loads(json.dumps(base, default=str))
    for o in overrides:
        key, _, value = o.lstrip("+~").partition("=")
        if key == "task":
            key = "task.name"  # the task group option names the task
        if key in ("gd", "td", "augment", "seed", "task.name") or key.startswith("distill.weights."):
            node = cfg
            *parents, leaf = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
    return cfg


def read_sweep(root: Path) -> List[RunRecord]:
    """Records of a multirun sweep dir (or of one run dir holding a result.json)."""
    if (root / "result.json").exists():
        return [_read_job(root)]
    jobs = _job_dirs(root)
    records = [_read_job(j) for j in jobs]
    for r, j in zip(records, jobs):
        r.name = str(j.relative_to(root))
    expected = expected_jobs(root)
    if expected:
        have = {str(j.relative_to(root)) for j in jobs}
        base = next((r for r in records if r.config), None)
        for num, overrides in enumerate(expected):
            if str(num) in have:
                continue
            cfg = _apply_overrides(_unflatten(base.config), overrides) if base else {}
            records.append(_record(str(num), str(root / str(num)), "missing", cfg,
                                   error=f"job never started ({' '.join(overrides)})"))
    return records


def _unflatten(flat: Dict[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in flat.items():
        node = out
        *parents, leaf = k.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


# ---------------------------------------------------------------- wandb (offline record logs)


def _wandb_fields_to_record(config: Dict[str, Any], summary: Dict[str, Any], tags: List[str],
                            job_type: str, exit_code: Optional[int], name: str, path: str) -> RunRecord:
    """A record from a tinyfw wandb run's config/summary/tags (offline log or wandb.Api)."""
    summary = {k: v for k, v in flatten(summary, "/").items() if not k.startswith("_")}
    status = summary.pop("status", None)
    error = str(summary.pop("error", "") or "")
    if status not in ("ok", "failed"):
        status = "failed" if exit_code != 0 else "ok"
        if exit_code is None:
            error = error or "run never finished (no exit record: killed or still running)"
    cfg = dict(config.get("cfg") or {})
    for k in ("seed", "stage"):  # top-level copies win over the nested full config
        if k in config:
            cfg[k] = config[k]
    if "task" in config and not isinstance(config["task"], dict):
        cfg["task"] = {**(cfg.get("task") or {}), "name": config["task"]}
    flags = {k: config[k] for k in FLAGS if k in config}
    for t in tags or []:
        k, _, v = str(t).partition(":")
        if k in FLAGS and v:
            flags.setdefault(k, v)
    if status == "failed" and not error:
        error = f"failed (exit code {exit_code})"
    return _record(name, path, status, cfg, flags=flags or None, metrics=summary,
                   stage=config.get("stage") or job_type or None, error=error)


def inspect_wandb_log(log_file: Path) -> Dict[str, Any]:
    """Config, summary, tags, group, job type and exit code of one ``.wandb`` record log.

    Uses wandb's own reader, ``wandb leet inspect --json`` (one JSON record per line).
    """
    cmd = [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(log_file)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd[2:])}` failed (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}")
    out: Dict[str, Any] = {"config": {}, "summary": {}, "tags": [], "group": "", "job_type": "",
                           "exit_code": None, "run_id": log_file.stem.replace("run-", "")}
    for line in proc.stdout.splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        kind = rec.get("type")
        body = rec.get(kind) or {}
        if kind == "run":
            out["config"].update((body.get("config") or {}).get("update") or {})
            out["tags"] = body.get("tags") or out["tags"]
            out["group"] = body.get("run_group", out["group"])
            out["job_type"] = body.get("job_type", out["job_type"])
            out["run_id"] = body.get("run_id", out["run_id"])
        elif kind == "config":
            out["config"].update(body.get("update") or {})
        elif kind == "summary":
            out["summary"].update(body.get("update") or {})
            for k in body.get("remove") or []:
                out["summary"].pop(k if isinstance(k, str) else str(k), None)
        elif kind == "exit":
            out["exit_code"] = int(body.get("exit_code", 0))
    out["config"].pop("_wandb", None)
    return out


def read_wandb_dir(root: Path) -> List[RunRecord]:
    """Records of every ``run-*.wandb`` log below ``root`` (offline; no server needed)."""
    return read_wandb_logs(sorted(root.rglob("run-*.wandb")))


def read_wandb_logs(logs: List[Path], workers: int = 4) -> List[RunRecord]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        runs = list(pool.map(inspect_wandb_log, logs))
    return [_wandb_fields_to_record(r["config"], r["summary"], r["tags"], r["job_type"],
                                    r["exit_code"], r["run_id"], str(p.parent))
            for r, p in zip(runs, logs)]


def read_wandb_api(spec: str, api: Any = None) -> List[RunRecord]:
    """Records of the runs in ``ENTITY/PROJECT/GROUP`` on a wandb server (``wandb.Api()``)."""
    parts = spec.split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"report.source=wandb:{spec}: expected wandb:ENTITY/PROJECT/GROUP")
    entity, project, group = parts
    if api is None:
        import wandb

        api = wandb.Api()
    records = []
    for run in api.runs(f"{entity}/{project}", filters={"group": group}):
        state = getattr(run, "state", "finished")
        exit_code = {"finished": 0, "running": None}.get(state, 1)
        summary = dict(getattr(run.summary, "_json_dict", None) or run.summary)
        records.append(_wandb_fields_to_record(dict(run.config), summary, list(run.tags or []),
                                               run.job_type or "", exit_code, run.id,
                                               f"wandb:{entity}/{project}/{run.id}"))
    return records


# ---------------------------------------------------------------- entry


def load(source: str, skipped: Optional[List[RunRecord]] = None) -> Tuple[List[RunRecord], str]:
    """Records of ``source`` (kind: sweep | wandb-dir | wandb-api): ``stage=task`` runs only;
    runs of other stages go to ``skipped`` (when given) and the log."""
    if not source:
        raise ValueError("report.source is empty: pass report.source=SWEEP_DIR, a wandb dir, "
                         "or wandb:ENTITY/PROJECT/GROUP")
    if source.startswith("wandb:"):
        kind, records = "wandb-api", read_wandb_api(source[len("wandb:"):])
    else:
        root = Path(source).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"report.source={source}: no such directory (a multirun "
                                    "sweep dir, a wandb dir, or wandb:ENTITY/PROJECT/GROUP)")
        if (root / "result.json").exists() or _job_dirs(root):
            kind, records = "sweep", read_sweep(root)
        elif any(root.rglob("run-*.wandb")):
            kind, records = "wandb-dir", read_wandb_dir(root)
        else:
            raise ValueError(f"report.source={source}: found neither job dirs (result.json, "
                             ".hydra/) nor wandb run logs (run-*.wandb) in it")
    kept = [r for r in records if r.stage == TASK_STAGE]
    other = [r for r in records if r.stage != TASK_STAGE]
    if other:
        log.info("skipped %d run(s) of other stages than task: %s", len(other),
                 ", ".join(f"{r.name} ({r.stage})" for r in other))
    if skipped is not None:
        skipped.extend(other)
    if not kept:
        raise ValueError(f"report.source={source}: no task runs in it ({len(records)} run(s) of "
                         f"stages {sorted({r.stage for r in records})}); point it at a "
                         "`stage=task` sweep")
    return kept, kind
