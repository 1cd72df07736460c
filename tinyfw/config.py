"""Typed config schema, registered in Hydra's ConfigStore.

The YAML tree in ``conf/`` fills these dataclasses (the values: the default budgets, what
each config group sets); a typo in a key or an invalid choice (the enums of
:mod:`tinyfw.choices`) fails at composition time with a message naming the valid choices.
Stage code reads the sub-trees it needs and passes explicit arguments further down:
losses, data sources and model builders never see the whole config.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from tinyfw.choices import (  # noqa: F401 - the schema's choices (tinyfw/choices.py), importable from here too
    AttnKernel, AttnMode, AugmentMode, Budget, Device, GdOffInit, Importance, LayerReduction, Precision, PruneData,
    Schedule, Stage, Switch, TargetRule, TaskType, WandbMode,
)
from tinyfw.choices import AttnLoss, HidnLoss, PredLoss, Recipe  # noqa: F401 - the recipes' choices (issue 23)


@dataclass
class ShapeCfg:
    """Shape of a BERT encoder built from config (random weights)."""

    num_layers: int = 4
    hidden_size: int = 312
    intermediate_size: int = 1200
    num_heads: int = 12
    max_position_embeddings: int = 512


@dataclass
class TeacherCfg:
    # An asset short name (`minilm-l6`), a hub name (`bert-base-uncased`), a local
    # directory, or `random` (a model of `shape` with random weights: smoke runs, benches).
    # Set by the `teacher` group (conf/teacher/).
    name_or_path: str = MISSING
    # Tokenizer: "" = the model's own; `tiny` = a small built-in WordPiece vocabulary
    # (letters, digits, punctuation and common words) used with random models.
    tokenizer: str = ""
    shape: ShapeCfg = field(default_factory=lambda: ShapeCfg(2, 64, 128, 4))  # of `random` (teacher=tiny)
    seed: int = 42  # weights of `random` (ignored for pre-trained teachers)


@dataclass
class StudentCfg:
    # The defaults are TinyBERT4 (student=tinybert4); the `student` group (conf/student/) sets others.
    shape: ShapeCfg = field(default_factory=ShapeCfg)
    # random | teacher_layers | every_other (DistilBERT: teacher layers 1,3,5,.. when widths match, else
    # random; GD only) | path to a checkpoint directory (HF format)
    init: str = "random"
    # uniform (m*N/M) | nearest (ceil(m*N/M): uniform when exact, any N, M; 2,3,5,6 for the 6-layer
    # MiniLM default) | top | bottom | explicit list of teacher layers (1-based), one per student layer
    layer_map: Any = "nearest"


@dataclass
class LossWeights:
    embd: float = 1.0
    attn: float = 1.0
    hidn: float = 1.0
    pred: float = 1.0
    # the other recipes' losses (0: off; at 0 they enter no cache key): MiniLM's last-layer
    # attention and value relations, DistilBERT's student masked LM and teacher-MLM soft targets (GD)
    rel_attn: float = 0.0
    rel_value: float = 0.0
    mlm: float = 0.0
    mlm_soft: float = 0.0


@dataclass
class DistillCfg:
    weights: LossWeights = field(default_factory=LossWeights)
    # attention and hidden losses over the mapped layers: sum (the reference code) or mean
    layer_reduction: LayerReduction = LayerReduction.sum
    share_projection: bool = False  # one W for embeddings and hidden states (reference code)
    # masked: real tokens only (attention: valid rows x columns), invariant to extra padding;
    # reference: the reference code (scores <= -100 zeroed, plain means incl. padding); all token losses
    attn_mode: AttnMode = AttnMode.masked
    temperature: float = 1.0
    # Loss variants and recipes (tinyfw/distill/recipes.py; `recipe=` sets them). At their
    # defaults (TinyBERT's) these keys enter no cache key, so the default path keeps its keys.
    recipe: Recipe = Recipe.tinybert  # the label the report groups by (`recipe=` group sets it)
    pred_loss: PredLoss = PredLoss.soft_ce  # TD step 2: soft_ce | kl | mse
    attn_loss: AttnLoss = AttnLoss.mse  # scores MSE | probabilities KL (teacher ‖ student)
    hidn_loss: HidnLoss = HidnLoss.mse  # MSE through W_h | cosine
    hard_label_weight: float = 0.0  # α: + α·(the task's hard-label loss) in TD step 2
    # MiniLM relation heads shared by teacher and student (Q/K/V split into this many): 0 = the
    # largest count <= the teacher's heads that divides both widths
    relation_heads: int = 0
    mlm_temperature: float = 2.0  # DistilBERT's soft targets over the teacher's MLM distribution


@dataclass
class TrainCfg:
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    schedule: Schedule = Schedule.linear  # after warmup: linear decay | constant
    max_grad_norm: float = 1.0
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    log_every: int = 10
    save_every: int = 0  # checkpoint every N optimizer steps (0: only at the end)
    eval_every: int = 0  # evaluate every N optimizer steps (0: only at the end)
    num_workers: int = 0
    grad_checkpointing: bool = False


@dataclass
class CorpusCfg:
    # `offline` (the assets stage's text), a hub dataset name, or local file(s)
    # (.txt / .json / .jsonl / .parquet; a glob or a directory). Set by the `corpus` group (conf/corpus/).
    source: str = MISSING
    config_name: Optional[str] = None
    split: str = "train"
    text_column: str = "text"
    streaming: bool = False
    max_seq_len: int = 128  # GD segments (the paper's 128)
    max_docs: int = -1  # keep only the first N documents (-1: all)
    num_proc: int = 1
    heldout_fraction: float = 0.02


@dataclass
class TaskCfg:
    # A registry name (`mr`, `sst2`, `cola`, `mnli`, ... ) or `custom` (files below); set by
    # the `task` group (conf/task/)
    name: str = MISSING
    files: Dict[str, str] = field(default_factory=dict)  # custom: split -> path
    text_columns: List[str] = field(default_factory=list)  # custom: one or two columns
    label_column: str = "label"
    # custom: label names in their order; [] = the sorted distinct values of the train split (logged)
    labels: List[str] = field(default_factory=list)
    regression: bool = False  # one number per example (STS-B; custom: labels stay [])
    max_seq_len: int = 64  # the paper's length for single-sentence tasks
    max_train_examples: int = -1
    max_eval_examples: int = -1
    hub_path: str = ""  # GLUE tasks: dataset path for load_dataset ("" = nyu-mll/glue)
    # token classification (NER, POS): `token`; files are CoNLL-style text (one `word ... tag`
    # line per word) or JSON/JSONL/parquet with list columns; see tinyfw/data/tokens.py
    type: TaskType = TaskType.sequence
    tokens_column: str = "tokens"  # token tasks, list files / hub: the words
    tags_column: str = "ner_tags"  # token tasks, list files / hub: one tag (name or index) per word
    tag_field: int = -1  # token tasks, CoNLL text files: the tag's column on a line (-1: the last)


# TaskCfg keys that enter cache keys only when they differ from these defaults, so that the
# keys of sequence tasks stay what they were before token tasks existed
TASK_KEY_DEFAULTS = {"type": "sequence", "tokens_column": "tokens", "tags_column": "ner_tags", "tag_field": -1}


def task_key(task: Any) -> Dict[str, Any]:
    """A task config as a cache key's part: plain values, the token-task keys only when set."""
    out = plain(task)
    return {k: v for k, v in out.items() if not (k in TASK_KEY_DEFAULTS and v == TASK_KEY_DEFAULTS[k])}


