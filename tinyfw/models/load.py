"""Resolve and load encoders and tokenizers: asset short names, hub names, local paths,
and random models built from a shape (materialised once in the cache, then loaded by path,
so every stage goes through the same ``from_pretrained`` code path).

Every model is loaded with ``attn_implementation="eager"`` (SDPA returns no attention
scores) and missing/unexpected checkpoint keys fail loudly, except the pre-training heads of a
BERT checkpoint as published (``cls.predictions.*``, ``cls.seq_relationship.*``) when the
target class has no such head. A tokenizer given apart from its model is checked to be the
model's (:func:`check_tokenizer`).
"""

from __future__ import annotations

import logging
import string
from pathlib import Path
from typing import Any, List, Optional, Tuple, Type

from transformers import AutoModel, BertConfig, BertModel, BertTokenizerFast, PreTrainedModel

from tinyfw import cache, paths

log = logging.getLogger(__name__)
# heads of a pre-training checkpoint (BertForPreTraining: masked LM + next sentence) and the
# pooler: unused by a target class without them, so their weights are expected leftovers
PRETRAINING_HEADS = ("cls.predictions.", "cls.seq_relationship.", "pooler.", "bert.pooler.")

# A small, deterministic WordPiece vocabulary for random models: every printable character
# (so any text tokenises), its ##-continuation, and frequent English words.
_COMMON_WORDS = """the of and to a in is it that was for on are with as i his they be at one have this
from or had by not but what some we can out other were all there when up use your how said an each
she which do their time if will way about many then them would like so these her long make thing see
him two has look more day could go come did no most my over know than call who may down been
film movie good bad great best worst story love funny boring fun plot characters acting script
performance director comedy drama just too very really much even well never nothing little new""".split()


def tiny_vocab() -> list[str]:
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [c for c in string.ascii_lowercase + string.digits + string.punctuation]
    words = [w for w in dict.fromkeys(_COMMON_WORDS) if len(w) > 1]
    return special + chars + [f"##{c}" for c in string.ascii_lowercase + string.digits] + words


def write_tiny_tokenizer(out_dir: Path) -> BertTokenizerFast:
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = out_dir / "vocab.txt"
    vocab.write_text("\n".join(tiny_vocab()) + "\n", encoding="utf-8")
    tok = BertTokenizerFast(vocab=str(vocab), do_lower_case=True)  # transformers 5 ignores vocab_file=
    tok.save_pretrained(out_dir)
    return tok


def bert_config(shape: Any, vocab_size: int, **extra: Any) -> BertConfig:
    """The one BertConfig builder: ``shape`` (a :class:`~tinyfw.config.ShapeCfg`), eager
    attention (the capture of attention scores needs it), ``extra`` keyword settings."""
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        intermediate_size=shape.intermediate_size,
        max_position_embeddings=shape.max_position_embeddings,
        attn_implementation="eager",
        **extra,
    )


def load_tokenizer(name_or_path: str, home: Path):
    from transformers import AutoTokenizer

    if name_or_path == "tiny":
        return BertTokenizerFast.from_pretrained(
            str(cache.ensure(home, "tokenizer", {"name": "tiny", "vocab": tiny_vocab(), "v": 2}, write_tiny_tokenizer))
        )
    return AutoTokenizer.from_pretrained(paths.resolve_name_or_path(name_or_path, home))


def random_model_dir(shape: Any, tokenizer: str, seed: int, home: Path) -> Path:
    """A random BertModel of ``shape`` saved (with its tokenizer) in the cache, once."""
    parts = {"shape": dict(shape), "tokenizer": tokenizer or "tiny", "seed": seed}

    def build(tmp: Path) -> None:
        import torch

        tok = load_tokenizer(parts["tokenizer"], home)
        torch.manual_seed(seed)
        model = BertModel(bert_config(shape, len(tok)), add_pooling_layer=True)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return cache.ensure(home, "random-model", parts, build)


def teacher_path(teacher_cfg: Any, home: Path) -> str:
    """Local path (or hub name) of the pre-trained teacher described by ``teacher_cfg``
    (``random``: a model of ``teacher.shape`` with weights from ``teacher.seed``)."""
    if teacher_cfg.name_or_path == "random":
        seed = int(getattr(teacher_cfg, "seed", 0) or 0)
        return str(random_model_dir(teacher_cfg.shape, teacher_cfg.tokenizer, seed, home))
    return local_model(teacher_cfg.name_or_path, home, "teacher.name_or_path")


def local_model(name_or_path: str, home: Path, key: str, fix: str = "") -> str:
    """``name_or_path`` resolved (:func:`tinyfw.paths.resolve_name_or_path`); a local directory
    must hold a model (``config.json``), else a one-line error naming ``key``."""
    path = paths.resolve_name_or_path(name_or_path, home, key=key)
    if Path(path).is_dir() and not (Path(path) / "config.json").exists():
        raise FileNotFoundError(
            f"{key}={name_or_path} has no config.json: not a Hugging Face model directory; point it at one "
            f"saved with save_pretrained (config.json + weights){fix or ', or at a hub name'}")
    return path


def unused_heads(model: Any, unexpected: List[str]) -> Tuple[List[str], List[str]]:
    """Split a checkpoint's unexpected keys into (pre-training head keys ``model`` has no head
    for: expected leftovers, the rest)."""
    own = list(model.state_dict())
    ignored, rest = [], []
    for k in unexpected:
        head = next((h for h in PRETRAINING_HEADS if k.startswith(h)), None)
        unused = head is not None and not any(o.startswith(head) for o in own)
        (ignored if unused else rest).append(k)
    return ignored, rest


