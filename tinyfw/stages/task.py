"""``stage=task``: TinyBERT's task-specific distillation (TD) of a student classifier.

Wiring (each piece lives elsewhere; this module only connects them):

1. the task (``tinyfw.data.tasks``), the fine-tuned teacher (``ensure_teacher``: cached, or
   fine-tuned now), and the train split — augmented when ``augment=on`` (``ensure_augmented``:
   the cache of ``stage=augment``, built when missing);
2. the student: ``gd=on`` starts from the general-distillation student
   (``task_distill.gd_checkpoint``, else ``ensure_gd_student``: cached or trained now);
   ``gd=off`` from ``task_distill.gd_off_init`` (default ``random``: BERT initialisation, the
   paper's "w/o GD"; ``teacher_layers`` copies mapped teacher layers when widths match). A
   fresh classification head is put on top;
3. ``td=on``: **step 1**, intermediate-layer distillation (embedding + attention + hidden
   losses with ``distill.weights``; the prediction weight is not used here) with
   ``task_distill.step1``; skipped when embd = attn = hidn = 0 ("w/o Trm" and friends are weight
   ablations). **Step 2**, prediction-layer distillation with ``task_distill.step2``: soft
   cross-entropy to the teacher's logits at ``distill.temperature`` (MSE to the teacher's
   output for regression) times ``weights.pred``; ``weights.pred=0`` ("w/o Pred") trains on the
   hard labels instead. The teacher's logits are computed once per training example and cached
   (``<home>/cache/teacher-logits/<key>``, keyed by the teacher and the tokenised train set),
   never recomputed per epoch or per run;
4. ``td=off`` ("w/o TD"): no distillation, the student is fine-tuned on hard labels with
   ``task_distill.finetune`` (on the augmented set when ``augment=on``);
5. evaluation on the dev split every ``eval_every`` steps and at the end of the last phase;
   the best weights by the task's main dev metric (MNLI: matched) are kept and evaluated on
   every labelled split.

Output: ``<run>/student`` — HF format with its head (``AutoModelForSequenceClassification``
loads it with no missing key; checked after saving) + tokenizer + ``README.md`` card.

result.json ``metrics`` (read by ``stage=report``)::

    {"dev": {metric: value}, "test": {...}, "validation_mismatched": {...} (MNLI),
     "teacher": {"dev": {...}, "test": {...}}, "main_metric": "accuracy",
     "retention": student/teacher main metric (test when labelled, else dev),
     "student": {"params", "non_embedding_params"}, "teacher_size": {...},
     "size_ratio": {"params", "non_embedding_params"} (teacher / student),
     "inference": {"student_examples_per_s", "teacher_examples_per_s", "speedup"} (dev set),
     "steps": {"step1": n, "step2": n} | {"finetune": n}, "best_step": n,
     "train_examples": n (distinct rows), "budget": "steps" | "epochs",
     "examples_seen": {phase: n}, "passes": {phase: examples_seen / train_examples},
     "teacher_logits": {"cached": bool, "computed": n},
     "projections": {"source", "loaded", "fresh", "reason"} (step 1 from the GD projections),
     "step1": {"cached": bool, "entry": path, "final": {...}} (cache/td-step1),
     "health": {"collapsed", "reasons", ...}, "collapsed": bool, "dev_curve": [{"step", metric}],
     "init": "gd:<path>" | "random" | "teacher_layers", "wall_time_s": s}

Values are fractions (accuracy 0.91, not 91). Flags gd/td/da sit in result.json ``flags``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Dict, Sequence, Tuple

import numpy as np
from omegaconf import DictConfig, OmegaConf

from tinyfw import cache, fingerprint
from tinyfw.config import plain
from tinyfw.data.tasks import Collator, TaskData, encode_splits, evaluate, load_task, predict_logits, tokenize
from tinyfw.models.load import check_tokenizer
from tinyfw.stages import RunContext, StageResult
from tinyfw.artefacts.teacher import ensure_teacher, teacher_metrics
from tinyfw.models.classifier import build_classifier, checkpoint_shape, evaluate_all, load_classifier, throughput

log = logging.getLogger(__name__)


def _on(v: Any) -> bool:
    return str(getattr(v, "value", v)) == "on"


# --------------------------------------------------------------------------------------
# student


def student_start(cfg: DictConfig, home: Path, tracker: Any = None) -> Tuple[str, str, Any]:
    """Where the student starts: (``init`` for :func:`build_classifier`, its label in
    result.json, its shape). ``gd=on``: the GD student (``task_distill.gd_checkpoint``, else
    the cached one, trained now when missing) in its own shape; ``gd=off``:
    ``task_distill.gd_off_init`` in ``student.shape``."""
    if not _on(cfg.gd):
        return cfg.task_distill.gd_off_init, cfg.task_distill.gd_off_init, cfg.student.shape
    src = cfg.task_distill.gd_checkpoint
    if not src:
        from tinyfw.artefacts.gd import ensure_gd_student

        src = str(ensure_gd_student(cfg, home, tracker))
    if not Path(src).is_dir():
        raise FileNotFoundError(f"GD checkpoint '{src}' (task_distill.gd_checkpoint) is not a directory")
    if not (Path(src) / "config.json").exists():
        raise FileNotFoundError(f"GD checkpoint {src} has no config.json (not an HF model directory)")
    return src, f"gd:{src}", checkpoint_shape(src)  # the checkpoint's own shape


# --------------------------------------------------------------------------------------
# teacher logits, computed once per training example and cached


def _data_digest(enc) -> str:
    h = hashlib.sha256()
    for col in ("input_ids", "token_type_ids"):
        if col in enc.column_names:
            for row in enc[col]:
                h.update(np.asarray(row, dtype=np.int32).tobytes())
                h.update(b"|")
    return h.hexdigest()[:16]


def _model_id(path: Path) -> str:
    p = Path(path)
    if "cache" in p.parts and p.parent.name == "teacher":
        return str(p.name)  # a content-addressed teacher: its key is its identity
    w = next((f for f in (p / "model.safetensors", p / "pytorch_model.bin") if f.exists()), None)
    return f"{p.resolve()}:{w.stat().st_mtime_ns if w else 0}"


def teacher_logits(teacher: Any, teacher_dir: Path, enc, collate: Collator, home: Path,
                   batch_size: int) -> Tuple[np.ndarray, bool]:
    """Teacher logits for every row of ``enc`` (float32 [N, C]) and whether they came from
    the cache. Cache key: teacher identity + digest of the tokenised rows."""
    parts = {"teacher": _model_id(teacher_dir), "data": _data_digest(enc), "rows": len(enc)}
    built = {"now": False}

    def build(tmp: Path) -> None:
        built["now"] = True
        logits = predict_logits(teacher, enc, collate, batch_size, desc="teacher logits")
        np.save(tmp / "logits.npy", logits)

    entry = cache.ensure(home, "teacher-logits", parts, build)
    logits = np.load(entry / "logits.npy")
    if logits.shape[0] != len(enc):
        raise RuntimeError(f"cached teacher logits {entry} have {logits.shape[0]} rows for {len(enc)} examples")
    return logits, not built["now"]


# --------------------------------------------------------------------------------------
# TD step 1, cached: a sweep over step-2 settings (the paper picks step 2's lr on dev) reuses it

STEP1_KIND = "td-step1"


def step1_cache_parts(cfg: DictConfig, teacher_dir: Path, init: str, enc, mapping, student: Any,
                      train_cfg: Any, precision: Any) -> Dict[str, Any]:
    """Everything the student after TD step 1 depends on (the cache key)."""
    gd = init[3:] if init.startswith("gd:") else ""
    distill = plain(cfg.distill)
    return {
        "teacher": _model_id(teacher_dir),
        "init": {"kind": init.split(":")[0], "model": _model_id(Path(gd)) if gd else init},
        "data": _data_digest(enc), "rows": len(enc),
        "student": {k: getattr(student.config, k) for k in ("num_hidden_layers", "hidden_size", "intermediate_size",
                                                              "num_attention_heads", "num_labels", "vocab_size")},
        "mapping": list(mapping),
        "distill": {"weights": {k: distill["weights"][k] for k in ("embd", "attn", "hidn")},
                    **{k: distill[k] for k in ("attn_mode", "layer_reduction", "share_projection")}},
        "train": {k: v for k, v in plain(train_cfg).items() if k not in ("log_every", "save_every", "eval_every",
                                                                         "num_workers")},
        "group_by_length": bool(cfg.task_distill.group_by_length),
        "precision": str(precision), "seed": int(cfg.seed), "v": 1,
    }


def cached_step1(home: Path, parts: Dict[str, Any], student: Any, train) -> Dict[str, Any]:
    """Run TD step 1 (``train() -> {"steps", "examples_seen", "final"}``) unless the student it
    produces for ``parts`` is cached; either way ``student`` ends with the step-1 weights."""
    from safetensors.torch import load_file, save_file

    trained: Dict[str, Any] = {}

    def prepare() -> None:  # every rank of a distributed run trains
        trained.update(train())

    def build(tmp: Path) -> None:
        save_file({k: v.detach().cpu().contiguous() for k, v in student.state_dict().items()},
                  str(tmp / "student.safetensors"))
        (tmp / "step1.json").write_text(json.dumps(trained, indent=2) + "\n")

    entry = cache.ensure(home, STEP1_KIND, parts, build, prepare=prepare)
    if trained:
        return {**trained, "cached": False, "entry": str(entry)}
    student.load_state_dict(load_file(str(entry / "student.safetensors")), strict=True)  # a cache hit
    log.info("TD step 1: reused the cached step-1 student %s", entry)
    return {**json.loads((entry / "step1.json").read_text()), "cached": True, "entry": str(entry)}


# --------------------------------------------------------------------------------------
# losses


def _model_inputs(batch: Dict[str, Any]) -> Dict[str, Any]:
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}


def _hard_loss(logits, labels, regression: bool):
    import torch.nn.functional as F

    if regression:
        return F.mse_loss(logits.view(-1).float(), labels.float())
    return F.cross_entropy(logits.float(), labels)


def make_step1_loss(distiller_attn: bool):
    import torch

    from tinyfw.models.capture import Features, capture

    def clone(f: Features) -> Features:
        return Features(embeddings=f.embeddings.clone(), hidden=[h.clone() for h in f.hidden],
                        scores=[s.clone() for s in f.scores], mask=f.mask.clone(), logits=None)

    def loss_fn(mods, batch):
        ids, mask, tt = batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")
        with torch.inference_mode():
            t = capture(mods["teacher"], ids, mask, tt, need_scores=distiller_attn)
        t = clone(t)
        s = capture(mods["student"], ids, mask, tt, need_scores=distiller_attn)
        s.logits = None
        total, losses = mods["distiller"](s, t)
        return total, {k: float(v.detach()) for k, v in losses.items() if k != "total"}

    return loss_fn


def make_step2_loss(pred_weight: float, temperature: float, regression: bool):
    from tinyfw.distill.losses import prediction_loss, regression_loss

    def loss_fn(mods, batch):
        logits = mods["student"](**_model_inputs(batch)).logits
        if pred_weight <= 0:  # "w/o Pred": hard labels
            return _hard_loss(logits, batch["labels"], regression), {}
        t = batch["t_logits"].to(logits.device)
        soft = regression_loss(logits, t) if regression else prediction_loss(logits, t, temperature)
        return pred_weight * soft, {"pred": float(soft.detach())}

    return loss_fn


def make_finetune_loss(regression: bool):
    def loss_fn(mods, batch):
        return _hard_loss(mods["student"](**_model_inputs(batch)).logits, batch["labels"], regression), {}

    return loss_fn


# --------------------------------------------------------------------------------------
# stage


def with_augmented(train, augmented, text_columns):
    """The augmented rows plus every original row the augmenter did not cover (it may be
    limited to the first ``augmenter.max_examples`` rows), with the train split's columns."""
    from datasets import concatenate_datasets

    cols = [*text_columns, "label"]
    covered = set(augmented["source_row"]) if "source_row" in augmented.column_names else set(range(len(train)))
    rest = [i for i in range(len(train)) if i not in covered]
    aug = augmented.select_columns(cols).cast(train.features.__class__({c: train.features[c] for c in cols}))
    orig = list(augmented["is_original"]) if "is_original" in augmented.column_names else [False] * len(aug)
    aug = aug.add_column("is_original", orig)
    if not rest:
        return aug
    extra = train.select(rest).select_columns(cols)
    extra = extra.add_column("is_original", [True] * len(extra))
    return concatenate_datasets([aug, extra])


