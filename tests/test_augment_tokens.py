"""Augmenting token-task sentences (word lists) and only the words the student reads (the window)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from gensim.models import KeyedVectors
from gensim.test.utils import datapath
from omegaconf import OmegaConf

from augment import Augmenter, Window, random_vectors, split_words
from augment.words import eligible
from conftest import save_tiny_mlm, tiny_mlm
from tinyfw.config import Config
from tinyfw.models.load import tiny_vocab, write_tiny_tokenizer

# a hand-made NER set: words and tag ids (0 O, 1 B-PER, 2 B-LOC, 3 B-ORG; -1 untagged)
SENTS = [
    (["Anna", "moved", "to", "Berlin", "last", "spring", "."], [1, 0, 0, 2, 0, 0, 0]),
    (["The", "film", "was", "good", "and", "the", "story", "great", "."], [0, 0, 0, 0, 0, 0, 0, 0, 0]),
    (["Acme", "opened", "a", "new", "office", "in", "Paris", ",", "U.S.", "says"], [3, 0, 0, 0, 0, 0, 2, 0, 2, 0]),
    (["John", "loved", "the", "funny", "movie"], [1, 0, 0, 0, -1]),
]


def _texts(n: int, start: int = 0) -> list[str]:
    lines = Path(datapath("pang_lee_polarity.cor")).read_text(encoding="latin-1").splitlines()
    return [" ".join(split_words(l.split(" ", 1)[1])) for l in lines[start : start + n]]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return write_tiny_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def mlm(tok):
    return tiny_mlm(tok).eval()


@pytest.fixture(scope="module")
def kv():
    words = {w.lower() for t in _texts(40) for w in split_words(t)} | {w.lower() for s, _ in SENTS for w in s}
    return random_vectors(words | {"wonderful", "superb", "excellent"}, dim=8, seed=1)


def _pieces_only(vocab):
    """The vocabulary less its whole words: every word splits into characters."""
    return [t for t in vocab if len(t) == 1 or t.startswith(("##", "["))]


def _aug(mlm, tok, kv, **kw):
    return Augmenter(mlm, tok, kv, **{"n_aug": 5, "top_k": 4, "seed": 3, **kw})


# -- word lists ----------------------------------------------------------------------------
def test_augment_words_keeps_count_targets_and_originals(mlm, tok, kv):
    words = [s for s, _ in SENTS]
    aug = _aug(mlm, tok, kv, p_replace=1.0, n_aug=8)
    analyses = aug.analyse_words(words)
    out = aug.augment_words(words)
    changed = 0
    for w, a, rows in zip(words, analyses, out):
        assert rows[0] == w and len(rows) > 1  # the original first
        assert len({tuple(r) for r in rows}) == len(rows)  # distinct
        for v in rows[1:]:
            assert len(v) == len(w)  # one for one: word boundaries survive
            for orig, new, c in zip(w, v, a.candidates):
                if not eligible(orig, "reference"):
                    assert new == orig  # stop words, punctuation, "U.S." stay
                assert (new in c) if c else (new == orig)
                changed += new != orig
    assert changed
    with pytest.raises(ValueError, match="sentence 1 is not a non-empty list of words"):
        aug.augment_words([["fine"], []])
    with pytest.raises(ValueError, match="sentence 0 is not a non-empty list of words"):
        aug.augment_words(["a whole text"])


def test_words_are_augmented_exactly_as_the_sentence_they_spell(mlm, tok, kv):
    texts = _texts(8)  # already single-spaced words: the text is its words joined by spaces
    by_text = _aug(mlm, tok, kv).augment(texts)
    by_words = _aug(mlm, tok, kv).augment_words([t.split(" ") for t in texts])
    assert [[" ".join(v) for v in rows] for rows in by_words] == by_text


def test_candidates_that_are_not_one_word_are_dropped(mlm, tok):
    kv = KeyedVectors(2)  # "outstanding" is several pieces in the tiny vocabulary: GloVe neighbours
    kv.add_vectors(["outstanding", "new york", "superb", "awful"],
                   np.array([[1, 0], [0.99, 0.1], [0.97, 0.2], [-1, 0]], dtype=np.float32))
    aug = _aug(mlm, tok, kv, top_k=2, p_replace=1.0, alpha_only=False)  # "new york" passes the text filter
    [as_text] = aug.analyse(["an outstanding film"])
    [as_words] = aug.analyse_words([["an", "outstanding", "film"]])
    assert as_text.candidates[1] == ["new york", "superb"]
    assert as_words.candidates[1] == ["superb"]
    for v in aug.augment_words([["an", "outstanding", "film"]])[0][1:]:
        assert len(v) == 3 and v[1] == "superb"


def test_augment_words_deterministic_whatever_the_batch(mlm, tok, kv):
    words = [s for s, _ in SENTS] + [t.split(" ") for t in _texts(6)]
    ref = _aug(mlm, tok, kv, batch_size=64).augment_words(words)
    for bs in (1, 5):
        assert _aug(mlm, tok, kv, batch_size=bs).augment_words(words) == ref
    assert _aug(mlm, tok, kv).augment_words(words[3:7], row_ids=range(3, 7)) == ref[3:7]
    assert _aug(mlm, tok, kv, seed=4).augment_words(words) != ref


# -- the window ------------------------------------------------------------------------------
def _starts(tok, words):
    out, s = [], 0
    for w in words:
        out.append(s)
        s += len(tok.tokenize(w))
    return out


def test_long_text_augments_only_the_window(mlm, tok, kv):
    long = " ".join(_texts(6, 10))  # ~100 words, several hundred pieces in the tiny vocabulary
    words = long.split(" ")
    aug = _aug(mlm, tok, kv, p_replace=1.0, n_aug=6, max_seq_len=32)
    [a] = aug.analyse([long])
    # the words read are those whose first piece is among the 30 pieces the tokenizer keeps
    kept = len(tok(long, truncation=True, max_length=32)["input_ids"]) - 2
    starts = _starts(tok, words)
    assert 0 < a.read < len(words) and starts[a.read - 1] < kept <= starts[a.read]
    assert not any(a.candidates[a.read:]) and any(a.candidates[: a.read])
    rows = aug.augment([long])[0]
    assert rows[0] == long and len(rows) > 1
    for v in rows[1:]:
        v = v.split(" ")
        assert v[a.read:] == words[a.read:]  # beyond the window: as it was
        assert v[: a.read] != words[: a.read]  # inside: replaced
    fresh = _aug(mlm, tok, kv, p_replace=1.0, n_aug=6, max_seq_len=32)
    assert fresh.augment([long])[0] == rows
    st = fresh.stats()
    assert st["texts_cut"] == 1 and st["words_beyond_window"] == len(words) - a.read
    # the masked LM read the window only: fewer input tokens than the whole text asks for
    whole = _aug(mlm, tok, kv, p_replace=1.0, n_aug=6)
    whole.augment([long])
    assert whole.stats()["texts_cut"] == 0 and st["mlm_tokens"] < whole.stats()["mlm_tokens"] / 3


def test_short_texts_get_the_same_variants_with_the_window(mlm, tok, kv):
    texts = [t for t in _texts(30) if len(tok(t)["input_ids"]) <= 64][:10]
    assert len(texts) == 10
    ref = _aug(mlm, tok, kv).augment(texts)
    windowed = _aug(mlm, tok, kv, max_seq_len=64)
    assert windowed.augment(texts) == ref and windowed.stats()["texts_cut"] == 0
    a, b = texts[:5], texts[5:]
    assert _aug(mlm, tok, kv, max_seq_len=128).augment_pairs(a, b) == _aug(mlm, tok, kv).augment_pairs(a, b)
    words = [t.split(" ") for t in texts]
    assert _aug(mlm, tok, kv, max_seq_len=64).augment_words(words) == _aug(mlm, tok, kv).augment_words(words)


def test_pair_window_is_each_segments_longest_first_share(mlm, tok, kv):
    long_a, short_b = " ".join(_texts(3, 10)), "the film was good"
    enc = tok(long_a, short_b, truncation=True, max_length=40)
    kept_a = sum(1 for s in enc.sequence_ids(0) if s == 0)
    assert enc.sequence_ids(0).count(1) == len(tok.tokenize(short_b))  # B kept whole
    aug = _aug(mlm, tok, kv, p_replace=1.0, n_aug=8, max_seq_len=40)
    [(ra, rb)] = aug.window.read([long_a], [short_b])
    words_a = long_a.split(" ")
    starts = _starts(tok, words_a)
    assert rb is None and starts[ra - 1] < kept_a <= starts[ra]
    rows = aug.augment_pairs([long_a], [short_b])[0]
    assert any(vb != short_b for _, vb in rows[1:])
    for va, _ in rows[1:]:
        assert va.split(" ")[ra:] == words_a[ra:]


def test_word_list_window_and_window_tokenizer(mlm, tok, kv, tmp_path):
    sent = SENTS[1][0] * 4 + [w for s, _ in SENTS for w in s]  # 67 words, the first ones in the tiny vocabulary
    aug = _aug(mlm, tok, kv, p_replace=1.0, max_seq_len=24)
    [a] = aug.analyse_words([sent])
    ids = tok(sent, is_split_into_words=True, truncation=True, max_length=24)
    assert a.read == max(w for w in ids.word_ids() if w is not None) + 1  # the words the student sees
    for v in aug.augment_words([sent])[0][1:]:
        assert len(v) == len(sent) and v[a.read:] == sent[a.read:]
    # another tokenizer counts the window: a vocabulary without most words cuts earlier
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "vocab.txt").write_text("\n".join(_pieces_only(tiny_vocab())) + "\n")
    from transformers import BertTokenizerFast

    chars = BertTokenizerFast(vocab=str(tmp_path / "v" / "vocab.txt"), do_lower_case=True)
    [c] = _aug(mlm, tok, kv, max_seq_len=24, window_tokenizer=chars).analyse_words([sent])
    assert c.read < a.read
    with pytest.raises(ValueError, match="max_seq_len must exceed"):
        Window(tok, 3)


# -- tinyfw: token tasks and the window in the cache -------------------------------------------
@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory) -> Path:
    return save_tiny_mlm(tmp_path_factory.mktemp("mlm"))


def _cfg(mlm_dir: Path, **aug):
    cfg = OmegaConf.structured(Config)
    cfg.augmenter.mlm = str(mlm_dir)
    cfg.augmenter.vectors = "smoke"
    cfg.augmenter.update({"n_aug": 4, "top_k": 3, "shard_size": 3, "p_replace": 0.6, **aug})
    cfg.task.max_seq_len = 32
    cfg.teacher.name_or_path, cfg.teacher.tokenizer = str(mlm_dir), ""  # the masked LM's vocabulary
    return cfg


def _token_ds(n_copies: int = 1):
    from datasets import Dataset, Features, Sequence, Value

    rows = SENTS * n_copies
    return Dataset.from_dict({"tokens": [s for s, _ in rows], "label": [t for _, t in rows]},
                             features=Features({"tokens": Sequence(Value("string")), "label": Sequence(Value("int64"))}))


def test_token_task_augmented_set(mlm_dir, tmp_path):
    from tinyfw import cache
    from tinyfw.artefacts import augmented as stage

    ds, home = _token_ds(), tmp_path / "home"
    entry, hit = stage.ensure_augmented_entry(_cfg(mlm_dir), home, ds, ["tokens"])
    assert not hit
    out = stage.ensure_augmented(_cfg(mlm_dir), home, ds, ["tokens"])
    assert set(out.column_names) == {"tokens", "label", "source_row", "is_original"}
    assert out.features["tokens"] == ds.features["tokens"] and out.features["label"] == ds.features["label"]
    assert sum(out["is_original"]) == len(ds) and len(out) > len(ds)
    last = -1
    for r in out:
        src = ds[r["source_row"]]
        if r["is_original"]:  # the original first, with its gold tags
            assert r["source_row"] == last + 1 and r == {**src, "source_row": r["source_row"], "is_original": True}
            last = r["source_row"]
        else:
            assert r["source_row"] == last  # variants follow their original
            assert len(r["tokens"]) == len(src["tokens"]) and r["label"] == [-1] * len(src["tokens"])
            for w, v in zip(src["tokens"], r["tokens"]):
                assert v == w or eligible(w, "reference")
    assert any(r["tokens"] != ds[r["source_row"]]["tokens"] for r in out if not r["is_original"])
    assert stage.ensure_augmented_entry(_cfg(mlm_dir), home, ds, ["tokens"]) == (entry, True)
    # the same rows as text would be another entry: the key names the token task
    parts = stage.key_parts(_cfg(mlm_dir), home, ds, ["tokens"])
    assert parts["type"] == "token" and cache.entry(home, stage.KIND, parts) == entry
    # a shard-independent, batch-independent build
    again = stage.ensure_augmented(_cfg(mlm_dir, shard_size=100, batch_size=2), tmp_path / "home2", ds, ["tokens"])
    assert again.to_list() == out.to_list()


def test_token_type_declared_on_text_is_refused(mlm_dir, tmp_path):
    from datasets import Dataset

    from tinyfw.artefacts import augmented as stage

    cfg = _cfg(mlm_dir)
    OmegaConf.set_struct(cfg.task, False)  # before task.type joins TaskCfg (token tasks' branch)
    cfg.task.type = "token"
    with pytest.raises(ValueError, match="task.type=token but column"):
        stage.ensure_augmented(cfg, tmp_path / "h", Dataset.from_dict({"text": ["a film"], "label": [0]}))


def _texts_ds(texts):
    from datasets import Dataset

    return Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(len(texts))]})


def test_window_enters_the_key_only_for_cut_texts(mlm_dir, tmp_path, caplog):
    from tinyfw import cache
    from tinyfw.artefacts import augmented as stage

    home = tmp_path / "home"
    short = ["the film was good", "a boring plot", "great acting and a fun story", "i love this comedy"]
    off = _cfg(mlm_dir, window=False)

    def key(cfg, texts):
        return cache.key_of(stage.key_parts(cfg, home, _texts_ds(texts), ["text"]))

    assert key(_cfg(mlm_dir), short) == key(off, short)  # texts that fit: the key of before the window
    long = " ".join(_texts(4, 10))
    assert key(_cfg(mlm_dir), short + [long]) != key(off, short + [long])
    with caplog.at_level(logging.INFO, logger="tinyfw.augment"):
        entry, _ = stage.ensure_augmented_entry(_cfg(mlm_dir), home, _texts_ds(short + [long]))
    stats = json.loads((entry / "stats.json").read_text())
    beyond = stats["window"]["words_beyond_window"]
    assert stats["window"]["texts_cut"] == 1 and beyond > 0 and stats["candidates"]["words_beyond_window"] == beyond
    assert f"{beyond} words beyond the window stay as they are" in caplog.text
    out = stage.ensure_augmented(_cfg(mlm_dir), home, _texts_ds(short + [long]))
    words = long.split(" ")
    tail = words[len(words) - beyond:]
    variants = [r["text"].split(" ") for r in out if r["source_row"] == 4 and not r["is_original"]]
    assert variants and all(v[len(v) - beyond:] == tail for v in variants)


def test_window_counted_with_the_teachers_tokenizer_when_the_masked_lms_differs(mlm_dir, tmp_path, caplog):
    from tinyfw.artefacts import augmented as stage
    from tinyfw.artefacts.augwindow import window_plan

    ds = _texts_ds([" ".join(_texts(4, 10))])
    cfg = _cfg(mlm_dir)
    cfg.teacher.tokenizer = str(tmp_path / "missing")  # cannot be loaded: refused, with the fix
    with pytest.raises(ValueError, match="teacher's tokenizer .* cannot be loaded.*augmenter.window=false"):
        window_plan(cfg, tmp_path / "h", ds, ["text"])
    other = tmp_path / "other"  # the tiny vocabulary less its whole words: every word splits further
    write_tiny_tokenizer(other)
    (other / "vocab.txt").write_text("\n".join(_pieces_only(tiny_vocab())) + "\n")
    (other / "tokenizer.json").unlink()
    cfg.teacher.tokenizer = str(other)
    with caplog.at_level(logging.WARNING, logger="tinyfw.augment"):
        plan = window_plan(cfg, tmp_path / "h", ds, ["text"])
    assert plan.counted_with == "teacher's tokenizer" and "is not the teacher's" in caplog.text
    own = window_plan(_cfg(mlm_dir), tmp_path / "h", ds, ["text"])
    assert own.counted_with == "masked LM's tokenizer" and plan.key() != own.key()
    assert plan.words_beyond > own.words_beyond
    assert stage.key_parts(cfg, tmp_path / "h", ds, ["text"], plan)["window"] == plan.key()