@dataclass
class GeneralCfg:
    seed: int = 42  # the GD student's own seed (init, data order); the sweep `seed` does not change it
    train: TrainCfg = field(default_factory=TrainCfg)  # the embedded budget: conf/config.yaml


@dataclass
class MlmCfg:
    seed: int = 42  # masking, data order; the sweep `seed` does not change the masked LM
    base: str = "teacher"  # encoder to adapt: `teacher` (the teacher config) or a name/path
    mask_prob: float = 0.15
    # null = the global `precision`; auto (default): bf16 where native (~1.6x faster than fp32 for
    # this fine-tune on an AVX512-BF16 CPU), else fp32 (tinyfw/precision.py)
    precision: Optional[Precision] = Precision.auto
    eval_examples: int = 200  # held-out segments for the before/after top-1/top-15
    train: TrainCfg = field(default_factory=TrainCfg)  # the embedded budget: conf/config.yaml


@dataclass
class AugmentCfg:
    # masked LM: `mlm` (the output of stage=mlm, built when missing), a hub name or a path
    mlm: str = "mlm"
    vectors: str = "glove-50d"  # asset name, a gensim KeyedVectors file, or a GloVe .txt file
    n_aug: int = 20
    p_replace: float = 0.4
    top_k: int = 15
    seed: int = 42
    mode: AugmentMode = AugmentMode.exact
    # autocast of the masked-LM forwards; fp32 by default (bf16 changes the candidates); auto accepted
    precision: Precision = Precision.fp32
    batch_size: int = 128  # masked sequences per forward (exact mode)
    # masked input also carries the original sentence as segment B (the reference's input);
    # off in the embedded default: half the tokens per forward (BENCHMARKS.md: top-15 overlap 0.92)
    second_segment: bool = False
    multi_mask: bool = False  # approximation: several far-apart words masked per forward
    multi_mask_gap: int = 8  # multi_mask: min distance (word pieces) between masks
    # words that may be replaced: reference (alphabetic, not a stop word: the reference code) |
    # alpha (any word with a letter, stop words included) | all (not punctuation-only)
    targets: TargetRule = TargetRule.reference
    alpha_only: bool = True  # drop non-alphabetic masked-LM candidates
    stopwords: bool = True  # drop stop-word masked-LM candidates
    max_examples: int = -1  # augment only the first N training rows (-1: all)
    shard_size: int = 256  # rows per resumable shard
    # augment only the words TD reads (the first task.max_seq_len word pieces; of a pair, each
    # segment's longest_first share); words beyond stay as they are. Keys change only when a text is cut
    window: bool = True


