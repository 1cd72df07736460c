"""Masked-LM models for the augmenter: loading an encoder as a masked LM with a tied decoder,
the masked-LM loss computed at the masked positions only, and the whole-word evaluation.
Every function takes explicit arguments (no config)."""

from __future__ import annotations

from typing import Dict

import torch

HEAD_PREFIXES = ("cls.", "lm_head.")


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
