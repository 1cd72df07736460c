"""The ``Augmenter``: TinyBERT's word-replacement data augmentation (paper Algorithm 1)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from augment import sampling
from augment.candidates import GloveCandidates, MlmCandidates, Query, build_query, cased, group_far_apart
from augment.window import Window
from augment.words import STOPWORDS, join_words, split_words
from augment.words import eligible as is_eligible

MODES = ("exact", "reference")  # see `mode` below (tinyfw's config: tinyfw.choices.AugmentMode)


@dataclass
class Analysis:
    """A text's words and the candidates of each (empty: the word stays)."""

    text: str
    words: List[str]
    candidates: List[List[str]]
    source: List[str] = field(default_factory=list)  # per word: mlm | glove | "" (not eligible / not read)
    read: int = -1  # leading words inside the student's window (all of them: len(words))


class Augmenter:
    """Word-replacement augmenter.

    Args:
        mlm_model: a masked LM (e.g. ``BertForMaskedLM``) — candidates for single-piece words.
        tokenizer: its tokenizer.
        vectors: gensim ``KeyedVectors`` — candidates for words of several pieces.
        n_aug: variants per text (N_a). p_replace: replacement probability (p_t). top_k: K.
        seed: with the row id, seeds each row's sampling.
        targets: which words may be replaced: ``reference`` (the reference code's rule: purely
            alphabetic and not a stop word), ``alpha`` (any word with a letter) or ``all`` (any
            word that is not punctuation).
        stopwords: words never offered as masked-LM candidates (``True``, the default: ``STOPWORDS``;
            ``None``: none, as the reference code).
        alpha_only: candidates must be alphabetic (default; ``False``: not punctuation-only, as
            the reference code). The defaults are tinyfw's (``augmenter.*``, tinyfw/config.py).
        second_segment: the masked input also carries the original sentence as segment B, as the
            reference code does (doubles the length; off by default).
        multi_mask: approximation — mask several words at least ``multi_mask_gap`` pieces apart
            in one forward (fewer forwards; candidates differ somewhat from exact mode).
        mode: ``exact`` (batched) or ``reference``: the reference script's computation — its
            targets, two segments, one forward per target word at batch size 1 with the
            full-vocabulary head and a full sort (the baseline speed-ups are measured against;
            it needs ``targets="reference"``, ``second_segment=True``, ``multi_mask=False``).
            Both modes give the same candidates for the same settings.
        precision: ``fp32`` | ``bf16`` | ``fp16`` autocast for the masked-LM forwards.
        batch_size: masked sequences per forward (exact mode); does not change the output.
        max_seq_len: the student's window in word pieces (special tokens included): only the
            words whose first piece falls inside it (as ``window_tokenizer`` truncates the text,
            or each segment of a pair, ``longest_first``) are augmented, and the masked LM reads
            only those words; the words beyond stay as they are in every variant. ``None``:
            whole texts (texts that fit the window get the same variants either way).
        window_tokenizer: the tokenizer that counts the window (the student's); default
            ``tokenizer`` — right when the masked LM shares the student's vocabulary.
    """

    def __init__(self, mlm_model, tokenizer, vectors, *, n_aug: int = 20, p_replace: float = 0.4,
                 top_k: int = 15, seed: int = 42, targets: str = "reference", stopwords=True,
                 alpha_only: bool = True, second_segment: bool = False, multi_mask: bool = False,
                 multi_mask_gap: int = 8, mode: str = "exact", precision: str = "fp32",
                 batch_size: int = 128, device: Optional[str] = None, progress: bool = False,
                 max_seq_len: Optional[int] = None, window_tokenizer=None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not '{mode}'")
        if not 0.0 <= p_replace <= 1.0:
            raise ValueError(f"p_replace must be in [0, 1], got {p_replace}")
        if n_aug < 0 or top_k < 1:
            raise ValueError(f"need n_aug >= 0 and top_k >= 1 (got {n_aug}, {top_k})")
        is_eligible("a", targets)  # an unknown rule fails here, not mid-run
        if mode == "reference" and (targets != "reference" or not second_segment or multi_mask):
            raise ValueError(
                "mode='reference' reproduces the reference script (reference targets, the original "
                "sentence as second segment, one word per forward): use targets='reference', "
                "second_segment=True, multi_mask=False with it, or mode='exact'"
            )
        if vectors is None:
            raise ValueError("vectors (gensim KeyedVectors) are required for multi-piece words")
        if second_segment and getattr(mlm_model.config, "type_vocab_size", 2) < 2:
            raise ValueError("second_segment needs a model with token types (type_vocab_size >= 2)")
        if stopwords is True:
            stopwords = STOPWORDS
        self.n_aug, self.p, self.top_k, self.seed = n_aug, p_replace, top_k, seed
        self.rule, self.second_segment, self.mode = targets, second_segment, mode
        self.multi_mask, self.gap = multi_mask, multi_mask_gap
        self.tok = tokenizer
        self.mlm = MlmCandidates(mlm_model, tokenizer, top_k=top_k, alpha_only=alpha_only,
                                 stopwords=stopwords or None, precision=precision,
                                 batch_size=batch_size, device=device, progress=progress)
        self.glove = GloveCandidates(vectors, top_k=top_k, alpha_only=alpha_only)
        lim = [mlm_model.config.max_position_embeddings]
        if 0 < getattr(tokenizer, "model_max_length", 0) < 100_000:
            lim.append(tokenizer.model_max_length)
        self.max_len = min(lim)
        self.special = dict(cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id,
                            mask_id=tokenizer.mask_token_id)
        if None in self.special.values():
            raise ValueError("the tokenizer needs [CLS]/[SEP]/[MASK] tokens (a BERT-style masked LM)")
        self.window = Window(window_tokenizer or tokenizer, max_seq_len) if max_seq_len else None
        self._pieces: Dict[str, List[int]] = {}
        self.counts: Dict[str, int] = dict(texts=0, words=0, eligible=0, mlm_words=0, glove_words=0,
                                           glove_oov=0, with_candidates=0, candidates=0, texts_cut=0,
                                           words_beyond_window=0)
        self.seconds = 0.0

    # -- candidates ------------------------------------------------------------------------
    def pieces(self, word: str) -> List[int]:
        p = self._pieces.get(word)
        if p is None:
            p = self._pieces[word] = self.tok.convert_tokens_to_ids(self.tok.tokenize(word))
        return p

    def analyse(self, texts: Sequence[str], read: Optional[Sequence[Optional[int]]] = None) -> List[Analysis]:
        """Words and candidates of every text (masked-LM work batched across all texts).
        ``read``: per text, the leading words to augment (None: all; default: the window's)."""
        words = self._split(texts)
        if read is None:
            read = [r for r, _ in self._read(texts, words=(words, None))]
        return self._analyse(texts, words, read)

    def analyse_words(self, sentences: Sequence[Sequence[str]],
                      read: Optional[Sequence[Optional[int]]] = None) -> List[Analysis]:
        """:meth:`analyse` for sentences given as words (kept as they are, one for one);
        candidates that are not one word (contain whitespace) are dropped."""
        words = []
        for i, s in enumerate(sentences):
            if isinstance(s, str) or not s or not all(isinstance(w, str) for w in s):
                raise ValueError(f"sentence {i} is not a non-empty list of words ({s!r}): give each sentence as "
                                 "its words, e.g. ['EU', 'rejects', 'German', 'call']")
            words.append(list(s))
        if read is None:
            read = [r for r, _ in self._read(words)]
        return self._analyse([join_words(w) for w in words], words, read, one_word=True)

    @staticmethod
    def _split(texts: Sequence[str]) -> List[List[str]]:
        out = []
        for i, text in enumerate(texts):
            words = split_words(text) if isinstance(text, str) else []
            if not words:
                raise ValueError(
                    f"text {i} is empty ({text!r}): drop empty rows before augmenting "
                    "(e.g. dataset.filter(lambda r: r['text'].strip()))"
                )
            out.append(words)
        return out

    def _read(self, a: Sequence, b: Optional[Sequence] = None, words=None):
        """Per row and segment, the leading words inside the window (None: all)."""
        if self.window is None:
            return [(None, None)] * len(a)
        return self.window.read(a, b, words)

    def _analyse(self, texts: Sequence[str], words_of: Sequence[List[str]], read: Sequence[Optional[int]],
                 one_word: bool = False) -> List[Analysis]:
        t0 = time.perf_counter()
        unk = self.tok.unk_token_id
        rows = []
        for text, words, n in zip(texts, words_of, read):
            inside = words if n is None else words[:n]  # the masked LM reads these only
            pieces = [self.pieces(w) for w in inside]
            kinds = []
            for w, p in zip(inside, pieces):
                if not is_eligible(w, self.rule) or not p:
                    kinds.append("")
                elif len(p) == 1 and p[0] != unk:
                    kinds.append("mlm")
                else:
                    kinds.append("glove")
            rows.append((text, inside, pieces, kinds))
        cands = self._reference(rows) if self.mode == "reference" else self._exact(rows)
        out = []
        for (text, inside, _, kinds), c, words in zip(rows, cands, words_of):
            c = [list(dict.fromkeys(cased(x, w))) for x, w in zip(c, inside)]
            if one_word:
                c = [[x for x in xs if x and not any(ch.isspace() for ch in x)] for xs in c]
            beyond = len(words) - len(inside)
            out.append(Analysis(text, list(words), c + [[] for _ in range(beyond)], kinds + [""] * beyond,
                                len(inside)))
            n = self.counts
            n["texts"] += 1
            n["words"] += len(words)
            n["texts_cut"] += beyond > 0
            n["words_beyond_window"] += beyond
            n["eligible"] += sum(k != "" for k in kinds)
            n["mlm_words"] += kinds.count("mlm")
            n["glove_words"] += kinds.count("glove")
            n["glove_oov"] += sum(k == "glove" and self.glove.key(w) is None for k, w in zip(kinds, inside))
            n["with_candidates"] += sum(bool(x) for x in c)
            n["candidates"] += sum(len(x) for x in c)
        self.seconds += time.perf_counter() - t0
        return out

    def _query(self, pieces, targets) -> Query:
        return build_query(pieces, targets, second_segment=self.second_segment, max_len=self.max_len, **self.special)

    def _exact(self, rows) -> List[List[List[int]]]:
        queries: List[Query] = []
        owns: List[List[int]] = []
        where: List[Tuple[int, List[int]]] = []
        budget = (self.max_len - 3) // 2 if self.second_segment else self.max_len - 2
        for r, (_, words, pieces, kinds) in enumerate(rows):
            singles = [i for i, k in enumerate(kinds) if k == "mlm"]
            if self.multi_mask:
                starts, s = [], 0
                for p in pieces:
                    starts.append(s)
                    s += len(p)
                groups = group_far_apart(singles, starts, self.gap, budget)
            else:
                groups = [[i] for i in singles]
            for g in groups:
                queries.append(self._query(pieces, g))
                owns.append([pieces[i][0] for i in g])
                where.append((r, g))
        self.glove.exact(w for _, words, _, kinds in rows for w, k in zip(words, kinds) if k == "glove")
        found = self.mlm.exact(queries, owns)
        cands: List[List[List[str]]] = [
            [self.glove.lookup(w) if k == "glove" else [] for w, k in zip(words, kinds)]
            for _, words, _, kinds in rows
        ]
        vocab = self.mlm.vocab
        for (r, g), res in zip(where, found):
            for i, ids in zip(g, res):
                cands[r][i] = [vocab[t] for t in ids]
        return cands

    def _reference(self, rows) -> List[List[List[str]]]:
        vocab = self.mlm.vocab
        out = []
        for _, words, pieces, kinds in rows:
            c = []
            for i, (w, k) in enumerate(zip(words, kinds)):
                if k == "mlm":
                    c.append([vocab[t] for t in self.mlm.reference(self._query(pieces, [i]), pieces[i][0])])
                elif k == "glove":
                    c.append(self.glove.reference(w))
                else:
                    c.append([])
            out.append(c)
        return out

    # -- augmentation ----------------------------------------------------------------------
    def augment(self, texts: Sequence[str], row_ids: Optional[Sequence[int]] = None) -> List[List[str]]:
        """Per text: the original first, then up to ``n_aug`` distinct variants."""
        row_ids = list(range(len(texts))) if row_ids is None else list(row_ids)
        if len(row_ids) != len(texts):
            raise ValueError("row_ids must have one id per text")
        return [
            sampling.variants(a.text, a.words, a.candidates, self.n_aug, self.p, sampling.row_rng(self.seed, r))
            for a, r in zip(self.analyse(texts), row_ids)
        ]

    def augment_words(self, sentences: Sequence[Sequence[str]],
                      row_ids: Optional[Sequence[int]] = None) -> List[List[List[str]]]:
        """Sentences given as words (token tasks): per sentence the original words first, then
        up to ``n_aug`` distinct variants with as many words, each replaced one for one (a
        candidate with whitespace is dropped), so word boundaries and positions survive."""
        row_ids = list(range(len(sentences))) if row_ids is None else list(row_ids)
        if len(row_ids) != len(sentences):
            raise ValueError("row_ids must have one id per sentence")
        return [
            sampling.word_variants(a.words, a.candidates, self.n_aug, self.p, sampling.row_rng(self.seed, r))
            for a, r in zip(self.analyse_words(sentences), row_ids)
        ]

    def augment_pairs(self, texts_a: Sequence[str], texts_b: Sequence[str],
                      row_ids: Optional[Sequence[int]] = None) -> List[List[Tuple[str, str]]]:
        """Sentence pairs: per pair the original first, then variants that change one side
        at a time (A on even draws, B on odd draws; see ``sampling.pair_variants``)."""
        if len(texts_a) != len(texts_b):
            raise ValueError("texts_a and texts_b must have the same length")
        row_ids = list(range(len(texts_a))) if row_ids is None else list(row_ids)
        words_a, words_b = self._split(texts_a), self._split(texts_b)
        reads = self._read(list(texts_a), list(texts_b), (words_a, words_b))
        both = self._analyse(list(texts_a) + list(texts_b), words_a + words_b,
                             [r for r, _ in reads] + [r for _, r in reads])
        n = len(texts_a)
        return [
            sampling.pair_variants((a.text, b.text), (a.words, b.words), (a.candidates, b.candidates),
                                   self.n_aug, self.p, sampling.row_rng(self.seed, r))
            for a, b, r in zip(both[:n], both[n:], row_ids)
        ]

    def stats(self) -> Dict[str, float]:
        """Counts so far: words, eligible words, candidate sources, mean candidates per word."""
        n = dict(self.counts)
        n["mean_candidates"] = round(n["candidates"] / max(1, n["with_candidates"]), 3)
        n["mlm_forwards"] = self.mlm.stats.forwards
        n["mlm_masked"] = self.mlm.stats.masked
        n["mlm_tokens"] = self.mlm.stats.tokens
        n["mlm_seconds"] = round(self.mlm.stats.seconds, 3)
        n["glove_seconds"] = round(self.glove.seconds, 3)
        n["seconds"] = round(self.seconds, 3)
        return n