def load_strict(cls: Type[PreTrainedModel], name_or_path: str, **kwargs: Any) -> PreTrainedModel:
    """``cls.from_pretrained`` with eager attention that fails on missing/unexpected keys.

    ``allow_new`` (a tuple of key prefixes) lists heads that may legitimately be new, e.g.
    a classification head on top of a pre-trained encoder. A pre-training checkpoint's heads
    that the target class does not have (``cls.*`` for a ``BertModel``) are ignored and logged.
    """
    allow_new = tuple(kwargs.pop("allow_new", ()))
    model, info = cls.from_pretrained(
        name_or_path, attn_implementation="eager", output_loading_info=True, **kwargs
    )
    missing = [k for k in info["missing_keys"] if not k.startswith(allow_new)]
    ignored, unexpected = unused_heads(model, list(info["unexpected_keys"]))
    heads = sorted({".".join(k.split(".")[:2]) for k in ignored if not k.startswith(("pooler.", "bert.pooler."))})
    if heads:
        log.info("%s: ignored the checkpoint's %s (%d keys), unused by %s", name_or_path, ", ".join(heads),
                 len(ignored), type(model).__name__)
    mismatched = info.get("mismatched_keys") or []
    if missing or unexpected or mismatched:
        raise ValueError(
            f"checkpoint {name_or_path} does not match {cls.__name__}: "
            f"missing keys {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected keys {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}, "
            f"mismatched {mismatched[:4]}. Point to a checkpoint of the right architecture."
        )
    return model


def load_teacher(teacher_cfg: Any, home: Path) -> Tuple[PreTrainedModel, Any]:
    """The pre-trained teacher encoder (``BertModel``-like, eager attention) and tokenizer,
    checked to belong together."""
    path = teacher_path(teacher_cfg, home)
    model = load_strict(AutoModel, path)
    tok = teacher_tokenizer(teacher_cfg, home, path, model.config, what=f"teacher {teacher_cfg.name_or_path}")
    return model, tok


def teacher_tokenizer(teacher_cfg: Any, home: Path, path: str, config: Any = None, what: str = ""):
    """The teacher's tokenizer (``teacher.tokenizer``, else the one at ``path``); with the
    model's ``config``, checked to be that model's (:func:`check_tokenizer`; ``what`` names the
    model, default ``teacher <path>``)."""
    # a random model's directory already holds its tokenizer
    own = not teacher_cfg.tokenizer or teacher_cfg.name_or_path == "random"
    tok = load_tokenizer(path if own else teacher_cfg.tokenizer, home)
    if config is not None:
        check_tokenizer(tok, config, what or f"teacher {path}", path, own=own,
                        fix="use the teacher's own tokenizer (teacher.tokenizer='')")
    return tok


def check_positions(max_seq_len: int, key: str, **configs: Any) -> None:
    """Refuse ``key`` (a sequence length) above a model's ``max_position_embeddings``, before any
    work: ``configs`` name the models (``teacher=config``)."""
    for who, config in configs.items():
        limit = getattr(config, "max_position_embeddings", None)
        if limit is not None and int(max_seq_len) > int(limit):
            raise ValueError(f"{key}={max_seq_len} exceeds the {who}'s max_position_embeddings ({limit}): "
                             f"set {key} <= {limit}")


SPECIAL = ("pad", "unk", "cls", "sep", "mask")


def _own_tokenizer(model_dir: Optional[str]):
    """The tokenizer saved in a local model directory, else None."""
    if not model_dir or not Path(model_dir).is_dir():
        return None
    d = Path(model_dir)
    if not any((d / f).exists() for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(d))


def check_tokenizer(tok: Any, config: Any, what: str, model_dir: Optional[str] = None, own: bool = False,
                    fix: str = "") -> None:
    """Refuse a tokenizer that is not ``what``'s (before any training): its ids must fit the
    model's vocabulary and its special-token ids the model's config; a tokenizer given apart
    from the model (``own`` false) must also have the model's vocabulary size and, when
    ``model_dir`` holds the model's own tokenizer, exactly that vocabulary (tokens and ids)."""
    fix = fix or f"use {what}'s own tokenizer"
    saved = None if own else _own_tokenizer(model_dir)
    problems = []
    if saved is not None and saved.get_vocab() != tok.get_vocab():
        diff = sorted(set(saved.get_vocab().items()) ^ set(tok.get_vocab().items()), key=lambda kv: kv[1])
        problems.append("its vocabulary differs from the one saved with the model"
                        + (f" (e.g. {diff[0][0]!r} at id {diff[0][1]})" if diff else ""))
    n, size = len(tok), int(config.vocab_size)
    padded_ok = own or (saved is not None and len(saved) == n)  # a model may pad its vocabulary
    if n > size or (n < size and not padded_ok):
        problems.append(f"it has {n} tokens, the model's vocabulary {size}")
    for name in SPECIAL:
        want, got = getattr(config, f"{name}_token_id", None), getattr(tok, f"{name}_token_id", None)
        if want is not None and got is not None and want != got:
            problems.append(f"[{name.upper()}] is id {got}, the model's {want}")
    if problems:
        raise ValueError(f"the tokenizer is not {what}'s: {'; '.join(problems)}. {fix[0].upper() + fix[1:]}")
