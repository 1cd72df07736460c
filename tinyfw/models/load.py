"""Resolve and load encoders and tokenizers: asset short names, hub names, local paths,
and random models built from a shape (materialised once in the cache, then loaded by path,
so every stage goes through the same ``from_pretrained`` code path).

Every model is loaded with ``attn_implementation="eager"`` (SDPA returns no attention
scores) and missing/unexpected checkpoint keys fail loudly.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any, Tuple, Type

from transformers import AutoModel, BertConfig, BertModel, BertTokenizerFast, PreTrainedModel

from tinyfw import cache, paths

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
    return paths.resolve_name_or_path(teacher_cfg.name_or_path, home)


def load_strict(cls: Type[PreTrainedModel], name_or_path: str, **kwargs: Any) -> PreTrainedModel:
    """``cls.from_pretrained`` with eager attention that fails on missing/unexpected keys.

    ``allow_new`` (a tuple of key prefixes) lists heads that may legitimately be new, e.g.
    a classification head on top of a pre-trained encoder.
    """
    allow_new = tuple(kwargs.pop("allow_new", ()))
    model, info = cls.from_pretrained(
        name_or_path, attn_implementation="eager", output_loading_info=True, **kwargs
    )
    missing = [k for k in info["missing_keys"] if not k.startswith(allow_new)]
    unexpected = [k for k in info["unexpected_keys"] if not k.startswith("pooler.")]
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
    """The pre-trained teacher encoder (``BertModel``-like, eager attention) and tokenizer."""
    path = teacher_path(teacher_cfg, home)
    model = load_strict(AutoModel, path)
    # a random model's directory already holds its tokenizer
    own = not teacher_cfg.tokenizer or teacher_cfg.name_or_path == "random"
    return model, load_tokenizer(path if own else teacher_cfg.tokenizer, home)
