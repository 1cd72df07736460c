"""``stage=export``: a distilled student in the forms that run in production.

``python -m tinyfw stage=export export.student=<run>/student [task=<its task>]`` writes the
pruned-vocabulary, ONNX and int8 ONNX forms, with their checks and cards, into
``<run dir>/export/`` (README "Deployment: pruned, ONNX and int8 students"); the forms are made
by :mod:`tinyfw.export.write` and compared by :mod:`tinyfw.export.forms`. result.json's
metrics: docs/internals.md "Exported forms".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from omegaconf import DictConfig

from tinyfw.data.tasks import TaskData, load_task
from tinyfw.export.forms import DIRS, LABELS, checks, evaluate_forms, forms_table, student_origin, task_texts
from tinyfw.export.write import form_card, onnx_forms, pruned_form
from tinyfw.fsutil import atomic_write_json, atomic_write_text, dir_size
from tinyfw.models.classifier import load_classifier
from tinyfw.stages import RunContext, StageResult


def _check_inputs(cfg: DictConfig) -> Path:
    e = cfg.export
    if not e.student:
        raise ValueError("export.student is empty: pass export.student=<run>/student (a stage=task output)")
    student = Path(e.student).expanduser().resolve()
    if not (student / "config.json").is_file():
        raise FileNotFoundError(f"export.student={e.student} is not an HF model directory (no config.json)")
    if e.int8 and not e.onnx:
        raise ValueError("export.int8=true quantizes the ONNX form: set export.onnx=true too (or export.int8=false)")
    if e.onnx:
        for mod, pkg in (("onnxruntime", "onnxruntime"), ("onnxscript", "onnxscript"), ("onnx", "onnx")):
            try:
                __import__(mod)
            except ImportError:
                raise ImportError(f"export.onnx needs {pkg}: pip install '.[export]' (or export.onnx=false)") from None
    return student


def _texts(cfg: DictConfig, home: Path, task: TaskData) -> List[Any]:
    """The texts whose word pieces the pruned vocabulary keeps: the task's, plus the GD corpus
    with ``export.prune_corpus``."""
    texts: List[Any] = list(task_texts(task))
    if cfg.export.prune_corpus:
        from tinyfw.data.corpus import load_corpus

        c = cfg.corpus
        texts += list(load_corpus(c.source, home, c.config_name, c.split, c.text_column, max_docs=c.max_docs)["text"])
    return texts


def _card(out: Path, key: str, cfg: DictConfig, task: TaskData, metrics: Dict[str, Any], size: Dict[str, int],
          origin: Dict[str, Any], info: Dict[str, Any]) -> None:
    from tinyfw.data.tasks import GLUE, GLUE_HUB
    from tinyfw.models.card import hub_model_name

    e = cfg.export
    form_card(out, key, task, metrics, size, info, source=e.student,
              base_model=e.base_model or hub_model_name(str(origin.get("teacher") or cfg.teacher.name_or_path)),
              datasets=list(e.datasets) or ([GLUE_HUB] if task.name in GLUE else [task.name]), license=e.license)


def run(cfg: DictConfig, ctx: RunContext) -> StageResult:
    from transformers import AutoTokenizer

    from tinyfw.models.card import card_size

    e = cfg.export
    student_dir = _check_inputs(cfg)
    origin = student_origin(student_dir)
    if origin.get("task") and origin["task"] != cfg.task.name:
        raise ValueError(f"the student was trained on task '{origin['task']}' but task={cfg.task.name}: "
                         f"pass task={origin['task']}")
    task = load_task(cfg.task, ctx.home)
    tok = AutoTokenizer.from_pretrained(str(student_dir))
    models: Dict[str, Any] = {"fp32": (load_classifier(str(student_dir), task), tok)}
    out = ctx.run_dir / "export"
    info: Dict[str, Any] = {"vocab": {"before": len(tok), "after": len(tok)}}
    if e.prune:
        info.update(pruned_form(student_dir, task, tok, _texts(cfg, ctx.home, task), out / DIRS["pruned"]))
        pdir = str(out / DIRS["pruned"])
        models["pruned"] = (load_classifier(pdir, task), AutoTokenizer.from_pretrained(pdir))
    base, base_tok = models["pruned" if e.prune else "fp32"]
    if e.onnx:
        from tinyfw.export.onnx import opset_of

        models.update(onnx_forms(base, base_tok, out, e.opset, e.threads, e.int8, e.per_channel))
        info["onnx"] = {"opset": opset_of(out / DIRS["onnx"] / "model.onnx"), "exporter": "torch.onnx.export(dynamo=True)"}
    info["checks"] = checks(models, task, cfg.task.max_seq_len, e.eval_batch_size, e.atol)
    forms = evaluate_forms(models, task, cfg.task.max_seq_len, e.eval_batch_size)
    for key, f in forms.items():
        model = models[key][0]
        path = student_dir if key == "fp32" else out / DIRS[key]
        size = model.size_bytes() if key.startswith("onnx") else dir_size(path / "model.safetensors")
        f.update(size_bytes=size, vocab=model.config.vocab_size, path=str(path), label=LABELS[key],
                 kind="onnx" if key.startswith("onnx") else "torch")
        if key != "fp32":
            _card(path, key, cfg, task, {s: f[s] for s in ("dev", "test") if s in f}, card_size(base), origin, info)
    main = task.main_metric
    atomic_write_json(out / "export.json", {"student": str(student_dir), "teacher_dir": origin.get("teacher_dir"),
                                            "task": task.name, "main_metric": main, "forms": forms, **info})
    table = forms_table(forms, main)
    atomic_write_text(out / "export.md", f"# Exported forms of `{student_dir}` (task {task.name})\n\n{table}")
    print(table)
    if e.push_to_hub:
        from tinyfw.export.hub import push

        push(e.push_to_hub, Path(forms["pruned" if e.prune else "fp32"]["path"]),
             [out / DIRS[k] for k in forms if k.startswith("onnx")])
    return StageResult(metrics={"main_metric": main, "forms": forms, **info},
                       outputs={"export": str(out), **{k: f["path"] for k, f in forms.items()}})
