"""Where the TD student starts — the GD student (``gd=on``: ``task_distill.gd_checkpoint``,
else the cached one), or ``task_distill.gd_off_init`` (``gd=off``: ``random`` or
``teacher_layers``) — as a typed :class:`~tinyfw.models.start.StartPoint`, and the student
classifier built from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Tuple

from omegaconf import DictConfig

from tinyfw.config import is_on, plain
from tinyfw.models.start import Origin, StartPoint
from tinyfw.td.setup import Setup, weights


def check_gd_checkpoint(src: str) -> None:
    """``task_distill.gd_checkpoint`` must be a model directory (checked before any work)."""
    fix = ("point it at a GD student (the student/ directory of a stage=general run), or leave it empty "
           "to use the cached one (trained when missing)")
    if not Path(src).is_dir():
        what = "is not a directory" if Path(src).exists() else "does not exist"
        raise FileNotFoundError(f"task_distill.gd_checkpoint={src} {what}: {fix}")
    if not (Path(src) / "config.json").exists():
        raise FileNotFoundError(f"task_distill.gd_checkpoint={src} has no config.json (not an HF model "
                                f"directory): {fix}")


def start_point(cfg: DictConfig, home: Path, tracker: Any = None) -> StartPoint:
    """``gd=on``: the GD student (``task_distill.gd_checkpoint``, else the cached one, trained
    now when missing) in its own shape; ``gd=off``: ``task_distill.gd_off_init`` in
    ``student.shape``."""
    from tinyfw.models.classifier import checkpoint_shape

    if not is_on(cfg.gd):
        return StartPoint(Origin(plain(cfg.task_distill.gd_off_init)), cfg.student.shape)
    src = cfg.task_distill.gd_checkpoint
    if not src:
        from tinyfw.artefacts.gd import ensure_gd_student

        src = str(ensure_gd_student(cfg, home, tracker))
    check_gd_checkpoint(src)
    return StartPoint(Origin.gd, checkpoint_shape(src), src)  # the checkpoint's own shape


def build(cfg: DictConfig, home: Path, tracker: Any, s: Setup) -> Tuple[Any, List[int], StartPoint]:
    """The student classifier (after ``set_seed(seed)``) from its :func:`start_point`, checked
    against the teacher and its tokenizer: (model, layer mapping, start point)."""
    from transformers import set_seed

    from tinyfw.distill.recipes import check
    from tinyfw.models.classifier import build_classifier
    from tinyfw.models.load import check_tokenizer
    from tinyfw.models.student import validate_pair

    set_seed(cfg.seed)
    start = start_point(cfg, home, tracker)
    student, mapping = build_classifier(start.shape, plain(cfg.student.layer_map), s.teacher, start.init, s.task)
    check_tokenizer(s.tok, student.config, f"student {start.label}", start.gd_dir,
                    fix="start from a student distilled with this teacher's tokenizer")
    inter = bool(cfg.task_distill.get("intermediate", True))  # TD step 1 runs (the recipes' switch)
    attn = weights(cfg).get("attn", 0.0) if inter else 0.0
    check(cfg.distill, student.config, s.teacher.config, attn, intermediate=inter)
    validate_pair(student.config, s.teacher.config, mapping, attn)
    return student, mapping, start
