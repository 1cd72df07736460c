"""What ``stage=bench`` measures: the models in table order (:func:`entries`: the teacher, the
student, extra checkpoints, a ``stage=export`` run's forms, the paper's BERT-base / TinyBERT4 /
TinyBERT6 shapes with random weights and their ONNX Runtime forms) and the token lengths of a
task's dev texts for the isolated dynamic-length timing (:func:`task_lengths`). ``b`` is
``cfg.bench``, passed explicitly."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

from tinyfw.bench import exported
from tinyfw.bench.compare import Entry, from_path, random_model
from tinyfw.config import ShapeCfg
from tinyfw.models.load import teacher_path

PAPER_VOCAB = 30522
PAPER_SHAPES = [  # key, label, shape (layers, hidden, FFN, heads)
    ("paper_bert_base", "BERT-base (paper shape)", ShapeCfg(12, 768, 3072, 12)),
    ("paper_tinybert4", "TinyBERT4 (paper shape)", ShapeCfg(4, 312, 1200, 12)),
    ("paper_tinybert6", "TinyBERT6 (paper shape)", ShapeCfg(6, 768, 3072, 12)),
]


def entries(b: Any, teacher_cfg: Any, student_shape: Any, seed: int, home: Path, work: Path) -> List[Entry]:
    """The models to measure, in table order (``b``: ``cfg.bench``; the teacher and the random
    student from ``teacher_cfg`` and ``student_shape``; ``work``: a scratch dir for on-the-fly
    ONNX files)."""
    out: List[Entry] = []
    man = exported.read_manifest(b.export_dir) if b.export_dir else {}
    if b.config_models:
        from transformers import AutoConfig

        tpath = teacher_path(teacher_cfg, home)
        if man.get("teacher_dir") and Path(man["teacher_dir"]).is_dir():  # the fine-tuned teacher: with accuracy
            out.append(Entry("teacher", "teacher fp32 (fine-tuned)", "config", from_path(man["teacher_dir"])))
        else:
            out.append(Entry("teacher", f"teacher ({teacher_cfg.name_or_path})", "config", from_path(tpath)))
        student = b.student_path or man.get("student", "")
        if student:
            out.append(Entry("student", f"student fp32 ({Path(student).name})", "config",
                             from_path(_existing(student, "bench.student_path"))))
        else:
            vocab = AutoConfig.from_pretrained(tpath).vocab_size
            out.append(Entry("student", "student (random, cfg.student.shape)", "config",
                             random_model(student_shape, vocab, seed)))
    for key, form in (man.get("forms") or {}).items():
        if key != "fp32":
            load = exported.onnx_dir(form["path"]) if form["kind"] == "onnx" else from_path(form["path"])
            out.append(Entry(f"export_{key}", f"student {form['label']}", "config", load))
    for p in b.models:
        name = Path(p).name
        out.append(Entry(f"model_{name}", name, "config", from_path(_existing(p, "bench.models"))))
    if b.paper_shapes:
        for key, label, shape in PAPER_SHAPES:
            out.append(Entry(key, label, "paper", random_model(shape, PAPER_VOCAB, seed)))
        if b.onnx:
            shape = PAPER_SHAPES[1][2]  # TinyBERT4
            vocab = (man.get("vocab") or {}).get("after") or PAPER_VOCAB
            for int8, form in ((False, "ONNX Runtime fp32"), (True, "ONNX Runtime int8")):
                out.append(Entry(f"paper_tinybert4_onnx{'_int8' if int8 else ''}",
                                 f"TinyBERT4 (paper shape, vocab {vocab}) {form}", "paper",
                                 exported.random_onnx(shape, vocab, seed, work, int8), scored=False))
    if not out:
        raise ValueError("nothing to benchmark: set bench.config_models=true, bench.paper_shapes=true "
                         "or list checkpoints in bench.models")
    return out


def task_lengths(task_cfg: Any, teacher_cfg: Any, home: Path, rounds: int, seed: int) -> tuple:
    """``rounds`` (``bench.dynamic_rounds``) token lengths of the task's dev texts (seeded
    sample, the teacher's tokenizer, truncated at ``task.max_seq_len``) and a note; ``([], why)``
    when the task does not load."""
    import random

    from tinyfw.data.tasks import load_task
    from tinyfw.models.load import teacher_tokenizer

    try:
        task = load_task(task_cfg, home)
        tpath = teacher_path(teacher_cfg, home)
        tok = teacher_tokenizer(teacher_cfg, home, tpath)
        split = task.splits[task.dev_split]
        cols = [list(split[c]) for c in task.text_columns]
        enc = tok(*cols, truncation=True, max_length=task_cfg.max_seq_len)["input_ids"]
    except Exception as exc:  # a missing asset or hub: report it, keep measuring
        return [], f"not measured (task {task_cfg.name}: {type(exc).__name__}: {exc})"
    lengths = [len(x) for x in enc]
    rng = random.Random(seed)
    sample = [rng.choice(lengths) for _ in range(int(rounds))]
    return sample, (f"{len(sample)} lengths drawn from the {len(lengths)} {task.dev_split} texts of task {task.name} "
                    f"(median {sorted(lengths)[len(lengths) // 2]}, max {max(lengths)} tokens, cut at {task_cfg.max_seq_len})")


def _existing(p: str, key: str) -> str:
    path = Path(p).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{key}: '{p}' is not a checkpoint directory (save_pretrained output)")
    return str(path.resolve())