@dataclass
class TeacherFtCfg:
    train: TrainCfg = field(default_factory=TrainCfg)  # the embedded budget: conf/config.yaml
    path: str = ""  # use this fine-tuned teacher instead of building one
    seed: int = 42  # head init, data order; the sweep `seed` does not change the teacher


@dataclass
class TaskDistillCfg:
    # TD step 1 and step 2; their embedded budgets: conf/config.yaml
    step1: TrainCfg = field(default_factory=TrainCfg)
    step2: TrainCfg = field(default_factory=TrainCfg)
    # What an ablation holds equal ("w/o DA" against the full recipe): `steps` (default) - every
    # variant runs the phases' max_steps, so w/o DA sees as many examples as the full recipe, in
    # more passes over the originals; `epochs` - every variant runs the phases' epochs over its
    # own rows (the paper's 20 + 3 epochs), so w/o DA trains fewer steps.
    budget: Budget = Budget.steps
    # cap on distinct TD training rows: every original row first, then a sample of augmented
    # variants drawn with augmenter.seed (the same rows for every run seed, so their teacher
    # logits are computed once); -1: all. Bounds the teacher-logit pass on CPU.
    max_train_examples: int = 19200
    # TD phases draw batches of similar length (less padding; the data order stays random)
    group_by_length: bool = True
    # precision of the TD phases (null = the global `precision`, which also keys the teacher and
    # the GD student): bf16 (default) trains the student in bf16 autocast on the same upstream
    # artefacts (~2.4x faster TD step 1 on this CPU with length grouping; BENCHMARKS.md); auto
    # (default): bf16 where the hardware runs it natively, else fp32 (tinyfw/precision.py)
    precision: Optional[Precision] = Precision.auto
    gd_checkpoint: str = ""  # GD student to start from when gd=on ("" = the cached GD run)
    gd_off_init: GdOffInit = GdOffInit.random  # student init when gd=off
    # td=off ("w/o TD"): the student is fine-tuned on hard labels with these settings (conf/config.yaml)
    finetune: TrainCfg = field(default_factory=TrainCfg)
    eval_batch_size: int = 128
    # TD step 1 (intermediate layers) runs; false: TD is prediction distillation alone (the
    # distilbert and minilm recipes). At its default it enters no cache key.
    intermediate: bool = True


@dataclass
class ReportCfg:
    source: str = ""  # sweep dir | local wandb dir | wandb:ENTITY/PROJECT/GROUP
    out: str = ""  # "" = the run directory
    # "" = auto (test split's main metric when present, else dev); `dev` | `test` = that
    # split's main metric; `split/name` (e.g. `dev/f1`) = exactly that metric
    metric: str = ""
    percent: bool = True  # show metrics x100, like the paper's table
    digits: int = 1  # decimals in the table cells


