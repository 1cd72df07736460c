"""Words of a text, which of them may be replaced, and casing patterns.

Words come from BERT's basic tokenisation (whitespace + punctuation split, casing kept),
the unit Algorithm 1 of TinyBERT iterates over. A variant is the words joined by single
spaces, as in the reference; a BERT tokenizer gives the same word pieces either way.
"""

from __future__ import annotations

import unicodedata
from typing import Iterable, List


# A compact English stop-word list (function words); pass your own to the Augmenter.
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from
further had has have having he her here hers herself him himself his how i if in into is it
its itself just me more most my myself no nor not now of off on once only or other our ours
ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were
what when where which while who whom why will with would you your yours yourself yourselves
s t d ll m o re ve y""".split()
)

_basic_tok = None


def _basic():
    global _basic_tok
    if _basic_tok is None:
        try:  # transformers 5 keeps the pure-Python BERT tokenizer under this name
            from transformers.models.bert.tokenization_bert_legacy import BasicTokenizer
        except ImportError:  # transformers 4
            from transformers.models.bert.tokenization_bert import BasicTokenizer
        _basic_tok = BasicTokenizer(do_lower_case=False, strip_accents=False)
    return _basic_tok


def split_words(text: str) -> List[str]:
    """BERT basic tokenisation with the original casing: ``"Don't!"`` -> ``["Don", "'", "t", "!"]``."""
    return _basic().tokenize(text)


def is_punct(s: str) -> bool:
    """True when every character is punctuation or a symbol (Unicode categories P*, S*)."""
    return bool(s) and all(unicodedata.category(c)[0] in "PS" for c in s)


def is_alpha(s: str) -> bool:
    return s.isalpha()


def eligible(word: str, rule: str = "alpha") -> bool:
    """May ``word`` be replaced? ``alpha``: it contains a letter (the default);
    ``all``: any word that is not punctuation-only (numbers included)."""
    if rule == "alpha":
        return any(c.isalpha() for c in word)
    if rule == "all":
        return not is_punct(word)
    raise ValueError(f"unknown eligible-word rule '{rule}'; use 'alpha' or 'all'")


def apply_casing(candidate: str, original: str) -> str:
    """Give ``candidate`` the casing pattern of ``original``: UPPER, Title or as-is (lower)."""
    if len(original) > 1 and original.isupper():
        return candidate.upper()
    if original[:1].isupper():
        return candidate[:1].upper() + candidate[1:]
    return candidate


def join_words(words: Iterable[str]) -> str:
    return " ".join(words)
