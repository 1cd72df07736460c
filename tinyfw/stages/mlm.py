"""``stage=mlm``: make a masked LM for the augmenter from an encoder.

The encoder (``mlm.base``: ``teacher`` = the teacher config, or a name/path) is loaded as a
``BertForMaskedLM`` whose decoder is tied to the word embeddings (the transform layer of the
head starts fresh when the checkpoint has none), and the **whole** model is fine-tuned with
standard masking (``mlm.mask_prob`` of the tokens: 80% [MASK], 10% random, 10% kept;
``DataCollatorForLanguageModeling``) on the unlabeled corpus, with the shared training loop.

Held-out quality, before and after, on whole words that are a single word piece (the words
the augmenter asks the masked LM about): 15% of them masked per held-out segment with a
fixed seed, top-1 / top-15 accuracy of the true word at the masked positions.

Outputs: ``<run_dir>/mlm/`` (HF format + tokenizer), ``mlm_metrics.json``; the model is also
published in the content-addressed cache (``<home>/cache/mlm/<key>``), where
``augmenter.mlm=mlm`` finds it through :func:`ensure_mlm` (which trains it when absent).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from omegaconf import DictConfig

from tinyfw import cache, paths
from tinyfw.config import plain
from tinyfw.fsutil import atomic_dir, atomic_write_json
from tinyfw.stages import RunContext, StageResult

log = logging.getLogger("tinyfw.mlm")
KIND = "mlm"
HEAD_PREFIXES = ("cls.", "lm_head.")


def _precision(cfg: DictConfig) -> str:
    return str(cfg.mlm.get("precision") or plain(cfg.precision))


def base_identity(cfg: DictConfig) -> Dict[str, Any]:
    if cfg.mlm.base == "teacher":
        return {"teacher": plain(cfg.teacher)}
    return {"name_or_path": str(cfg.mlm.base)}


def mlm_cache_parts(cfg: DictConfig, home: Optional[Path] = None) -> Dict[str, Any]:
    """Everything the masked LM depends on (the cache key)."""
    corpus = {k: v for k, v in plain(cfg.corpus).items() if k != "num_proc"}
    if home is not None:
        from tinyfw.data.corpus import source_identity

        corpus["identity"] = source_identity(cfg.corpus.source, home, cfg.corpus.config_name, cfg.corpus.split)
    mlm = plain(cfg.mlm)
    mlm["train"] = {k: v for k, v in mlm["train"].items() if k not in ("log_every", "num_workers", "save_every")}
    mlm["precision"] = _precision(cfg)
    return {"base": base_identity(cfg), "corpus": corpus, "mlm": mlm, "v": 2}


def base_path_and_tokenizer(cfg: DictConfig, home: Path) -> Tuple[str, Any]:
    from tinyfw.models.load import load_tokenizer, teacher_path

    if cfg.mlm.base == "teacher":
        path = teacher_path(cfg.teacher, home)
        own = not cfg.teacher.tokenizer or cfg.teacher.name_or_path == "random"
        return path, load_tokenizer(path if own else cfg.teacher.tokenizer, home)
    path = paths.resolve_name_or_path(str(cfg.mlm.base), home)
    return path, load_tokenizer(path, home)


def load_as_masked_lm(path: str):
    """``BertForMaskedLM`` (or the checkpoint's masked-LM class) with tied decoder; only the
    head may be new. Returns (model, new head keys)."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    from tinyfw.models.load import unused_heads

    config = AutoConfig.from_pretrained(path)
    config.tie_word_embeddings = True
    model, info = AutoModelForMaskedLM.from_pretrained(path, config=config, output_loading_info=True)
    missing = [k for k in info["missing_keys"] if not k.startswith(HEAD_PREFIXES)]
    _, unexpected = unused_heads(model, list(info["unexpected_keys"]))  # e.g. a next-sentence head
    if missing or unexpected:
        raise ValueError(f"{path} does not load as a masked LM: missing {missing[:6]}, unexpected {unexpected[:6]}")
    out, emb = model.get_output_embeddings(), model.get_input_embeddings()
    if out.weight.data_ptr() != emb.weight.data_ptr():
        raise ValueError(f"{path}: the masked-LM decoder is not tied to the word embeddings")
    return model, sorted(info["missing_keys"])


class MaskedPositionsLoss(torch.nn.Module):
    """The masked-LM loss of ``model`` with its head run at the masked positions only.

    Equal to ``model(**batch).loss`` (mean cross-entropy over labels != -100), without the
    full-vocabulary logits at every position: for MiniLM at seq 128 that head is more than
    half of the step's arithmetic, and its [batch, seq, vocab] logits and their gradients
    (~2 GB per step at batch 32) dominated the step on CPU. Models without a ``cls`` /
    ``lm_head`` module fall back to the full forward.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.head = getattr(model, "cls", None) or getattr(model, "lm_head", None)

    def forward(self, labels, **inputs):
        if self.head is None:
            return self.model(labels=labels, **inputs).loss
        hidden = self.model.base_model(**inputs)[0]
        where = labels != -100
        if not bool(where.any()):  # no masked token drawn: a zero loss that keeps the graph
            return hidden.sum() * 0.0
        logits = self.head(hidden[where])
        return torch.nn.functional.cross_entropy(logits.float(), labels[where])


def whole_word_eval(model, tok, held, n_segments: int, top_k: int = 15, seed: int = 0,
                    batch_size: int = 16, mask_prob: float = 0.15) -> Dict[str, float]:
    """Top-1 / top-``top_k`` accuracy on masked single-piece alphabetic words of held-out
    segments (fixed masks: the same positions before and after training)."""
    g = torch.Generator().manual_seed(seed)
    vocab = tok.convert_ids_to_tokens(list(range(len(tok))))
    device = next(model.parameters()).device
    rows = [held[i]["input_ids"] for i in range(min(n_segments, len(held)))]
    hit1 = hitk = n = 0
    loss_sum = 0.0
    model.eval()
    with torch.inference_mode():
        for b in range(0, len(rows), batch_size):
            chunk = rows[b : b + batch_size]
            width = max(len(r) for r in chunk)
            ids = torch.full((len(chunk), width), tok.pad_token_id or 0)
            att = torch.zeros_like(ids)
            labels = torch.full_like(ids, -100)
            for r, seq in enumerate(chunk):
                ids[r, : len(seq)] = torch.tensor(seq)
                att[r, : len(seq)] = 1
                words = [i for i in range(1, len(seq) - 1)
                         if vocab[seq[i]].isalpha() and not vocab[seq[i + 1]].startswith("##")]
                if not words:
                    continue
                pick = torch.rand(len(words), generator=g) < mask_prob
                for i, p in zip(words, pick.tolist()):
                    if p:
                        labels[r, i] = seq[i]
                        ids[r, i] = tok.mask_token_id
            where = labels != -100
            if not where.any():
                continue
            out = model(input_ids=ids.to(device), attention_mask=att.to(device))
            logits = out.logits[where.to(device)].float()
            gold = labels[where].to(device)
            top = logits.topk(top_k, dim=1).indices
            hit1 += int((top[:, 0] == gold).sum())
            hitk += int((top == gold[:, None]).any(1).sum())
            loss_sum += float(torch.nn.functional.cross_entropy(logits, gold, reduction="sum"))
            n += int(where.sum())
    return {"top1": round(hit1 / max(n, 1), 4), f"top{top_k}": round(hitk / max(n, 1), 4),
            "loss": round(loss_sum / max(n, 1), 4), "masked_words": n}


def train_mlm(cfg: DictConfig, home: Path, out_dir: Path, tracker: Any = None) -> Tuple[Dict[str, Any], Path]:
    """Adapt the base encoder into a masked LM in ``out_dir`` (mlm/, checkpoints/)."""
    from transformers import DataCollatorForLanguageModeling

    from tinyfw import fingerprint
    from tinyfw.data.corpus import load_corpus, segment_stats, source_identity, tokenize_and_segment
    from tinyfw.models.load import check_tokenizer
    from tinyfw.train.loop import fit, make_accelerator

    out_dir = Path(out_dir)
    path, tok = base_path_and_tokenizer(cfg, home)
    if tok.mask_token_id is None:
        raise ValueError(f"the tokenizer of {path} has no [MASK] token; a masked LM needs one")
    torch.manual_seed(cfg.mlm.seed)
    model, new_keys = load_as_masked_lm(path)
    check_tokenizer(tok, model.config, f"masked-LM base {path}", path)
    precision = _precision(cfg)
    acc = make_accelerator(precision)
    c = cfg.corpus
    docs = load_corpus(c.source, home, c.config_name, c.split, c.text_column, False, c.max_docs)
    key = {**source_identity(c.source, home, c.config_name, c.split), "text_column": c.text_column,
           "max_docs": c.max_docs}
    train_ds, held = tokenize_and_segment(docs, tok, c.max_seq_len, c.num_proc, max(c.heldout_fraction, 1e-9),
                                          cfg.mlm.seed, home=home, key=key)
    collator = DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=cfg.mlm.mask_prob)

    def collate(rows):
        return collator([{"input_ids": r["input_ids"]} for r in rows])

    def loss_fn(modules, batch):
        return modules["mlm"](**batch), {}

    n_eval = int(cfg.mlm.eval_examples)
    before = whole_word_eval(model, tok, held, n_eval, seed=cfg.mlm.seed)
    log.info("MLM held-out before: %s (new head weights: %s)", before, new_keys)
    model.train()
    res = fit({"mlm": MaskedPositionsLoss(model)}, loss_fn, train_ds, collate, cfg.mlm.train, precision=precision, out_dir=out_dir,
              tracker=tracker, seed=cfg.mlm.seed, desc="MLM", accelerator=acc,
              fingerprint=fingerprint.for_mlm(cfg, home), resume=cfg.resume)
    after = whole_word_eval(model, tok, held, n_eval, seed=cfg.mlm.seed)
    log.info("MLM held-out after: %s", after)
    model_dir = out_dir / "mlm"
    if acc.is_main_process:
        with atomic_dir(model_dir, overwrite=True) as tmp:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
    metrics: Dict[str, Any] = {
        "base": path,
        "new_head_keys": new_keys,
        "heldout_before": before,
        "heldout_after": after,
        "train_loss_initial": res.mean("loss", first=0.1),
        "train_loss_final": res.mean("loss", last=0.1),
        "steps": res.steps,
        "tokens": res.tokens,
        "tokens_per_s": round(res.tokens_per_s, 1),
        "train_wall_time_s": round(res.wall_time_s, 2),
        "resumed_from": res.resumed_from,
        "corpus": {"train": segment_stats(train_ds), "heldout": segment_stats(held)},
        "precision": precision,
    }
    if acc.is_main_process:
        atomic_write_json(out_dir / "mlm_metrics.json", metrics)
    return metrics, model_dir


def _register_into(src: Path, tmp: Path) -> None:
    shutil.copytree(src / "mlm", tmp / "mlm")
    if (src / "mlm_metrics.json").exists():
        shutil.copy2(src / "mlm_metrics.json", tmp / "mlm_metrics.json")


def ensure_mlm(cfg: DictConfig, home: Path, tracker: Any = None) -> Path:
    """The adapted masked LM (HF directory) for ``cfg``: from the cache, else trained now."""
    parts = mlm_cache_parts(cfg, home)
    entry = cache.entry(home, KIND, parts)
    if not cache.present(entry):
        work = home / "cache" / "mlm-work" / cache.key_of(parts)  # checkpoints: resumable
        # every rank of a distributed run trains (prepare); rank 0 registers the result
        cache.ensure(home, KIND, parts, lambda tmp: _register_into(work, tmp),
                     prepare=lambda: train_mlm(cfg, home, work, tracker))
        shutil.rmtree(work, ignore_errors=True)
    return entry / "mlm"


def run(cfg: DictConfig, ctx: RunContext) -> StageResult:
    metrics, model_dir = train_mlm(cfg, ctx.home, ctx.run_dir, ctx.tracker)
    outputs = {"mlm": str(model_dir)}
    if ctx.is_main:
        entry = cache.ensure(ctx.home, KIND, mlm_cache_parts(cfg, ctx.home),
                             lambda tmp: _register_into(ctx.run_dir, tmp))
        outputs["cache"] = str(entry / "mlm")
        b, a = metrics["heldout_before"], metrics["heldout_after"]
        log.info("MLM done: held-out top-1 %.3f -> %.3f, top-15 %.3f -> %.3f, loss %.3f -> %.3f; %s",
                 b["top1"], a["top1"], b["top15"], a["top15"], metrics["train_loss_initial"],
                 metrics["train_loss_final"], outputs["cache"])
    return StageResult(metrics=metrics, outputs=outputs)
