"""Words of a text, which of them may be replaced, and casing patterns.

Words come from BERT's basic tokenisation (whitespace + punctuation split, casing kept),
the unit Algorithm 1 of TinyBERT iterates over. A variant is the words joined by single
spaces, as in the reference; a BERT tokenizer gives the same word pieces either way.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable, List

# NLTK's English stop-word list (179 words: function words and negations such as no, nor, not,
# didn, don't), the list the reference augmenter never replaces. Basic tokenisation splits
# "don't" into "don", "'", "t", so the pieces are in the list too.
STOPWORDS = frozenset(
    """i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself
yourselves he him his himself she she's her hers herself it it's its itself they them their
theirs themselves what which who whom this that that'll these those am is are was were be
been being have has had having do does did doing a an the and but if or because as until
while of at by for with about against between into through during before after above below
to from up down in out on off over under again further then once here there when where why
how all any both each few more most other some such no nor not only own same so than too
very s t can will just don don't should should've now d ll m o re ve y ain aren aren't
couldn couldn't didn didn't doesn doesn't hadn hadn't hasn hasn't haven haven't isn isn't ma
mightn mightn't mustn mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't weren
weren't won won't wouldn wouldn't""".split()
)
# Which words of a sentence may be replaced (the *targets*):
#   reference: purely alphabetic ([a-z]+ after lower-casing) and not a stop word - the
#              reference implementation's rule (negations and function words stay put);
#   alpha:     any word with a letter, stop words included;
#   all:       any word that is not punctuation-only (numbers included).
TARGET_RULES = ("reference", "alpha", "all")
_ASCII_WORD = re.compile(r"[a-z]+")

_basic_tok = None


def _basic():
    global _basic_tok
    if _basic_tok is None:
        # transformers 5 (pyproject.toml) keeps the pure-Python BERT tokenizer under this name
        from transformers.models.bert.tokenization_bert_legacy import BasicTokenizer

        _basic_tok = BasicTokenizer(do_lower_case=False, strip_accents=False)
    return _basic_tok


def split_words(text: str) -> List[str]:
    """BERT basic tokenisation with the original casing: ``"Don't!"`` -> ``["Don", "'", "t", "!"]``."""
    return _basic().tokenize(text)


def is_punct(s: str) -> bool:
    """True when every character is punctuation or a symbol (Unicode categories P*, S*)."""
    return bool(s) and all(unicodedata.category(c)[0] in "PS" for c in s)


def eligible(word: str, rule: str = "reference") -> bool:
    """May ``word`` be replaced under target rule ``rule`` (see ``TARGET_RULES``)?"""
    if rule == "reference":
        w = word.lower()
        return bool(_ASCII_WORD.fullmatch(w)) and w not in STOPWORDS
    if rule == "alpha":
        return any(c.isalpha() for c in word)
    if rule == "all":
        return not is_punct(word)
    raise ValueError(f"unknown target rule '{rule}'; use one of {', '.join(TARGET_RULES)}")


def apply_casing(candidate: str, original: str) -> str:
    """Give ``candidate`` the casing pattern of ``original``: UPPER, Title or as-is (lower)."""
    if len(original) > 1 and original.isupper():
        return candidate.upper()
    if original[:1].isupper():
        return candidate[:1].upper() + candidate[1:]
    return candidate


def join_words(words: Iterable[str]) -> str:
    return " ".join(words)
