"""Where a TD student starts, as a typed value: its :class:`Origin` (a GD student's directory,
BERT's random initialisation or the teacher's layers), that directory and its encoder shape.
Made by :func:`tinyfw.td.start.start_point`; read by the step-1 cache key
(:func:`tinyfw.artefacts.task_distill.step1_key_parts`), the classifier and the records."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Optional


class Origin(str, Enum):
    gd = "gd"  # a general-distillation student (a model directory)
    random = "random"  # BERT initialisation (gd=off, the paper's "w/o GD")
    teacher_layers = "teacher_layers"  # the teacher's embeddings and mapped layers (gd=off)


@dataclass(frozen=True)
class StartPoint:
    """The student's starting point: its origin, the GD student's directory (``Origin.gd``
    only) and the encoder shape it has."""

    origin: Origin
    shape: Any
    path: Optional[str] = None

    @property
    def gd_dir(self) -> Optional[str]:
        """The GD student's directory, else None."""
        return self.path if self.origin is Origin.gd else None

    @property
    def init(self) -> str:
        """:func:`~tinyfw.models.classifier.build_classifier`'s ``init``: the directory, or the origin."""
        return self.path if self.origin is Origin.gd else self.origin.value

    @property
    def label(self) -> str:
        """As result.json's ``init`` and the model card record it: ``gd:<path>``, ``random``,
        ``teacher_layers``."""
        return f"gd:{self.path}" if self.origin is Origin.gd else self.origin.value
