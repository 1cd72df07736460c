"""An easy, keyword-separable sentiment task written as CSV files (for teacher/TD tests): a
tiny random model learns it in a few dozen steps, so "beats chance" is a real assertion."""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import List

POS = ["good", "great", "best", "love", "fun", "funny"]
NEG = ["bad", "worst", "boring", "nothing", "never", "awful"]
FILL = ["the", "movie", "film", "was", "story", "plot", "acting", "and", "it", "very", "really", "this"]


def write_kw_task(root: Path, n_train: int = 160, n_eval: int = 40, regression: bool = False) -> Path:
    """Write train/dev/test CSVs (columns text,label) under ``root``; labels neg/pos, or for
    ``regression`` a score = number of positive minus negative keywords."""
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for name, n in (("train", n_train), ("dev", n_eval), ("test", n_eval)):
        rows = []
        for i in range(n):
            words = [rng.choice(FILL) for _ in range(rng.randint(3, 7))]
            if regression:
                k_pos, k_neg = rng.randint(0, 2), rng.randint(0, 2)
                words += rng.sample(POS, k_pos) + rng.sample(NEG, k_neg)
                label: object = float(k_pos - k_neg)
            else:
                words.append(rng.choice(POS if i % 2 else NEG))
                label = "pos" if i % 2 else "neg"
            rng.shuffle(words)
            rows.append((" ".join(words), label))
        with (root / f"{name}.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows(rows)
    return root


def kw_overrides(root: Path, regression: bool = False) -> List[str]:
    """Overrides that declare the task purely in config (plus quick training settings)."""
    task = [
        "experiment=smoke", "task=custom", "task.name=custom",
        f"task.files.train={root / 'train.csv'}", f"task.files.validation={root / 'dev.csv'}",
        f"task.files.test={root / 'test.csv'}", "task.max_train_examples=-1",
        "teacher_ft.train.epochs=6", "teacher_ft.train.batch_size=16", "teacher_ft.train.eval_every=10",
        "task_distill.step1.batch_size=16", "task_distill.step2.batch_size=16", "task_distill.step2.epochs=4",
        "task_distill.step2.lr=5e-3", "task_distill.finetune.batch_size=16", "task_distill.finetune.epochs=4",
        "task_distill.finetune.lr=5e-3",
    ]
    task += ["task.regression=true", "task.labels=[]"] if regression else ["task.labels=[neg,pos]"]
    return task
