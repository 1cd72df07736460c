"""Student construction: layer mapping, validation against the teacher, and initialisation
(``random`` | ``teacher_layers`` | a checkpoint directory)."""

from __future__ import annotations

import copy
import os
from typing import Any, List, Sequence, Union

import torch
from transformers import BertConfig, BertModel, PreTrainedModel

from tinyfw.choices import LayerMap, values

STRATEGIES = values(LayerMap)


def layer_mapping(strategy: Union[str, Sequence[int]], n_student: int, n_teacher: int) -> List[int]:
    """For student layers 1..M, the teacher layer (1-based) each one learns from.

    ``uniform``: m·N/M (4 from 12 -> [3, 6, 9, 12]; N must be a multiple of M); ``nearest``:
    ⌈m·N/M⌉, the same as ``uniform`` whenever that exists and defined for any N, M (4 from 6 ->
    [2, 3, 5, 6]); ``top``: the last M layers; ``bottom``: the first M; or an explicit list of M
    teacher layers (a list, or a string "3,6,9,12").
    """
    if n_student < 1 or n_teacher < 1:
        raise ValueError(f"layer counts must be >= 1, got student {n_student}, teacher {n_teacher}")
    if isinstance(strategy, str) and strategy.strip().lower() in STRATEGIES:
        name = strategy.strip().lower()
        if name == "uniform":
            if n_teacher % n_student:
                raise ValueError(
                    f"uniform layer mapping needs the teacher's layers ({n_teacher}) to be a multiple "
                    f"of the student's ({n_student}); use student.layer_map=nearest "
                    f"({_nearest(n_student, n_teacher)}) or an explicit list, e.g. "
                    f"student.layer_map=[{','.join(str(x) for x in _nearest(n_student, n_teacher))}]"
                )
            step = n_teacher // n_student
            return [m * step for m in range(1, n_student + 1)]
        if name == "nearest":
            return _nearest(n_student, n_teacher)
        if n_student > n_teacher:
            raise ValueError(
                f"'{name}' layer mapping needs a student with at most the teacher's {n_teacher} layers "
                f"(student has {n_student}); give an explicit list instead"
            )
        if name == "top":
            return list(range(n_teacher - n_student + 1, n_teacher + 1))
        return list(range(1, n_student + 1))
    if isinstance(strategy, str):
        parts = [p for p in strategy.strip().strip("[]").replace(" ", "").split(",") if p]
        if not parts or not all(p.lstrip("-").isdigit() for p in parts):
            raise ValueError(
                f"unknown layer mapping {strategy!r}: use one of {', '.join(STRATEGIES)} "
                "or an explicit list of teacher layers (1-based), e.g. [3,6,9,12]"
            )
        strategy = [int(p) for p in parts]
    try:
        layers = list(strategy)
    except TypeError:
        raise ValueError(f"layer mapping must be a strategy name or a list, got {strategy!r}") from None
    bad = [x for x in layers if isinstance(x, bool) or not isinstance(x, int)]
    if bad:
        raise ValueError(f"explicit layer mapping must hold integers (1-based teacher layers), got {bad}")
    if len(layers) != n_student:
        raise ValueError(
            f"explicit layer mapping has {len(layers)} entries but the student has {n_student} layers: "
            "give one teacher layer per student layer"
        )
    out = [x for x in layers if not 1 <= x <= n_teacher]
    if out:
        raise ValueError(f"layer mapping entries {out} are outside the teacher's layers 1..{n_teacher}")
    return layers


