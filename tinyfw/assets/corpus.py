"""Unlabeled English text for the offline corpus: readers yield one document/paragraph each.

Each reader takes a local file or folder and yields whitespace-normalised strings; the
corpus file holds one of them per line.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import random
import re
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator

from tinyfw.fsutil import atomic_write_text

MIN_WORDS = 8  # shorter paragraphs (headings, list items, captions) are dropped


def _clean(text: str) -> str:
    return " ".join(text.split())


def _paragraphs(text: str, min_words: int = MIN_WORDS) -> Iterator[str]:
    for para in re.split(r"\n\s*\n", text):
        para = _clean(para)
        if len(para.split()) >= min_words:
            yield para


def wiki_paragraphs(dump: Path, min_article_words: int = 50) -> Iterator[str]:
    """A MediaWiki XML dump (.bz2) -> plain-text paragraphs (gensim's ``filter_wiki``).

    Redirects, non-article pages and articles under ``min_article_words`` words are dropped.
    """
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    with bz2.open(dump, "rb") as f:
        for title, text, _ in extract_pages(f):
            if ":" in title or text.lstrip().lower().startswith("#redirect"):
                continue
            plain = filter_wiki(text)
            plain = re.sub(r"(?m)^[ \t]*=+.*=[ \t]*$", "\n", plain)  # section headings
            plain = re.sub(r"'{2,}", "", plain)  # bold/italic quote marks
            plain = re.sub(r"\(\s*[,;]?\s*\)", "", plain)  # parentheses emptied by filtering
            if len(plain.split()) >= min_article_words:
                yield from _paragraphs(plain)


def lines(path: Path) -> Iterator[str]:
    """A text file with one document per line (e.g. gensim's ``lee_background.cor``)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = _clean(line)
            if line:
                yield line


def polarity_reviews(path: Path) -> Iterator[str]:
    """Pattern's ``label,text`` CSV of full reviews -> one review per line (labels dropped)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        for row in csv.reader(f):
            if len(row) == 2 and _clean(row[1]):
                yield _clean(row[1])


def fortunes(folder: Path, skip=("ascii-art", "translate-me")) -> Iterator[str]:
    """BSD fortune files (entries separated by ``%`` lines) -> one fortune per line."""
    for path in sorted(Path(folder).iterdir()):
        if not path.is_file() or path.is_symlink() or path.suffix in (".dat", ".u8") or path.name in skip:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for entry in re.split(r"(?m)^%\s*$", text):
            entry = _clean(entry)
            if len(entry.split()) >= 3:
                yield entry


def gz_paragraphs(path: Path) -> Iterator[str]:
    """A gzipped plain-text book (e.g. the Jargon File) -> its paragraphs."""
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        yield from _paragraphs(f.read())


def write_corpus(out_file: Path, sources: Dict[str, Callable[[], Iterable[str]]], seed: int = 42,
                 log: Callable[[str], None] = print) -> Dict[str, Dict[str, int]]:
    """Concatenate the sources, shuffle the lines (seeded) and write them atomically.

    Shuffling mixes the sources so that any held-out slice of the file covers all of them.
    Returns per-source counts {"docs", "words"}.
    """
    docs, counts = [], {}
    for name, read in sources.items():
        got = [d for d in read() if d]
        counts[name] = {"docs": len(got), "words": sum(len(d.split()) for d in got)}
        log(f"  corpus source {name:<14} {counts[name]['docs']:>7} docs {counts[name]['words']:>9} words")
        docs.extend(got)
    if not docs:
        raise ValueError("the corpus sources yielded no text")
    random.Random(seed).shuffle(docs)
    atomic_write_text(out_file, "\n".join(docs) + "\n")
    return counts
