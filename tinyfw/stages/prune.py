"""``stage=prune``: structured pruning of a distilled student — attention heads and FFN
neurons removed for real — an optional recovery by TD step 2, then its exported forms.

Wiring only: a ``stage=task`` child run when ``prune.student`` is empty, the importance and
removal of :mod:`tinyfw.prune`, the recovery of :mod:`tinyfw.td.phases`, then ``stage=export``
as a child run. Usage and options: README "Structured pruning and serving"; result.json's
metrics: docs/internals.md "Structured pruning".
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Tuple

from omegaconf import DictConfig, OmegaConf

from tinyfw.config import plain
from tinyfw.stages import RunContext, StageResult

log = logging.getLogger("tinyfw")
# the overrides the child runs do not get (besides stage= and hydra.*): the distilling stage=task
# run gets everything else (gd, td, augment, ablation included), the stage=export run too
DISTIL_SKIP = ("export.", "bench.", "pipeline.")
EXPORT_SKIP = ("prune.", "bench.", "pipeline.")


def _check(cfg: DictConfig) -> None:
    p = cfg.prune
    if p.heads_per_layer < 0 or p.heads < 0 or p.ffn_size < 0 or p.recover_steps < 0:
        raise ValueError("prune.heads_per_layer, prune.heads, prune.ffn_size and prune.recover_steps must be >= 0")
    if p.heads_per_layer and p.heads:
        raise ValueError("set prune.heads_per_layer (every layer) or prune.heads (in all), not both")
    if not (p.heads_per_layer or p.heads or p.ffn_size):
        raise ValueError("nothing to prune: set prune.heads_per_layer (every layer), prune.heads (in all) "
                         "or prune.ffn_size")
    if p.batch_size < 1:
        raise ValueError(f"prune.batch_size={p.batch_size}: must be >= 1")
    if p.max_examples == 0 or p.max_examples < -1:
        raise ValueError(f"prune.max_examples={p.max_examples}: use a positive count, or -1 for the whole split")
    from tinyfw.data.tokens import TOKEN_TASKS

    if str(cfg.task.get("type", "sequence")) == "token" or cfg.task.name in TOKEN_TASKS:
        raise ValueError(f"stage=prune: task {cfg.task.name} is a token task (task.type=token); token-classification "
                         "students are not supported yet: prune a sequence-classification task's student")


def planned_structure(cfg: DictConfig) -> Tuple[List[int], List[int]]:
    """(heads, FFN neurons) per layer of the student to prune, read before any heavy work:
    ``prune.student``'s config, else the shape the distilling ``stage=task`` run trains
    (``task_distill.gd_checkpoint``'s with ``gd=on``, else ``student.shape``)."""
    from transformers import AutoConfig

    from tinyfw.config import is_on
    from tinyfw.prune.structure import structure

    p = cfg.prune
    if p.student:
        path = Path(p.student).expanduser().resolve()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"prune.student={p.student} is not an HF model directory (no config.json)")
        c = AutoConfig.from_pretrained(str(path))
        if any(a.endswith("ForTokenClassification") for a in c.architectures or []):
            raise ValueError(f"prune.student={p.student} is a token classifier ({c.architectures[0]}): token-"
                             "classification students are not supported yet; prune a sequence classifier")
        s = structure(c)
        return s["heads"], s["ffn"]
    gd_dir = cfg.task_distill.gd_checkpoint if is_on(cfg.gd) else ""
    if gd_dir and (Path(gd_dir) / "config.json").is_file():
        c = AutoConfig.from_pretrained(gd_dir)
        n, heads, ffn = c.num_hidden_layers, c.num_attention_heads, c.intermediate_size
    else:
        shape = cfg.student.shape
        n, heads, ffn = shape.num_layers, shape.num_heads, shape.intermediate_size
    return [heads] * n, [ffn] * n