@dataclass
class PipelineCfg:
    # copy the report (md, csv, png) here at the end, e.g. docs/example (README shows it)
    publish: str = ""
    # the grid step's sweep (a Hydra multirun of stage=task): the paper's ablation rows x seeds
    grid: List[str] = field(default_factory=lambda: ["ablation=full,wo_gd,wo_td,wo_da", "seed=1,2,3"])
    # grid jobs run side by side (> 1: hydra/launcher=joblib), each with `threads` torch threads
    # (0: torch's default); 2 x 1 thread beats 1 x 2 threads on 2 cores (BENCHMARKS.md)
    jobs: int = 2
    threads: int = 1
    steps: List[str] = field(
        default_factory=lambda: ["assets", "teacher", "mlm", "general", "augment", "grid", "report"]
    )
    # the study over several tasks (e.g. [mr,conll2003]): teacher and augment per task, one grid
    # sweeping `task=` too, one report with a column per task; [] = the run's own task (task=, default mr)
    tasks: List[str] = field(default_factory=list)


@dataclass
class BenchCfg:
    repeats: int = 20
    warmup: int = 3
    seq_len: int = 128
    batch_sizes: List[int] = field(default_factory=lambda: [1, 32])
    paper_shapes: bool = True
    models: List[str] = field(default_factory=list)  # extra model paths to measure
    config_models: bool = True  # measure cfg.teacher and the student (off: paper shapes only)
    student_path: str = ""  # a trained student checkpoint instead of a random cfg.student.shape
    attn: AttnKernel = AttnKernel.sdpa  # attention kernel for timing
    interleave: bool = True  # time a group's models in turns (fair ratios on a shared machine)
    accuracy: bool = True  # dev accuracy of classifier checkpoints when the task loads
    devices: List[Device] = field(default_factory=list)  # [] = the CPU, and the GPU when present
    # an export's output dir (stage=export's run dir or its export/ dir): a row for each form it
    # wrote (pruned PyTorch, ONNX fp32, ONNX int8) beside its fp32 student and fine-tuned teacher
    export_dir: str = ""
    # ONNX Runtime fp32 and int8 rows for the paper TinyBERT4 shape (random weights, exported on
    # the fly; vocabulary: the export_dir's pruned one when given, else 30522); needs `.[export]`
    onnx: bool = True
    # CPU: each model timed in its own worker process, rounds alternating between them (no other
    # runtime's threads busy; tinyfw/bench/isolated.py); false: all in this process (bench.interleave)
    isolate: bool = True
    dynamic_rounds: int = 40  # isolate: + batch 1 at this many lengths of the task's dev texts (0: off)
    ort_tune: int = 10  # isolate: ONNX Runtime threads x graph level tried, this many calls each (0: off)


@dataclass
class ExportCfg:
    student: str = ""  # a student classifier dir (HF format: stage=task's <run>/student)
    prune: bool = True  # vocabulary pruning to the task's word pieces (+ special tokens)
    prune_corpus: bool = False  # also keep the word pieces of the GD corpus (corpus.*)
    onnx: bool = True  # ONNX fp32 form (torch dynamo exporter) run by ONNX Runtime
    int8: bool = True  # + dynamic int8 quantization of it (ONNX Runtime quantize_dynamic)
    opset: int = 23  # ONNX opset (23: attention as ONNX's Attention op)
    per_channel: bool = False  # int8 weights quantized per output channel (slower here)
    atol: float = 1e-4  # max |logit difference| ONNX fp32 vs PyTorch allowed after export
    threads: int = 0  # ONNX Runtime intra-op threads for evaluation (0: torch's count)
    eval_batch_size: int = 64
    license: str = "apache-2.0"  # model-card metadata
    base_model: str = ""  # card metadata hub id; "" = the student's teacher when it names a hub model
    datasets: List[str] = field(default_factory=list)  # card metadata; [] = the task's hub dataset or name
    push_to_hub: str = ""  # REPO: push the pruned model, tokenizer, card and ONNX files (needs a hub)


