"""Every string choice of the config schema (:mod:`tinyfw.config`) as an Enum, so that a typo
fails at composition with a message naming the valid values. Each member's string is its
value (``str(Switch.on) == "on"``), as are its interpolations and cache-key parts."""

from __future__ import annotations

import functools
from enum import Enum
from typing import Any, Tuple


class _StrEnum(str, Enum):
    def __str__(self) -> str:  # interpolations (`${stage}`) and f-strings give the value
        return self.value


@functools.lru_cache(maxsize=None)
def values(kind: type) -> Tuple[str, ...]:
    """The strings of the enum ``kind``, in their order."""
    return tuple(m.value for m in kind)


def check(kind: type, value: Any, what: str) -> str:
    """``value`` (a member of the enum ``kind`` or its string) as its string, or a one-line
    ValueError naming ``what`` and the valid values: the check of a choice passed as a plain
    argument (the composed config's enums are checked by OmegaConf)."""
    v = getattr(value, "value", value)
    if not isinstance(v, str) or v not in values(kind):
        raise ValueError(f"unknown {what} {v!r}: use one of {', '.join(values(kind))}")
    return v


class Stage(_StrEnum):
    info = "info"  # print the resolved config and the asset inventory
    assets = "assets"  # provision the offline default assets
    general = "general"  # general distillation (GD)
    mlm = "mlm"  # masked-LM adaptation of an encoder, for the augmenter
    augment = "augment"  # word-replacement augmentation of a task's train split
    teacher = "teacher"  # fine-tune the teacher on a task
    task = "task"  # task-specific distillation (TD)
    report = "report"  # ablation table + chart from a sweep
    pipeline = "pipeline"  # the whole embedded-default story in one command
    bench = "bench"  # size / latency / throughput benchmark
    export = "export"  # pruned vocabulary, ONNX and int8 forms of a student, with their accuracy
    prune = "prune"  # structured pruning (heads, FFN neurons) of a student, recovery, then export


class Switch(_StrEnum):
    on = "on"
    off = "off"


class Precision(_StrEnum):
    auto = "auto"  # bf16 where the hardware runs it natively, else fp32 (tinyfw/precision.py)
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class LayerMap(_StrEnum):  # student.layer_map's names (it also takes an explicit list of teacher layers)
    uniform = "uniform"  # m*N/M (N a multiple of M)
    nearest = "nearest"  # ceil(m*N/M): uniform when exact, any N, M
    top = "top"  # the teacher's last M layers
    bottom = "bottom"  # the teacher's first M layers


class PruneData(_StrEnum):
    dev = "dev"
    train = "train"


class Device(_StrEnum):
    cpu = "cpu"
    cuda = "cuda"


class Schedule(_StrEnum):
    linear = "linear"  # linear warmup, then linear decay to 0
    constant = "constant"  # linear warmup, then constant (the reference's TD step 1: no schedule)


class TargetRule(_StrEnum):
    reference = "reference"  # purely alphabetic, not a stop word (the reference augmenter)
    alpha = "alpha"  # any word with a letter, stop words and negations included
    all = "all"  # any word that is not punctuation-only


class AugmentMode(_StrEnum):
    exact = "exact"  # batched masked-LM forwards (same candidates as reference)
    reference = "reference"  # the reference script: one forward per target word, two segments


class Budget(_StrEnum):
    steps = "steps"  # every variant runs max_steps optimizer steps: w/o DA sees as many examples
    epochs = "epochs"  # every variant runs `epochs` passes over its own rows (the paper): w/o DA fewer steps


class AttnMode(_StrEnum):
    masked = "masked"  # real tokens only (attention: valid rows x columns), invariant to extra padding
    reference = "reference"  # the reference code: scores <= -100 zeroed, plain means incl. padding


class GdOffInit(_StrEnum):
    random = "random"  # BERT initialisation
    teacher_layers = "teacher_layers"  # the teacher's embeddings and mapped layers (shapes must match)


class AttnKernel(_StrEnum):
    sdpa = "sdpa"  # torch's scaled_dot_product_attention (the inference default)
    eager = "eager"  # the explicit matmul-softmax


class WandbMode(_StrEnum):
    online = "online"
    offline = "offline"
    disabled = "disabled"


class LayerReduction(_StrEnum):
    sum = "sum"  # the reference: sum over mapped layers (each layer weighs as much as the embedding term)
    mean = "mean"  # mean over mapped layers (the embedding term then weighs M x a layer)


class Recipe(_StrEnum):
    tinybert = "tinybert"  # the default: embedding + attention scores MSE + hidden MSE; TD steps 1 and 2
    distilbert = "distilbert"  # GD: teacher MLM soft targets + student MLM + hidden cosine; TD: soft CE
    minilm = "minilm"  # GD: last-layer attention + value relations (any head count); TD: soft CE


class PredLoss(_StrEnum):
    soft_ce = "soft_ce"  # −softmax(z_T/t)·log_softmax(z_S/t) (TinyBERT)
    kl = "kl"  # KL(softmax(z_T/t) ‖ softmax(z_S/t)): soft CE minus the teacher's entropy
    mse = "mse"  # MSE of the logits


class AttnLoss(_StrEnum):
    mse = "mse"  # MSE of the pre-softmax scores (TinyBERT)
    kl = "kl"  # KL(teacher ‖ student) of the attention probabilities over valid cells


class HidnLoss(_StrEnum):
    mse = "mse"  # MSE(H_S W_h, H_T) (TinyBERT)
    cosine = "cosine"  # 1 − cos(H_S [W_h], H_T) per real token (DistilBERT); W_h only when widths differ


class Importance(_StrEnum):
    gradient = "gradient"  # |dL/d gate| per head / FFN neuron summed over batches (Michel et al. 2019)
    weight = "weight"  # L2 norm of the weights a head / neuron owns (no data)


class TaskType(_StrEnum):
    sequence = "sequence"  # one label (or value) per text or text pair
    token = "token"  # one tag per word: NER, POS (tokens column = words, tags column = one tag per word)
