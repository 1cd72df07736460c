"""The augment/ package: candidate rules, sampling, determinism, exact == reference, errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from gensim.test.utils import datapath
from transformers import BertModel

from augment import STOPWORDS, Augmenter, load_masked_lm, load_vectors, random_vectors, split_words
from augment.words import apply_casing
from conftest import tiny_mlm
from tinyfw.models.load import write_tiny_tokenizer


def _texts(n: int = 12) -> list[str]:
    lines = Path(datapath("pang_lee_polarity.cor")).read_text(encoding="latin-1").splitlines()
    return [l.split(" ", 1)[1] for l in lines[:n]]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return write_tiny_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def mlm(tok):
    return tiny_mlm(tok).eval()


@pytest.fixture(scope="module")
def kv():
    words = {w.lower() for t in _texts(40) for w in split_words(t)}
    words |= {"wonderful", "outstanding", "truly", "superb", "excellent"}
    return random_vectors(words, dim=8, seed=1)


def _aug(mlm, tok, kv, **kw):
    kw = {"n_aug": 5, "top_k": 4, "seed": 3, **kw}
    return Augmenter(mlm, tok, kv, **kw)


def test_words_and_casing():
    assert split_words("Don't stop!") == ["Don", "'", "t", "stop", "!"]
    assert apply_casing("great", "GOOD") == "GREAT"
    assert apply_casing("great", "Good") == "Great"
    assert apply_casing("great", "good") == "great"
    assert apply_casing("great", "I") == "Great"  # one capital letter is Title, not UPPER


def test_candidate_rules(mlm, tok, kv):
    aug = _aug(mlm, tok, kv, alpha_only=True, stopwords=True, targets="alpha")
    [a] = aug.analyse(["The film was WONDERFUL , truly outstanding"])
    src = dict(zip(a.words, a.source))
    assert src["film"] == src["The"] == "mlm"  # single pieces in the tiny vocabulary
    assert src["WONDERFUL"] == src["outstanding"] == "glove"  # several pieces
    assert src[","] == ""  # punctuation is not replaced
    vocab = set(tok.get_vocab())
    for w, s, c in zip(a.words, a.source, a.candidates):
        if s == "mlm":
            assert len(c) == 4
            for x in c:
                assert x.lower() in vocab and not x.startswith("##") and x.isalpha()
                assert x.lower() not in STOPWORDS and x.lower() != w.lower()
                assert x.lower() not in {"[cls]", "[sep]", "[mask]", "[pad]", "[unk]"}
        if s == "glove":
            assert c and len(c) == 4 and w.lower() not in {x.lower() for x in c}
    # casing pattern restored: UPPER word -> UPPER candidates, Title -> Title
    assert all(x.isupper() for x in a.candidates[a.words.index("WONDERFUL")])
    assert all(x[0].isupper() for x in a.candidates[a.words.index("The")])
    # glove neighbours are the nearest by cosine
    expect = [w for w, _ in kv.most_similar("outstanding", topn=4)]
    assert a.candidates[a.words.index("outstanding")] == expect


def test_without_filters_candidates_may_be_stopwords(mlm, tok, kv):
    aug = _aug(mlm, tok, kv, top_k=30)
    cands = {x.lower() for c in aug.analyse(_texts(4))[0].candidates for x in c}
    assert cands & STOPWORDS  # the filter above really removes something


def test_reference_targets_keep_stop_words_negations_and_non_words():
    from augment.words import eligible

    words = split_words("I didn't like it , it was not 90s fun at all : no , nor CHARMING")
    targets = [w for w in words if eligible(w, "reference")]
    assert targets == ["like", "fun", "CHARMING"]
    for neg in ("no", "nor", "not", "didn", "t", "don", "wasn", "won"):
        assert neg in STOPWORDS and not eligible(neg, "reference")
    assert eligible("not", "alpha") and eligible("90s", "alpha") and not eligible("90s", "reference")
    assert eligible("90", "all") and not eligible("90", "alpha") and not eligible(":", "all")
    assert not eligible("café", "reference")  # [a-z]+ only, as the reference


def test_reference_targets_are_the_only_words_changed(mlm, tok, kv):
    texts = _texts(8)
    aug = _aug(mlm, tok, kv, p_replace=1.0, n_aug=10)
    changed_default = kept_default = 0
    for a, rows in zip(aug.analyse(texts), aug.augment(texts)):
        for v in rows[1:]:
            for w, new in zip(a.words, v.split(" ")):
                if w.lower() in STOPWORDS or not w.isalpha():
                    assert new == w  # stop words, negations, numbers, punctuation stay put
                    kept_default += 1
                else:
                    changed_default += new != w
    assert kept_default and changed_default
    # the former rule (any word with a letter) makes more words targets
    loose = _aug(mlm, tok, kv, targets="alpha")
    loose.analyse(texts)
    strict = _aug(mlm, tok, kv)
    strict.analyse(texts)
    assert strict.stats()["eligible"] < loose.stats()["eligible"]
    assert strict.stats()["mlm_masked"] < loose.stats()["mlm_masked"]


def test_p_replace_extremes(mlm, tok, kv):
    texts = _texts(6)
    out = _aug(mlm, tok, kv, p_replace=0.0).augment(texts)
    assert out == [[t] for t in texts]
    aug = _aug(mlm, tok, kv, p_replace=1.0)
    analyses = aug.analyse(texts)
    for a, rows in zip(analyses, aug.augment(texts)):
        assert rows[0] == a.text and len(rows) > 1
        for v in rows[1:]:
            words = v.split(" ")
            assert len(words) == len(a.words)
            for w, new, c in zip(a.words, words, a.candidates):
                assert (new in c) if c else (new == w)


def test_variants_unique_original_first(mlm, tok, kv):
    texts = _texts(5)
    for t, rows in zip(texts, _aug(mlm, tok, kv, n_aug=20).augment(texts)):
        assert rows[0] == t and len(rows) == len(set(rows)) and 1 < len(rows) <= 21


def test_deterministic_and_independent_of_batch_size(mlm, tok, kv):
    texts = _texts(10)
    ref = _aug(mlm, tok, kv, batch_size=64).augment(texts)
    for bs in (1, 7):
        assert _aug(mlm, tok, kv, batch_size=bs).augment(texts) == ref
    assert _aug(mlm, tok, kv, batch_size=64).augment(texts) == ref
    # a row's variants depend on its row id, not on the rows around it
    assert _aug(mlm, tok, kv).augment(texts[5:9], row_ids=range(5, 9)) == ref[5:9]
    assert _aug(mlm, tok, kv, seed=4).augment(texts) != ref


def test_exact_equals_reference(mlm, tok, kv):
    texts = _texts(6)
    kw = dict(top_k=6, second_segment=True, batch_size=16)
    exact = _aug(mlm, tok, kv, mode="exact", **kw)
    ref = _aug(mlm, tok, kv, mode="reference", **kw)
    a, b = exact.analyse(texts), ref.analyse(texts)
    assert [x.candidates for x in a] == [x.candidates for x in b]
    assert exact.augment(texts) == ref.augment(texts)
    # exact mode ran fewer forwards than there are masked words
    assert exact.stats()["mlm_forwards"] < ref.stats()["mlm_forwards"]


def test_second_segment_and_multi_mask_change_inputs_not_rules(mlm, tok, kv):
    texts = _texts(6)
    single = _aug(mlm, tok, kv, batch_size=1, targets="alpha")  # many targets per sentence
    one = single.analyse(texts)
    multi = _aug(mlm, tok, kv, multi_mask=True, multi_mask_gap=4, batch_size=1, targets="alpha")
    many = multi.analyse(texts)
    assert [x.source for x in one] == [x.source for x in many]
    assert multi.stats()["mlm_masked"] == single.stats()["mlm_masked"]  # every word still asked about
    assert multi.stats()["mlm_forwards"] < single.stats()["mlm_forwards"] / 2  # in fewer sequences
    for x in many:
        for s, c in zip(x.source, x.candidates):
            assert (len(c) == 4) if s == "mlm" else True


def test_long_text_is_windowed(mlm, tok, kv):
    text = " ".join(["the film was good"] * 60)  # 240 words > 128 positions
    rows = _aug(mlm, tok, kv, second_segment=True).augment([text])
    assert rows[0][0] == text and len(rows[0]) > 1


def test_pairs(mlm, tok, kv):
    a, b = _texts(4), _texts(8)[4:]
    out = _aug(mlm, tok, kv, n_aug=6).augment_pairs(a, b)
    for x, y, rows in zip(a, b, out):
        assert rows[0] == (x, y) and len(rows) == len(set(rows)) > 1
        for va, vb in rows[1:]:
            assert (va == x) != (vb == y)  # exactly one side changed
        assert any(va != x for va, _ in rows[1:]) and any(vb != y for _, vb in rows[1:])
    assert _aug(mlm, tok, kv, n_aug=6).augment_pairs(a, b) == out


def test_errors(mlm, tok, kv, tmp_path):
    with pytest.raises(ValueError, match="text 1 is empty"):
        _aug(mlm, tok, kv).augment(["fine", "   "])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_vectors(tmp_path / "nope.kv")
    enc = BertModel(mlm.config)
    with pytest.raises(ValueError, match="no masked-LM head"):
        Augmenter(enc, tok, kv)
    enc.save_pretrained(tmp_path / "enc")
    tok.save_pretrained(tmp_path / "enc")
    with pytest.raises(ValueError, match="no trained masked-LM head"):
        load_masked_lm(str(tmp_path / "enc"))
    with pytest.raises(ValueError, match="mode"):
        _aug(mlm, tok, kv, mode="fast")
    with pytest.raises(ValueError, match="target rule"):
        _aug(mlm, tok, kv, targets="nouns")
    with pytest.raises(ValueError, match="reproduces the reference script"):
        _aug(mlm, tok, kv, mode="reference", second_segment=False)
    with pytest.raises(ValueError, match="reproduces the reference script"):
        _aug(mlm, tok, kv, mode="reference", second_segment=True, targets="alpha")


def test_load_masked_lm_and_glove_text(mlm, tok, tmp_path):
    mlm.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    model, t2 = load_masked_lm(str(tmp_path / "m"))
    assert type(model).__name__ == "BertForMaskedLM" and len(t2) == len(tok)
    glove = tmp_path / "g.txt"
    glove.write_text("good 1 0 0\ngreat 0.9 0.1 0\nbad -1 0 0\n", encoding="utf-8")
    kv = load_vectors(glove)
    assert kv.most_similar("good", topn=1)[0][0] == "great"
    kv.save(str(tmp_path / "g.kv"))
    assert load_vectors(tmp_path / "g.kv").vector_size == 3


def test_package_does_not_import_tinyfw():
    code = "import sys, augment; assert not [m for m in sys.modules if m.startswith('tinyfw')]"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