def cap_examples(ds, cap: int, seed: int):
    """At most ``cap`` rows: every original row first (``is_original``), then a seeded sample
    of the augmented variants; dataset order kept."""
    if cap is None or cap < 0 or len(ds) <= cap:
        return ds
    rng = np.random.default_rng(seed)
    flags = np.asarray(ds["is_original"] if "is_original" in ds.column_names else [True] * len(ds), dtype=bool)
    orig, var = np.flatnonzero(flags), np.flatnonzero(~flags)
    if len(orig) >= cap:
        pick = rng.choice(orig, cap, replace=False)
    else:
        pick = np.concatenate([orig, rng.choice(var, cap - len(orig), replace=False)])
    return ds.select(np.sort(pick).tolist())


def soft_entropy(logits: np.ndarray, temperature: float) -> float:
    """Mean entropy of softmax(logits / T) over rows: the soft cross-entropy's lower bound."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    return float(-(p * np.log(np.clip(p, 1e-12, None))).sum(-1).mean())


def phase_budgets(td: DictConfig, names: Sequence[str] = ("step1", "step2", "finetune")) -> Dict[str, Any]:
    """The train settings of the phases ``names`` under ``task_distill.budget``: ``steps`` keeps
    ``max_steps`` (which must be set), ``epochs`` drops it so ``epochs`` counts. Checked before
    any work."""
    budget = str(td.budget)
    out = {}
    for name in names:
        tc = td[name]
        if budget == "steps" and tc.max_steps <= 0:
            raise ValueError(f"task_distill.budget=steps needs task_distill.{name}.max_steps > 0 (it is "
                             f"{tc.max_steps}): set it, or count epochs with task_distill.budget=epochs")
        out[name] = OmegaConf.merge(tc, {"max_steps": -1}) if budget == "epochs" else tc
    return out


def _seen(res: Any, tc: Any) -> int:
    """Training examples a phase drew (optimizer steps x batch x accumulation x processes)."""
    from tinyfw import dist

    return int(res.steps * tc.batch_size * max(1, tc.grad_accum) * dist.world_size())


def run(cfg: DictConfig, ctx: RunContext) -> StageResult:
    import torch
    from transformers import set_seed

    from tinyfw.distill.objective import Distiller, carry_over_projections
    from tinyfw.fsutil import atomic_dir
    from tinyfw.models.card import param_counts, write_card
    from tinyfw.models.student import validate_pair
    from tinyfw.train.health import check as check_health
    from tinyfw.train.loop import fit

    t_start = time.time()
    home, td = ctx.home, cfg.task_distill
    phases = phase_budgets(td, ("step1", "step2") if _on(cfg.td) else ("finetune",))
    task = load_task(cfg.task, home)
    teacher_dir = ensure_teacher(cfg, home, ctx.tracker, ctx.run_dir / "teacher_ft")
    if (teacher_dir / "tokenizer_config.json").exists():  # fine-tuned teachers carry their tokenizer
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(teacher_dir))
    else:
        from tinyfw.models.load import teacher_path, teacher_tokenizer

        tok = teacher_tokenizer(cfg.teacher, home, teacher_path(cfg.teacher, home))
    teacher = load_classifier(str(teacher_dir), task)
    check_tokenizer(tok, teacher.config, f"teacher {teacher_dir}", str(teacher_dir))
    collate = Collator(tok.pad_token_id, regression=task.regression)
    bs_eval = td.eval_batch_size
    enc = encode_splits(task, tok, cfg.task.max_seq_len, task.eval_splits)

    t_metrics = teacher_metrics(teacher_dir)
    if not any(k in t_metrics for k in ("dev", "test")):
        with torch.no_grad():
            t_metrics = evaluate_all(teacher, task, enc, collate, bs_eval)

    train = task.splits["train"]
    if _on(cfg.augment):
        from tinyfw.artefacts.augmented import ensure_augmented

        train = with_augmented(train, ensure_augmented(cfg, home, train, task.text_columns, ctx.tracker),
                               task.text_columns)
    train = cap_examples(train, td.max_train_examples, int(cfg.augmenter.seed))  # shared by run seeds
    enc_train = tokenize(train, task.text_columns, tok, cfg.task.max_seq_len)
    enc_train = enc_train.select_columns([c for c in ("input_ids", "attention_mask", "token_type_ids", "labels")
                                          if c in enc_train.column_names])

    set_seed(cfg.seed)
    src, init, shape = student_start(cfg, home, ctx.tracker)
    student, mapping = build_classifier(shape, plain(cfg.student.layer_map), teacher, src, task)
    check_tokenizer(tok, student.config, f"student {init}", init[3:] if init.startswith("gd:") else None,
                    fix="start from a student distilled with this teacher's tokenizer")
    w = {k: float(v) for k, v in OmegaConf.to_container(cfg.distill.weights).items()}
    validate_pair(student.config, teacher.config, mapping, w.get("attn", 0.0))

    dev = enc[task.dev_split]

    def dev_eval(mods):
        from tinyfw.models.capture import unwrap

        return evaluate(unwrap(mods["student"]), task, dev, collate, bs_eval)

    precision = td.precision if td.precision is not None else cfg.precision  # TD's own, else global
    common = dict(precision=str(precision), tracker=ctx.tracker, seed=cfg.seed,
                  group_by_length=bool(td.group_by_length),
                  fingerprint=fingerprint.for_task(cfg, home), resume=cfg.resume)
    steps: Dict[str, int] = {}
    seen: Dict[str, int] = {}
    logits_info: Dict[str, Any] = {}
    proj_info: Dict[str, Any] = {}
    step1_info: Dict[str, Any] = {}
    loss_floor = 0.0
    best_step = None
    if _on(cfg.td):
        inter = {k: w.get(k, 0.0) for k in ("embd", "attn", "hidn")}
        if any(v > 0 for v in inter.values()):
            distiller = Distiller(student.config.hidden_size, teacher.config.hidden_size, mapping, inter,
                                  share_projection=cfg.distill.share_projection, attn_mode=cfg.distill.attn_mode,
                                  temperature=cfg.distill.temperature, layer_reduction=cfg.distill.layer_reduction)
            proj_info = carry_over_projections(distiller, init[3:] if init.startswith("gd:") else None)
            if proj_info["loaded"]:
                log.info("TD step 1 starts from the GD projections %s (%s)", proj_info["loaded"], proj_info["source"])
            if proj_info["fresh"] and init.startswith("gd:"):
                log.warning("TD step 1: fresh random projections %s: %s", proj_info["fresh"], proj_info["reason"])
            log.info("TD step 1 (intermediate layers, weights %s) on %d examples", inter, len(enc_train))

            def step1() -> Dict[str, Any]:
                r1 = fit({"student": student, "distiller": distiller}, make_step1_loss(inter["attn"] > 0), enc_train,
                         collate, phases["step1"], out_dir=ctx.run_dir / "step1", frozen={"teacher": teacher},
                         desc="TD step 1", keep_checkpoints=1, log_prefix="step1/", **common)
                return {"steps": r1.steps, "examples_seen": _seen(r1, phases["step1"]),
                        "final": {k: v for k, v in r1.final.items() if k != "step"}}

            parts = step1_cache_parts(cfg, teacher_dir, init, enc_train, mapping, student, phases["step1"], precision)
            s1 = cached_step1(home, parts, student, step1)
            steps["step1"], seen["step1"] = s1["steps"], s1["examples_seen"]
            step1_info = {"cached": s1["cached"], "entry": s1["entry"], "final": s1["final"]}
        train2 = enc_train
        if w.get("pred", 0.0) > 0:
            logits, cached = teacher_logits(teacher, teacher_dir, enc_train, collate, home, bs_eval)
            logits_info = {"cached": cached, "computed": 0 if cached else len(enc_train)}
            train2 = enc_train.add_column("t_logits", [row.tolist() for row in logits])
            if not task.regression:  # the soft targets' entropy: the lowest step-2 loss possible
                loss_floor = soft_entropy(logits, float(cfg.distill.temperature))
        log.info("TD step 2 (prediction layer, pred weight %s, T=%s)", w.get("pred", 0.0), cfg.distill.temperature)
        r2 = fit({"student": student}, make_step2_loss(w.get("pred", 0.0), cfg.distill.temperature, task.regression),
                 train2, collate, phases["step2"], out_dir=ctx.run_dir / "step2", evaluate=dev_eval, desc="TD step 2",
                 eval_key=task.main_metric, restore_best=True, keep_checkpoints=1, log_prefix="step2/", **common)
        steps["step2"], best_step = r2.steps, (r2.best_eval or {}).get("step")
        seen["step2"] = _seen(r2, phases["step2"])
        last_phase = r2
    else:
        log.info("td=off: fine-tuning the student on hard labels (%d examples)", len(enc_train))
        r = fit({"student": student}, make_finetune_loss(task.regression), enc_train, collate, phases["finetune"],
                out_dir=ctx.run_dir / "finetune", evaluate=dev_eval, desc="fine-tune", eval_key=task.main_metric,
                restore_best=True, keep_checkpoints=1, log_prefix="finetune/", **common)
        steps["finetune"], best_step = r.steps, (r.best_eval or {}).get("step")
        seen["finetune"] = _seen(r, phases["finetune"])
        last_phase = r

    student.eval()
    with torch.no_grad():
        s_metrics = evaluate_all(student, task, enc, collate, bs_eval)
        loss_key = "pred" if any("pred" in h for h in last_phase.history) else "loss"
        health = check_health(predict_logits(student, dev, collate, bs_eval), task.regression, task.num_labels,
                              [h[loss_key] for h in last_phase.history if loss_key in h], loss_floor)
        speed_s = throughput(student, dev, collate, bs_eval)
        speed_t = throughput(teacher, dev, collate, bs_eval)
    if health["collapsed"]:
        log.warning("the student COLLAPSED: %s (marked in result.json; the report shows it apart)",
                    "; ".join(health["reasons"]))
    s_size, t_size = param_counts(student), param_counts(teacher)
    main = task.main_metric
    ref = "test" if "test" in s_metrics and "test" in t_metrics else "dev"
    retention = None
    if ref in s_metrics and ref in t_metrics and t_metrics[ref].get(main):
        retention = s_metrics[ref][main] / t_metrics[ref][main]
    metrics: Dict[str, Any] = {
        **s_metrics,
        "teacher": {k: v for k, v in t_metrics.items() if isinstance(v, dict)},
        "main_metric": main,
        "retention": retention,
        "retention_split": ref,
        "student": s_size,
        "teacher_size": t_size,
        "size_ratio": {k: t_size[k] / max(1, s_size[k]) for k in s_size},
        "inference": {"student_examples_per_s": round(speed_s, 1), "teacher_examples_per_s": round(speed_t, 1),
                      "speedup": round(speed_s / max(speed_t, 1e-9), 2)},
        "steps": steps,
        "best_step": best_step,
        "train_examples": len(enc_train),
        "budget": str(td.budget),
        "examples_seen": seen,
        "passes": {k: round(v / max(1, len(enc_train)), 2) for k, v in seen.items()},
        "original_train_examples": len(task.splits["train"]),
        "teacher_logits": logits_info,
        "projections": proj_info,
        "step1": step1_info,
        "health": health,
        "dev_curve": [{k: v for k, v in e.items() if k == "step" or k == task.main_metric} for e in last_phase.evals],
        "collapsed": health["collapsed"],
        "init": init,
    }

    out = ctx.run_dir / "student"
    if ctx.is_main:
        flags = {"gd": str(cfg.gd), "td": str(cfg.td), "da": str(cfg.augment)}
        with atomic_dir(out, overwrite=True) as tmp:
            student.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
            write_card(tmp, title=f"TinyBERT-style student for {task.name}",
                       summary=(f"Distilled by tinyfw stage=task from the fine-tuned teacher `{teacher_dir}` "
                                f"({cfg.teacher.name_or_path}); flags {flags}; init {init}."),
                       task=task.describe(), metrics={**s_metrics, **{f"teacher {k}": v for k, v in metrics['teacher'].items()}},
                       size=s_size, config={**flags, "layer_map": mapping, "weights": w,
                                            "temperature": cfg.distill.temperature, "steps": steps,
                                            "train_examples": len(enc_train), "max_seq_len": cfg.task.max_seq_len,
                                            "seed": cfg.seed}, name=str(out))
        reloaded = load_classifier(str(out), task)  # strict: no missing/unexpected keys
        probe = dev.select(range(min(8, len(dev))))
        same = np.allclose(predict_logits(reloaded, probe, collate), predict_logits(student, probe, collate), atol=1e-4)
        if not same:
            raise RuntimeError(f"the saved student {out} does not reproduce the trained model's outputs")
        for phase in ("step1", "step2", "finetune"):  # training state is only for resuming a killed run
            shutil.rmtree(ctx.run_dir / phase / "checkpoints", ignore_errors=True)
    metrics["wall_time_s"] = round(time.time() - t_start, 1)
    for s in ("dev", "test"):
        if s in s_metrics:
            log.info("student %s %s (teacher %s)", s, s_metrics[s], metrics["teacher"].get(s))
    return StageResult(metrics=metrics, outputs={"student": str(out), "teacher": str(teacher_dir)})