@dataclass
class PruneCfg:
    # the student to prune (stage=task's <run>/student); "" = distil one first (stage=task, same overrides)
    student: str = ""
    importance: Importance = Importance.gradient  # gradient (Michel et al.) | weight (L2 norm, no data)
    data: PruneData = PruneData.dev  # split whose labelled rows score the heads and neurons (gradient)
    max_examples: int = 2000  # rows of that split used (-1: all)
    batch_size: int = 32
    heads_per_layer: int = 0  # keep this many heads in every layer (0: see prune.heads)
    heads: int = 0  # keep this many heads in all, ranked across layers (uneven per layer; 0: all)
    ffn_size: int = 0  # keep this many FFN neurons in every layer (0: all)
    recover_steps: int = 0  # TD step 2 (task_distill.step2's settings) from the task teacher; 0: none
    export: bool = True  # then stage=export of the pruned student (export.*: vocabulary, ONNX, int8)


@dataclass
class WandbCfg:
    mode: WandbMode = WandbMode.offline  # env WANDB_MODE wins
    project: str = "tinyfw"
    entity: Optional[str] = None
    group: str = ""  # "" = the sweep directory name for multiruns, else "single"


@dataclass
class LoggingCfg:
    wandb: WandbCfg = field(default_factory=WandbCfg)


@dataclass
class Config:
    stage: Stage = Stage.info
    gd: Switch = Switch.on
    td: Switch = Switch.on
    augment: Switch = Switch.on
    # the run's own seed: a task run's head init, data order and dropout. Upstream artefacts
    # (fine-tuned teacher, masked LM, GD student, augmented set) have their own seeds
    # (teacher_ft.seed, mlm.seed, general.seed, augmenter.seed), so a sweep over `seed` shares them.
    seed: int = 42
    # GD, teacher fine-tune, stage=bench (mlm.precision, task_distill.precision: their own); auto
    # accepted (bf16 where native); GD stays fp32 until bf16 GD is shown not to hurt (BENCHMARKS.md)
    precision: Precision = Precision.fp32
    # the fast training step (fused AdamW; in GD / TD step 1 the teacher without copies, only its
    # mapped layers' scores, fewer passes over the attention tensors): the same losses up to
    # rounding (tests/test_fast_path.py), not part of any cache key; false: the former step
    fast_path: bool = True
    # torch intra-op threads of this run (0: torch's default, one per core); 1 suits jobs run
    # side by side (hydra/launcher=joblib), which then do not fight over the cores
    threads: int = 0
    teacher: TeacherCfg = field(default_factory=TeacherCfg)
    student: StudentCfg = field(default_factory=StudentCfg)
    distill: DistillCfg = field(default_factory=DistillCfg)
    corpus: CorpusCfg = field(default_factory=CorpusCfg)
    task: TaskCfg = field(default_factory=TaskCfg)
    general: GeneralCfg = field(default_factory=GeneralCfg)
    mlm: MlmCfg = field(default_factory=MlmCfg)
    augmenter: AugmentCfg = field(default_factory=AugmentCfg)
    teacher_ft: TeacherFtCfg = field(default_factory=TeacherFtCfg)
    task_distill: TaskDistillCfg = field(default_factory=TaskDistillCfg)
    report: ReportCfg = field(default_factory=ReportCfg)
    pipeline: PipelineCfg = field(default_factory=PipelineCfg)
    bench: BenchCfg = field(default_factory=BenchCfg)
    export: ExportCfg = field(default_factory=ExportCfg)
    prune: PruneCfg = field(default_factory=PruneCfg)
    logging: LoggingCfg = field(default_factory=LoggingCfg)
    # Root of assets and cached artefacts; "" = $TINYFW_HOME or ~/.cache/tinyfw.
    home: str = ""
    # false: discard existing checkpoints (run dir, cache work dirs) and train from scratch.
    # true: resume from them, refused when they were trained with another configuration.
    resume: bool = True


def plain(node: Any) -> Any:
    """A config node as plain Python (resolved containers, enums as their strings); other
    values as they are. Cache keys and layer maps are built from this."""
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return getattr(node, "value", node)


def is_on(switch: Any) -> bool:
    """Whether a :class:`Switch` value (the enum or its string) is ``on``."""
    return plain(switch) == "on"


class ConfigError(ValueError):
    """The composed config has keys the schema does not know or invalid training settings."""


def _leaves(d: Any, prefix: str) -> List[str]:
    if not isinstance(d, dict) or not d:
        return [prefix]
    return [leaf for k, v in d.items() for leaf in _leaves(v, f"{prefix}.{k}")]


