"""What the TD phases train on and are evaluated on: the task, the fine-tuned teacher with its
tokenizer and metrics, and the tokenised training set (augmented when ``augment=on``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict

from omegaconf import DictConfig, OmegaConf

from tinyfw.artefacts.teacher import ensure_teacher, teacher_metrics
from tinyfw.config import is_on
from tinyfw.data.collate import Collator
from tinyfw.data.tasks import TaskData, encode_splits, load_task
from tinyfw.data.trainset import cap_examples, encode_train, with_augmented
from tinyfw.models.classifier import load_classifier, scores
from tinyfw.models.load import check_tokenizer


def weights(cfg: DictConfig) -> Dict[str, float]:
    """``distill.weights`` as floats."""
    return {k: float(v) for k, v in OmegaConf.to_container(cfg.distill.weights).items()}


@dataclass
class Setup:
    """What the phases train on and are evaluated on."""

    task: TaskData
    teacher_dir: Path
    tok: Any
    teacher: Any
    collate: Collator
    enc: Dict[str, Any]  # the tokenised evaluation splits
    t_metrics: Dict[str, Any]  # the teacher's, per split
    train: Any  # the tokenised training set (augmented when augment=on, capped)

    @property
    def dev(self) -> Any:
        return self.enc[self.task.dev_split]


def teacher_tokenizer(cfg: DictConfig, home: Path, teacher_dir: Path) -> Any:
    """The fine-tuned teacher's own tokenizer, else the pre-trained teacher's."""
    if (teacher_dir / "tokenizer_config.json").exists():  # fine-tuned teachers carry their tokenizer
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(teacher_dir))
    from tinyfw.models.load import teacher_path, teacher_tokenizer as pretrained_tokenizer

    return pretrained_tokenizer(cfg.teacher, home, teacher_path(cfg.teacher, home))


def load(cfg: DictConfig, home: Path, tracker: Any, work_dir: Path) -> Setup:
    """The task, the fine-tuned teacher (cached, or fine-tuned now in ``work_dir``) with its
    tokenizer and metrics (an external teacher's measured now), and the training set:
    augmented when ``augment=on`` (cached, or built now), capped at
    ``task_distill.max_train_examples``."""
    task = load_task(cfg.task, home)
    teacher_dir = ensure_teacher(cfg, home, tracker, work_dir)
    tok = teacher_tokenizer(cfg, home, teacher_dir)
    teacher = load_classifier(str(teacher_dir), task)
    check_tokenizer(tok, teacher.config, f"teacher {teacher_dir}", str(teacher_dir))
    collate = Collator(tok.pad_token_id, regression=task.regression)
    bs = cfg.task_distill.eval_batch_size
    enc = encode_splits(task, tok, cfg.task.max_seq_len, task.eval_splits)
    t_metrics = teacher_metrics(teacher_dir) or scores(teacher, task, enc, collate, bs)
    train = task.splits["train"]
    if is_on(cfg.augment):
        from tinyfw.artefacts.augmented import ensure_augmented

        train = with_augmented(train, ensure_augmented(cfg, home, train, task.text_columns, tracker),
                               task.text_columns)
    train = cap_examples(train, cfg.task_distill.max_train_examples, int(cfg.augmenter.seed))  # shared by run seeds
    return Setup(task, teacher_dir, tok, teacher, collate, enc, t_metrics,
                 encode_train(train, task.text_columns, tok, cfg.task.max_seq_len))
