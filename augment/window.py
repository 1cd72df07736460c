"""Which words the student reads: the first ``max_seq_len`` word pieces (special tokens
included) of a text, or of a sentence pair as the tokenizer's ``longest_first`` truncation
keeps each segment's share. A word whose first piece falls beyond that window is never read,
so augmenting it only costs masked-LM work.

The window is counted by calling the tokenizer exactly as a training set is tokenised
(``tokenizer(a, b, truncation=True, max_length=max_seq_len)``; word lists with
``is_split_into_words=True``), then mapping the pieces kept per segment onto the words with
the tokenizer's piece count of each word.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from augment.words import split_words

Read = Tuple[Optional[int], Optional[int]]  # per segment: leading words read (None: all of them)


class Window:
    """The words of each text that fall inside ``max_seq_len`` pieces of ``tokenizer``.

    ``texts_cut`` and ``words_beyond`` count, over all calls, the texts (segments) longer than
    the window and the words left beyond it.
    """

    def __init__(self, tokenizer, max_seq_len: int):
        n_special = tokenizer.num_special_tokens_to_add(pair=True)
        if int(max_seq_len) <= n_special:
            raise ValueError(f"max_seq_len must exceed the {n_special} special tokens of a pair, got {max_seq_len}")
        self.tok, self.max_len = tokenizer, int(max_seq_len)
        self._n: Dict[str, int] = {}
        self.texts_cut = 0
        self.words_beyond = 0

    def n_pieces(self, word: str) -> int:
        n = self._n.get(word)
        if n is None:
            n = self._n[word] = len(self.tok.tokenize(word))
        return n

    def _within(self, words: Sequence[str], kept: int) -> Optional[int]:
        """How many leading words start inside the first ``kept`` pieces (None: all)."""
        start = 0
        for i, w in enumerate(words):
            if start >= kept:
                self.texts_cut += 1
                self.words_beyond += len(words) - i
                return i
            start += self.n_pieces(w)
        return None

    def read(self, a: Sequence, b: Optional[Sequence] = None,
             words: Optional[Tuple[Sequence[List[str]], Optional[Sequence[List[str]]]]] = None) -> List[Read]:
        """Per row, the leading words of each segment the student reads (``None``: all; the
        second is ``None`` without ``b``). ``a`` / ``b``: texts (words as
        :func:`augment.words.split_words` gives them, or as given in ``words``: the words of
        ``a`` and of ``b`` when already split), or word lists (one segment only)."""
        a = list(a)
        if not a:
            return []
        split = not isinstance(a[0], str)
        if split and b is not None:
            raise ValueError("word lists are read as one segment: pass b=None")
        b = None if b is None else list(b)
        call = dict(is_split_into_words=True) if split else {}
        full = self.tok(a, b, truncation=False, verbose=False, **call)["input_ids"]
        cut = [i for i, ids in enumerate(full) if len(ids) > self.max_len]
        out: List[Read] = [(None, None)] * len(a)
        if not cut:
            return out
        enc = self.tok([a[i] for i in cut], None if b is None else [b[i] for i in cut], truncation=True,
                       max_length=self.max_len, return_special_tokens_mask=True, return_token_type_ids=True, **call)
        for j, i in enumerate(cut):
            seg = self._segments(enc, j)
            words_a = a[i] if split else words[0][i] if words else split_words(a[i])
            ra = self._within(words_a, seg.count(0))
            rb = None if b is None else self._within(words[1][i] if words else split_words(b[i]), seg.count(1))
            out[i] = (ra, rb)
        return out

    @staticmethod
    def _segments(enc, j: int) -> List[Optional[int]]:
        """Segment (0 / 1) of each kept piece of row ``j``, None for special tokens."""
        if getattr(enc, "encodings", None):  # a fast tokenizer knows each piece's sequence
            return list(enc.sequence_ids(j))
        special = enc["special_tokens_mask"][j]
        types = enc.get("token_type_ids")
        types = types[j] if types is not None else [0] * len(special)
        return [None if s else t for s, t in zip(special, types)]