def unknown_keys(node: Dict[str, Any], cls: type = None, prefix: str = "") -> List[str]:
    """Keys of ``node`` (a plain, unresolved config dict) that the dataclass schema ``cls``
    (default: :class:`Config`) does not define, each with the nearest valid key. Hydra's
    ``+key=value`` adds keys past the schema; this catches them (``Dict`` fields hold any key)."""
    cls = cls or Config
    hints = typing.get_type_hints(cls)
    out = []
    for k, v in node.items():
        path = f"{prefix}{k}"
        if k not in hints:
            near = difflib.get_close_matches(str(k), list(hints), n=1, cutoff=0.5)
            leaves = _leaves(v, path)
            hint = (f" (did you mean {', '.join(f'{prefix}{near[0]}' + x[len(path):] for x in leaves[:2])}?)"
                    if near else f" (valid keys here: {', '.join(hints)})")
            out.append(f"{', '.join(leaves[:2])}{hint}")
        elif dataclasses.is_dataclass(hints[k]) and isinstance(v, dict):
            out.extend(unknown_keys(v, hints[k], f"{path}."))
    return out


def train_errors(tc: Any, where: str = "train") -> List[str]:
    """What is wrong with the training settings ``tc`` (a :class:`TrainCfg` or its node), as
    ``key=value: why`` texts (empty: fine)."""
    def num(name: str) -> Any:
        return getattr(tc, name, None)

    checks = [
        ("batch_size", lambda v: v >= 1, "must be >= 1"),
        ("grad_accum", lambda v: v >= 1, "must be >= 1"),
        ("lr", lambda v: v > 0 and math.isfinite(v), "must be a positive number"),
        ("weight_decay", lambda v: v >= 0, "must be >= 0"),
        ("warmup_ratio", lambda v: 0 <= v <= 1, "must be between 0 and 1"),
        ("save_every", lambda v: v >= 0, "must be >= 0 (0: only at the end)"),
        ("eval_every", lambda v: v >= 0, "must be >= 0 (0: only at the end)"),
        ("num_workers", lambda v: v >= 0, "must be >= 0"),
    ]
    errs = [f"{where}.{k}={num(k)}: {why}" for k, ok, why in checks if num(k) is not None and not ok(num(k))]
    steps, epochs = num("max_steps"), num("epochs")
    if steps is not None and steps <= 0 and epochs is not None and not epochs > 0:
        errs.append(f"{where}.epochs={epochs}: must be > 0 (or set {where}.max_steps > 0)")
    return errs


def _train_nodes(cfg: Any, cls: type = None, prefix: str = "") -> List[tuple]:
    """(dotted path, node) of every :class:`TrainCfg` sub-tree of ``cfg``."""
    cls = cls or Config
    out = []
    for name, typ in typing.get_type_hints(cls).items():
        if not dataclasses.is_dataclass(typ) or name not in cfg:
            continue
        if typ is TrainCfg:
            out.append((f"{prefix}{name}", cfg[name]))
        else:
            out.extend(_train_nodes(cfg[name], typ, f"{prefix}{name}."))
    return out


def validate(cfg: Any) -> None:
    """Refuse, in one line, keys the schema does not know and invalid training settings of the
    composed ``cfg``, before any stage work."""
    problems = [f"unknown config key {u}" for u in unknown_keys(OmegaConf.to_container(cfg, resolve=False))]
    for where, node in _train_nodes(cfg):
        problems.extend(train_errors(node, where))
    if problems:
        raise ConfigError("; ".join(problems))


def check_overrides(cfg: Any, overrides: List[str]) -> None:
    """Refuse command-line overrides that would be ignored: a TD phase's ``max_steps`` while
    ``task_distill.budget=epochs`` (``preset=paper``, ``experiment=smoke``) counts epochs."""
    if str(cfg.task_distill.budget) != "epochs":
        return
    for o in overrides:
        key, _, value = o.lstrip("+~").partition("=")
        phase = key[len("task_distill."):-len(".max_steps")] if key.startswith("task_distill.") else ""
        if key == f"task_distill.{phase}.max_steps" and phase in ("step1", "step2", "finetune") and value.strip() \
                not in ("-1", "0", "null"):
            raise ConfigError(f"{key}={value} has no effect: task_distill.budget=epochs counts epochs "
                              f"(task_distill.{phase}.epochs); add task_distill.budget=steps to count steps instead, "
                              f"or set task_distill.{phase}.epochs")


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="tinyfw_schema", node=Config)