def _student(cfg: DictConfig, ctx: RunContext) -> Path:
    if cfg.prune.student:
        return Path(cfg.prune.student).expanduser().resolve()  # checked by planned_structure
    from tinyfw.runner import passthrough_overrides, run_step, tinyfw_cmd

    extra = passthrough_overrides(DISTIL_SKIP)
    run_step("distil", tinyfw_cmd("stage=task", *extra, f"hydra.run.dir={ctx.run_dir / 'distil'}"), ctx.run_dir)
    return ctx.run_dir / "distil" / "student"


def _recovery_setup(cfg: DictConfig, ctx: RunContext, student_dir: Path, student_config: Any) -> Tuple[Any, Any]:
    """(the config, the TD :class:`~tinyfw.td.setup.Setup`) of the recovery: the teacher the
    student's run recorded and its training set, loaded before any pruning; the student must
    read the teacher's tokenizer (a vocabulary-pruned export cannot be recovered)."""
    from tinyfw.export.forms import student_origin
    from tinyfw.models.load import check_tokenizer
    from tinyfw.td.setup import load

    origin = student_origin(student_dir)
    rcfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    if origin.get("teacher_dir") and Path(origin["teacher_dir"]).is_dir() and not cfg.teacher_ft.path:
        rcfg.teacher_ft.path = origin["teacher_dir"]  # the teacher the student was distilled from
    s = load(rcfg, ctx.home, ctx.tracker, ctx.run_dir / "teacher_ft")
    check_tokenizer(s.tok, student_config, f"prune.student {student_dir}", str(student_dir),
                    fix="prune the student of a stage=task run (its teacher's tokenizer), or set prune.recover_steps=0")
    return rcfg, s


def _recover(cfg: DictConfig, ctx: RunContext, rcfg: DictConfig, s: Any, student: Any,
             student_dir: Path) -> Dict[str, Any]:
    """TD step 2 (:mod:`tinyfw.td.phases`) on the pruned student (``s``: :func:`_recovery_setup`)."""
    from tinyfw.artefacts import task_distill
    from tinyfw.td import phases as td

    phase = OmegaConf.merge(rcfg.task_distill.step2, {"max_steps": int(cfg.prune.recover_steps), "epochs": 1.0})
    fp = {**task_distill.fingerprint(rcfg, ctx.home), "prune": plain(cfg.prune), "student": str(student_dir)}
    common = dict(precision=td.td_precision(rcfg), tracker=ctx.tracker, seed=cfg.seed, resume=cfg.resume, fingerprint=fp,
                  group_by_length=bool(rcfg.task_distill.group_by_length))
    out = td.Trained()
    student.train()
    td.step2(rcfg, ctx.home, ctx.run_dir, s, student, phase, common, out)
    return {"steps": out.steps.get("step2", 0), "best_step": out.best_step, "teacher": str(s.teacher_dir),
            "teacher_logits": out.logits}


