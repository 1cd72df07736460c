"""The unlabeled corpus: sources, segmentation, caching, streaming, and clear errors."""

from __future__ import annotations

import json

import pytest

from tinyfw.data.collate import Collator
from tinyfw.data.corpus import (CorpusError, load_corpus, source_identity, tokenize_and_segment)
from tinyfw.models.load import load_tokenizer
from tinyfw.paths import MissingAssetError


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return load_tokenizer("tiny", tmp_path_factory.mktemp("home"))


def test_smoke_source_segments_and_cache(tmp_path, tok):
    ds = load_corpus("smoke", tmp_path, max_docs=20)
    assert ds.column_names == ["text"] and len(ds) == 20
    key = source_identity("smoke", tmp_path)
    train, held = tokenize_and_segment(ds, tok, max_seq_len=32, heldout_fraction=0.1, seed=0,
                                       home=tmp_path, key=key)
    assert len(train) > 50 and len(held) >= 1
    for ids in train["input_ids"][:50]:
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id and 3 <= len(ids) <= 32
    # cached: a second call loads the same segments from <home>/cache/corpus
    entries = list((tmp_path / "cache" / "corpus").iterdir())
    train2, _ = tokenize_and_segment(ds, tok, max_seq_len=32, heldout_fraction=0.1, seed=0,
                                     home=tmp_path, key=key)
    assert train2["input_ids"] == train["input_ids"]
    assert list((tmp_path / "cache" / "corpus").iterdir()) == entries
    batch = Collator(tok.pad_token_id)([train[0], train[-1]])
    assert batch["input_ids"].shape == batch["attention_mask"].shape == batch["token_type_ids"].shape
    assert batch["attention_mask"].sum() == len(train[0]["input_ids"]) + len(train[-1]["input_ids"])


def test_local_formats(tmp_path, tok):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "a.txt").write_text("the film was good\n\nthe plot was bad\n")
    (d / "b.txt").write_text("one more line of text\n")
    assert len(load_corpus(str(d), tmp_path)) == 3  # directory, empty line dropped
    assert len(load_corpus(str(d / "*.txt"), tmp_path)) == 3  # glob
    j = tmp_path / "c.jsonl"
    j.write_text("\n".join(json.dumps({"body": f"text number {i}", "id": i}) for i in range(5)))
    ds = load_corpus(str(j), tmp_path, text_column="body")
    assert ds.column_names == ["text"] and ds[0]["text"] == "text number 0"
    with pytest.raises(CorpusError, match=r"no column 'text'.*\['body', 'id'\].*text_column"):
        load_corpus(str(j), tmp_path)


def test_errors(tmp_path, tok):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_corpus(str(tmp_path / "nope.txt"), tmp_path)
    with pytest.raises(FileNotFoundError, match="matches no file"):
        load_corpus(str(tmp_path / "*.parquet"), tmp_path)
    with pytest.raises(MissingAssetError, match="stage=assets"):
        load_corpus("offline", tmp_path / "empty-home")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n   \n\n")
    with pytest.raises(CorpusError, match="no non-empty document"):
        load_corpus(str(empty), tmp_path)
    with pytest.raises(CorpusError, match="too short"):
        tokenize_and_segment(load_corpus("smoke", tmp_path, max_docs=2), tok, max_seq_len=2)


def test_streaming_shards_per_rank(tmp_path, tok):
    ds = load_corpus("smoke", tmp_path, streaming=True, max_docs=40)
    r0, held = tokenize_and_segment(ds, tok, max_seq_len=32, heldout_fraction=0.1, heldout_stream=4,
                                    rank=0, world_size=2)
    r1, _ = tokenize_and_segment(ds, tok, max_seq_len=32, heldout_fraction=0.1, heldout_stream=4,
                                 rank=1, world_size=2)
    a = [tuple(x["input_ids"]) for x in r0]
    b = [tuple(x["input_ids"]) for x in r1]
    h = [tuple(x["input_ids"]) for x in held]
    assert len(h) == 4 and a and b and not (set(a) & set(b)) and not (set(a) & set(h))