def _nearest(m: int, n: int) -> List[int]:
    """⌈i·N/M⌉ for i = 1..M, in integer arithmetic (exactly i·N/M when M divides N)."""
    return [-(-i * n // m) for i in range(1, m + 1)]


def validate_pair(student_config: Any, teacher_config: Any, mapping: Sequence[int], attn_weight: float) -> None:
    """Check before training that student and teacher can be distilled with ``mapping``."""
    if student_config.vocab_size != teacher_config.vocab_size:
        raise ValueError(
            f"student vocabulary ({student_config.vocab_size}) differs from the teacher's "
            f"({teacher_config.vocab_size}): the student must share the teacher's tokenizer/vocabulary"
        )
    if attn_weight > 0 and student_config.num_attention_heads != teacher_config.num_attention_heads:
        raise ValueError(
            f"the attention loss compares heads one to one, but the student has "
            f"{student_config.num_attention_heads} heads and the teacher {teacher_config.num_attention_heads}: "
            "set student.shape.num_heads to the teacher's, or drop the loss with distill.weights.attn=0"
        )
    m, n = student_config.num_hidden_layers, teacher_config.num_hidden_layers
    if len(mapping) != m:
        raise ValueError(f"layer mapping has {len(mapping)} entries for a student with {m} layers")
    out = [x for x in mapping if not 1 <= int(x) <= n]
    if out:
        raise ValueError(f"layer mapping entries {out} are outside the teacher's layers 1..{n}")


def student_config(shape: Any, teacher_config: Any) -> BertConfig:
    """BertConfig of ``shape`` sharing the teacher's vocabulary and embedding conventions."""
    from tinyfw.models.load import bert_config

    return bert_config(shape, teacher_config.vocab_size,
                       type_vocab_size=getattr(teacher_config, "type_vocab_size", 2),
                       pad_token_id=getattr(teacher_config, "pad_token_id", 0),
                       layer_norm_eps=getattr(teacher_config, "layer_norm_eps", 1e-12),
                       hidden_act=getattr(teacher_config, "hidden_act", "gelu"))


def build_student(shape: Any, teacher: PreTrainedModel, init: str, mapping: Sequence[int]) -> BertModel:
    """A ``BertModel`` student of ``shape`` for ``teacher`` (any BERT-family model or head model).

    ``init``: ``random`` (BERT initialisation), ``teacher_layers`` (copy the teacher's embeddings,
    its layer ``mapping[m-1]`` into student layer m, and the pooler; only when hidden size, FFN
    size and head count match) or a checkpoint directory (loaded strictly: missing or unexpected
    keys are an error). The pooler is kept (so ``AutoModel.from_pretrained`` finds every key) but
    frozen: distillation never trains it, and a frozen unused module keeps DDP happy.
    """
    tcfg = teacher.config
    cfg = student_config(shape, tcfg)
    init = str(init)
    if init == "random":
        student = BertModel(cfg, add_pooling_layer=True)
    elif init == "teacher_layers":
        student = _from_teacher_layers(cfg, teacher, mapping)
    elif os.path.isdir(init):
        from tinyfw.models.load import load_strict

        student = load_strict(BertModel, init)
        got = student.config
        diffs = {
            k: (getattr(got, k), getattr(cfg, k))
            for k in ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads")
            if getattr(got, k) != getattr(cfg, k)
        }
        if diffs:
            raise ValueError(
                f"student checkpoint {init} does not have the configured shape "
                f"({', '.join(f'{k}: checkpoint {a} vs configured {b}' for k, (a, b) in diffs.items())}); "
                "set student.shape to the checkpoint's"
            )
    else:
        raise ValueError(
            f"unknown student init {init!r}: use random, teacher_layers or an existing checkpoint directory"
        )
    validate_pair(student.config, tcfg, mapping, attn_weight=0.0)
    if student.pooler is not None:
        student.pooler.requires_grad_(False)
    return student


def _from_teacher_layers(cfg: BertConfig, teacher: PreTrainedModel, mapping: Sequence[int]) -> BertModel:
    tcfg = teacher.config
    diffs = [
        f"{k} {getattr(cfg, k)} vs teacher {getattr(tcfg, k)}"
        for k in ("hidden_size", "intermediate_size", "num_attention_heads")
        if getattr(cfg, k) != getattr(tcfg, k)
    ]
    if diffs:
        raise ValueError(
            "student.init=teacher_layers copies teacher layers, so the widths must match the teacher's "
            f"({'; '.join(diffs)}): change student.shape or use student.init=random"
        )
    if cfg.max_position_embeddings > tcfg.max_position_embeddings:
        raise ValueError(
            f"student max_position_embeddings {cfg.max_position_embeddings} exceeds the teacher's "
            f"{tcfg.max_position_embeddings}; teacher_layers init cannot copy positions it lacks"
        )
    base = teacher.base_model
    student = BertModel(cfg, add_pooling_layer=True)
    validate_pair(cfg, tcfg, mapping, attn_weight=0.0)
    with torch.no_grad():
        emb = base.embeddings.state_dict()
        pos = "position_embeddings.weight"
        emb[pos] = emb[pos][: cfg.max_position_embeddings]
        own = student.embeddings.state_dict()
        student.embeddings.load_state_dict({k: v for k, v in emb.items() if k in own}, strict=False)
        missing = [k for k in own if k not in emb and not k.endswith("position_ids")]
        if missing:
            raise ValueError(f"teacher embeddings lack {missing}; cannot init from teacher layers")
        for m, n in enumerate(mapping):
            student.encoder.layer[m].load_state_dict(copy.deepcopy(base.encoder.layer[n - 1].state_dict()))
        if getattr(base, "pooler", None) is not None:
            student.pooler.load_state_dict(base.pooler.state_dict())
    return student
