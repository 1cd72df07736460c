"""Replacement candidates: masked-LM top-K for single-wordpiece words, GloVe neighbours
otherwise, in two implementations that give the same candidates: ``exact`` (batched, the
default) and ``reference`` (TinyBERT's Algorithm 1 as written, the baseline). The candidate
rule (filters first, then the top K; the casing of the original word) and how ``exact``
batches: docs/internals.md in the tinyfw repository, "Augmentation candidates".
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from augment.words import apply_casing, is_punct

Query = Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]  # ids, token types, masked positions


def mlm_head(model) -> Optional[torch.nn.Module]:
    """The module mapping hidden states to vocabulary logits, when the model exposes one."""
    for name in ("cls", "lm_head"):
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Module):
            return head
    return None


def check_masked_lm(model) -> None:
    if model.get_output_embeddings() is None:
        raise ValueError(
            f"{type(model).__name__} has no masked-LM head (output embeddings). The augmenter "
            "needs a masked LM: load it with AutoModelForMaskedLM from a masked-LM checkpoint "
            "(e.g. bert-base-uncased), or make one from an encoder with `python -m tinyfw stage=mlm`."
        )


def allowed_tokens(tokenizer, alpha_only: bool, stopwords: Optional[Iterable[str]]) -> torch.Tensor:
    """Boolean mask over the vocabulary of tokens that may be MLM candidates."""
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_tokens)
    stop = {w.lower() for w in stopwords} if stopwords else set()
    ok = []
    for tok in vocab:
        good = (
            tok is not None
            and not tok.startswith("##")
            and tok not in special
            and not (tok.startswith("[") and tok.endswith("]"))  # [unused12] and the like
            and not is_punct(tok)
            and tok.strip() != ""
        )
        if good and alpha_only:
            good = tok.isalpha()
        if good and stop:
            good = tok.lower() not in stop
        ok.append(good)
    return torch.tensor(ok, dtype=torch.bool)


def build_query(
    pieces: Sequence[Sequence[int]], targets: Sequence[int], *, second_segment: bool, max_len: int,
    cls_id: int, sep_id: int, mask_id: int,
) -> Query:
    """Masked input for the words ``targets`` (single-piece) of a sentence given as word pieces.

    ``[CLS] sentence-with-[MASK] [SEP]`` (``+ sentence [SEP]`` with ``second_segment``, as the
    reference). A sentence longer than the model allows is cut to a window around the masks.
    """
    flat: List[int] = []
    starts: List[int] = []
    for p in pieces:
        starts.append(len(flat))
        flat.extend(p)
    pos = [starts[t] for t in targets]
    budget = (max_len - 3) // 2 if second_segment else max_len - 2
    lo = 0
    if len(flat) > budget:
        centre = (min(pos) + max(pos)) // 2
        lo = min(max(0, centre - budget // 2), len(flat) - budget)
        if min(pos) < lo or max(pos) >= lo + budget:
            raise ValueError("masked positions do not fit one window")  # callers prevent this
    window = flat[lo : lo + budget]
    masked = list(window)
    for p in pos:
        masked[p - lo] = mask_id
    ids = [cls_id] + masked + [sep_id]
    types = [0] * len(ids)
    if second_segment:
        ids += window + [sep_id]
        types += [1] * (len(window) + 1)
    return tuple(ids), tuple(types), tuple(p - lo + 1 for p in pos)


def group_far_apart(positions: Sequence[int], starts: Sequence[int], gap: int, span: int) -> List[List[int]]:
    """Greedy groups of word indices whose pieces are >= ``gap`` apart and fit one window."""
    groups: List[List[int]] = []
    for w in positions:
        for g in groups:
            if all(abs(starts[w] - starts[o]) >= gap for o in g) and max(
                abs(starts[w] - starts[o]) for o in g
            ) < span:
                g.append(w)
                break
        else:
            groups.append([w])
    return groups


@dataclass
class MlmStats:
    queries: int = 0  # masked sequences
    masked: int = 0  # masked positions
    forwards: int = 0
    tokens: int = 0  # input tokens through the encoder
    seconds: float = 0.0


class MlmCandidates:
    """Masked-LM candidates for masked positions, exact (batched) or reference (one by one)."""

    def __init__(self, model, tokenizer, *, top_k: int, alpha_only: bool = False,
                 stopwords: Optional[Iterable[str]] = None, precision: str = "fp32",
                 batch_size: int = 128, device: Optional[str] = None, progress: bool = False):
        check_masked_lm(model)
        if precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be fp32, bf16 or fp16, not '{precision}'")
        self.model = model.eval()
        self.tok = tokenizer
        self.top_k = top_k
        self.precision = precision
        self.batch_size = max(1, int(batch_size))
        self.device = torch.device(device) if device else next(model.parameters()).device
        self.head = mlm_head(model)
        self.allowed = allowed_tokens(tokenizer, alpha_only, stopwords).to(self.device)
        self.vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        n_out = model.get_output_embeddings().weight.shape[0]
        if n_out < len(self.allowed):  # tokenizer has more tokens than the head
            self.allowed = self.allowed[:n_out]
        elif n_out > len(self.allowed):
            pad = torch.zeros(n_out - len(self.allowed), dtype=torch.bool, device=self.device)
            self.allowed = torch.cat([self.allowed, pad])
        self.progress = progress
        self._allowed_list: Optional[List[bool]] = None
        self.stats = MlmStats()

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _pick(self, logits: torch.Tensor, own: Sequence[int]) -> List[List[int]]:
        """Top-K allowed token ids per row (row i excludes token ``own[i]``)."""
        logits = logits.float().masked_fill(~self.allowed[: logits.shape[1]], float("-inf"))
        rows = torch.arange(len(own), device=logits.device)
        logits[rows, torch.tensor(own, device=logits.device)] = float("-inf")
        vals, idx = logits.topk(min(self.top_k, logits.shape[1]), dim=1)
        out = []
        for v, i in zip(vals.tolist(), idx.tolist()):
            out.append([t for s, t in zip(v, i) if s != float("-inf")])
        return out

    # -- exact mode ------------------------------------------------------------------------
    def exact(self, queries: Sequence[Query], owns: Sequence[Sequence[int]]) -> List[List[List[int]]]:
        """Candidate ids per query and masked position; equal-length queries share a forward.

        Identical queries (a sentence that occurs twice) are computed once per call; nothing
        is kept between calls, so memory stays bounded on large data sets.
        """
        results: List[Optional[List[List[int]]]] = [None] * len(queries)
        first: Dict[Query, int] = {}
        todo: Dict[int, List[int]] = {}
        for qi, q in enumerate(queries):
            if q in first:
                continue
            first[q] = qi
            todo.setdefault(len(q[0]), []).append(qi)
        batches = [
            idxs[i : i + self.batch_size]
            for length in sorted(todo)
            for idxs in [todo[length]]
            for i in range(0, len(idxs), self.batch_size)
        ]
        bar = _bar(len(batches), "masked-LM batches", self.progress)
        t0 = time.perf_counter()
        with torch.inference_mode():
            for batch in batches:
                ids = torch.tensor([queries[i][0] for i in batch], device=self.device)
                types = torch.tensor([queries[i][1] for i in batch], device=self.device)
                rows = [r for r, i in enumerate(batch) for _ in queries[i][2]]
                cols = [c for i in batch for c in queries[i][2]]
                own = [o for i in batch for o in owns[i]]
                with self._autocast():
                    if self.head is not None:
                        hidden = self.model.base_model(
                            input_ids=ids, token_type_ids=types, attention_mask=torch.ones_like(ids)
                        ).last_hidden_state
                        logits = self.head(hidden[rows, cols])
                    else:  # no separable head: full forward, then gather
                        logits = self.model(input_ids=ids, token_type_ids=types).logits[rows, cols]
                picked = self._pick(logits, own)
                k = 0
                for i in batch:
                    res = picked[k : k + len(queries[i][2])]
                    k += len(queries[i][2])
                    results[i] = res
                self.stats.forwards += 1
                self.stats.queries += len(batch)
                self.stats.masked += len(rows)
                self.stats.tokens += ids.numel()
                if bar is not None:
                    bar.update(1)
        self.stats.seconds += time.perf_counter() - t0
        if bar is not None:
            bar.close()
        for qi, q in enumerate(queries):
            if results[qi] is None:
                results[qi] = results[first[q]]
        return results  # type: ignore[return-value]

    # -- reference mode ----------------------------------------------------------------------
    def reference(self, query: Query, own: int) -> List[int]:
        """One forward at batch size 1, full-vocabulary head everywhere, full sort."""
        t0 = time.perf_counter()
        ids = torch.tensor([query[0]], device=self.device)
        types = torch.tensor([query[1]], device=self.device)
        with torch.inference_mode(), self._autocast():
            logits = self.model(input_ids=ids, token_type_ids=types).logits[0, query[2][0]].float()
        order = torch.argsort(logits, descending=True).tolist()
        if self._allowed_list is None:
            self._allowed_list = self.allowed.tolist()
        allowed = self._allowed_list
        out: List[int] = []
        for t in order:
            if t != own and allowed[t]:
                out.append(t)
                if len(out) == self.top_k:
                    break
        self.stats.forwards += 1
        self.stats.queries += 1
        self.stats.masked += 1
        self.stats.tokens += ids.numel()
        self.stats.seconds += time.perf_counter() - t0
        return out


class GloveCandidates:
    """K nearest neighbours by cosine in a gensim KeyedVectors, memoised per word."""

    def __init__(self, vectors, *, top_k: int, chunk: int = 256, alpha_only: bool = False):
        self.kv = vectors
        self.top_k = top_k
        self.chunk = chunk
        self.alpha_only = alpha_only
        self._normed: Optional[torch.Tensor] = None
        self._allowed: Optional[torch.Tensor] = None
        self.memo: Dict[str, List[str]] = {}
        self.seconds = 0.0

    def key(self, word: str) -> Optional[str]:
        for k in (word, word.lower()):
            if k in self.kv.key_to_index:
                return k
        return None

    def normed(self) -> torch.Tensor:
        if self._normed is None:
            v = np.asarray(self.kv.vectors, dtype=np.float32)
            n = np.linalg.norm(v, axis=1, keepdims=True)
            self._normed = torch.from_numpy(v / np.maximum(n, 1e-12))
        return self._normed

    def allowed(self) -> torch.Tensor:
        """Vector-vocabulary words that may be candidates: not punctuation (alphabetic with
        ``alpha_only``)."""
        if self._allowed is None:
            test = str.isalpha if self.alpha_only else (lambda w: not is_punct(w))
            self._allowed = torch.tensor([bool(test(w)) for w in self.kv.index_to_key])
        return self._allowed

    def exact(self, words: Iterable[str]) -> Dict[str, List[str]]:
        """Neighbours for every distinct known word, in chunked matrix products."""
        t0 = time.perf_counter()
        keys = sorted({k for w in words for k in [self.key(w)] if k is not None and k not in self.memo})
        if keys:
            normed = self.normed()
            k = min(self.top_k + 1, normed.shape[0])
            for i in range(0, len(keys), self.chunk):
                part = keys[i : i + self.chunk]
                idx = torch.tensor([self.kv.key_to_index[w] for w in part])
                sims = normed[idx] @ normed.T
                sims[torch.arange(len(part)), idx] = float("-inf")  # not the word itself
                sims[:, ~self.allowed()] = float("-inf")
                vals, top = sims.topk(k, dim=1)
                for w, v, row in zip(part, vals.tolist(), top.tolist()):
                    keep = [self.kv.index_to_key[j] for s, j in zip(v, row) if s != float("-inf")]
                    self.memo[w] = keep[: self.top_k]
        self.seconds += time.perf_counter() - t0
        return self.memo

    def lookup(self, word: str) -> List[str]:
        k = self.key(word)
        return self.memo.get(k, []) if k is not None else []

    def reference(self, word: str) -> List[str]:
        """Per-word dot product with every vector and a full sort (no memo)."""
        t0 = time.perf_counter()
        k = self.key(word)
        out: List[str] = []
        if k is not None:
            normed = self.normed().numpy()
            i = self.kv.key_to_index[k]
            order = np.argsort(-(normed @ normed[i]), kind="stable")
            allowed = self.allowed().numpy()
            for j in order:
                if j != i and allowed[j]:
                    out.append(self.kv.index_to_key[j])
                    if len(out) == self.top_k:
                        break
        self.seconds += time.perf_counter() - t0
        return out


def cased(cands: Iterable[str], original: str) -> List[str]:
    return [apply_casing(c, original) for c in cands]


def _bar(total: int, desc: str, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False)