def run(cfg: DictConfig, ctx: RunContext) -> StageResult:
    from transformers import AutoTokenizer

    from tinyfw.data.collate import Collator
    from tinyfw.data.tasks import encode_splits, load_task
    from tinyfw.export.forms import student_origin
    from tinyfw.models.classifier import evaluate_all, load_classifier
    from tinyfw.prune import importance as imp
    from tinyfw.prune import structure as st

    _check(cfg)
    p = cfg.prune
    st.check_targets(*planned_structure(cfg), p.heads_per_layer, p.heads, p.ffn_size)  # before distilling
    student_dir = _student(cfg, ctx)
    task = load_task(cfg.task, ctx.home)
    tok = AutoTokenizer.from_pretrained(str(student_dir))
    model = load_classifier(str(student_dir), task)
    setup = _recovery_setup(cfg, ctx, student_dir, model.config) if p.recover_steps > 0 else None
    seq, bs = cfg.task.max_seq_len, cfg.task_distill.eval_batch_size
    enc = encode_splits(task, tok, seq, task.eval_splits)
    collate = Collator(tok.pad_token_id, task.regression)
    before = st.summary(model, seq)
    phases = {"original": evaluate_all(model, task, enc, collate, bs)}

    batches = imp.calibration_batches(task, tok, str(p.data), p.max_examples, p.batch_size, seq)
    scores = {"weight": imp.weight_scores(model)}
    if str(p.importance) == "gradient":
        scores["gradient"] = imp.gradient_scores(model, batches, task.regression)
    chosen = {k: imp.choose(v, model, p.heads_per_layer, p.heads, p.ffn_size) for k, v in scores.items()}
    heads, neurons = chosen[str(p.importance)]
    removed = imp.removal_record(chosen, st.ffn_sizes(model))
    model = st.prune(model, heads, neurons)
    after = st.summary(model, seq)
    log.info("pruned: heads %s -> %s, FFN %s -> %s, params %d -> %d", before["structure"]["heads"],
             after["structure"]["heads"], before["structure"]["ffn"], after["structure"]["ffn"],
             before["params"]["total"], after["params"]["total"])
    phases["pruned"] = evaluate_all(model, task, enc, collate, bs)
    recovery: Dict[str, Any] = {}
    if p.recover_steps > 0:
        recovery = _recover(cfg, ctx, *setup, model, student_dir)
        phases["recovered"] = evaluate_all(model, task, enc, collate, bs)
    out = ctx.run_dir / "student"
    if ctx.is_main:
        from tinyfw.train.checkpoint import drop_checkpoints

        st.save_pruned(model, tok, out, {"source": str(student_dir), "removed": removed, "criterion": str(p.importance)})
        drop_checkpoints(ctx.run_dir, ("step2",))  # only for resuming
    metrics = {"structure": {"before": before["structure"], "after": after["structure"]},
               "params": {"before": before["params"], "after": after["params"]},
               "flops_per_seq": {"before": before["flops"], "after": after["flops"],
                                 "ratio": before["flops"]["total"] / after["flops"]["total"]},
               "removed": removed, "criterion": str(p.importance), "phases": phases,
               "main_metric": task.main_metric, "recovery": recovery}
    outputs = {"student": str(out), "source": str(student_dir),
               "teacher": recovery.get("teacher") or student_origin(student_dir).get("teacher_dir")}
    if p.export and ctx.is_main:
        from tinyfw.runner import passthrough_overrides, run_step, tinyfw_cmd

        extra = passthrough_overrides(EXPORT_SKIP)
        edir = ctx.run_dir / "exported"
        _write_origin(ctx.run_dir, cfg, outputs)  # stage=export reads the task and teacher beside the student
        run_step("export", tinyfw_cmd("stage=export", *extra, f"export.student={out}", f"hydra.run.dir={edir}"),
                 ctx.run_dir)
        metrics["export"] = json.loads((edir / "result.json").read_text())["metrics"].get("forms")
        outputs["export"] = str(edir / "export")
    if ctx.is_main:
        from tinyfw.fsutil import atomic_write_text
        from tinyfw.prune.table import prune_table

        table = prune_table(metrics)
        atomic_write_text(ctx.run_dir / "prune.md", f"# Structured pruning of `{student_dir}` (task {task.name})\n\n{table}")
        print(table)
        outputs["markdown"] = str(ctx.run_dir / "prune.md")
    return StageResult(metrics=metrics, outputs=outputs)


def _write_origin(run_dir: Path, cfg: DictConfig, outputs: Dict[str, Any]) -> None:
    """A preliminary ``result.json`` (the runner overwrites it at the end) so that ``stage=export``
    of ``<run>/student`` finds its task and teacher, as for a ``stage=task`` student."""
    from tinyfw.fsutil import atomic_write_json

    atomic_write_json(run_dir / "result.json", {"stage": "prune", "status": "running", "outputs": outputs,
                                                "config": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)})
