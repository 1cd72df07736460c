"""Augmentation benchmark: sentences/s of the reference mode vs exact mode vs bf16 vs the
approximations, and their top-K candidate overlap, on movie-review sentences.

    python scripts/bench_augment.py --mlm bert-base-random --n 200 --n-ref 50 --out bench.json
    python scripts/bench_augment.py --mlm ~/.cache/tinyfw/cache/mlm/<key>/mlm
    python scripts/bench_augment.py --device cuda --texts FILE --tokenizer DIR --vectors random

``--mlm bert-base-random``: a BERT-base-shaped masked LM (12 x 768, vocab 30522, random
weights: timing only) with the MiniLM asset's (bert-base-uncased) tokenizer (``--tokenizer``);
``tiny-random``: 2 x 64 with the built-in small vocabulary (a quick check, no assets). Vectors
(``--vectors``): ``glove-50d`` (the asset), a KeyedVectors/GloVe file, or ``random``: 50-d random
vectors over the texts' words, the tokenizer's words and fillers, 400,000 rows in all
(``--vector-rows``; GloVe 6B's size, so a full scan costs what it costs with GloVe; timing only). Sentences
(``--texts``): the first N of the ``mr`` asset's train split, ``gensim`` (gensim's bundled
Pang & Lee polarity sentences) or a file with one sentence per line. ``--device``: ``auto``
(the GPU when torch sees one), ``cpu`` or ``cuda``; each precision is warmed up untimed first.
Every setting builds
a fresh Augmenter (no memo carried over) and augments the same sentences (N_a=20, p=0.4,
K=15); the reference mode runs on the first ``--n-ref`` of them (it is slow), and overlaps
are taken on those. Loads other processes put on the CPU are recorded (os.getloadavg).
The reference mode is the reference script's computation: its target rule, the original
sentence as second segment, one forward per target word with the full head; every setting
uses ``--targets`` (default ``reference``). First, a table of how many words each target rule
makes replaceable and how many masked-LM forwards per sentence the reference then needs
(tokeniser only; ``--targets-only`` stops there).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

SETTINGS = {
    # name: (mode, second_segment, precision, multi_mask)
    "reference (2 segments, fp32)": ("reference", True, "fp32", False),
    "exact (2 segments, fp32)": ("exact", True, "fp32", False),
    "exact (2 segments, bf16)": ("exact", True, "bf16", False),
    "exact, multi-mask (2 segments, fp32)": ("exact", True, "fp32", True),
    "exact, 1 segment (fp32)": ("exact", False, "fp32", False),
    "exact, 1 segment (bf16)": ("exact", False, "bf16", False),
    "exact, 1 segment + multi-mask (bf16)": ("exact", False, "bf16", True),
}
BASE = "exact (2 segments, fp32)"


def load_mlm(spec: str, tokenizer: str):
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    if spec == "bert-base-random":
        tok = AutoTokenizer.from_pretrained(os.path.expanduser(tokenizer))
        return BertForMaskedLM(BertConfig(vocab_size=len(tok))).eval(), tok
    if spec == "tiny-random":
        import tempfile

        from tinyfw.models.load import write_tiny_tokenizer

        tok = write_tiny_tokenizer(Path(tempfile.mkdtemp(prefix="bench-augment-tok-")))
        config = BertConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=128, max_position_embeddings=256)
        return BertForMaskedLM(config).eval(), tok
    from augment import load_masked_lm

    return load_masked_lm(os.path.expanduser(spec))


def load_texts(spec: str, home: Path, n: int) -> list:
    """The first ``n`` sentences of ``mr``'s train split, of gensim's bundled polarity file, or of a file."""
    if spec == "mr":
        from datasets import load_from_disk

        return list(load_from_disk(str(home / "assets" / "mr"))["train"]["text"])[:n]
    if spec == "gensim":
        from gensim.test.utils import datapath

        lines = Path(datapath("pang_lee_polarity.cor")).read_text(encoding="latin-1").splitlines()
        return [ln.split(" ", 1)[1] for ln in lines if " " in ln][:n]
    lines = Path(spec).expanduser().read_text(encoding="utf-8").splitlines()
    return [ln for ln in lines if ln.strip()][:n]


def load_word_vectors(spec: str, home: Path, texts, tok, rows: int = 400_000):
    """GloVe-50d, a vectors file, or 50-d random vectors of GloVe 6B's row count (``random``)."""
    from augment import load_vectors, random_vectors, split_words

    if spec == "glove-50d":
        return load_vectors(home / "assets" / "glove-50d" / "vectors.kv")
    if spec != "random":
        return load_vectors(spec)
    words = {w.lower() for t in texts for w in split_words(t)}
    words |= {w for w in tok.get_vocab() if w.isalpha()}
    words |= {f"filler{i}" for i in range(max(0, rows - len(words)))}
    return random_vectors(words, dim=50, seed=0)


def overlap(a, b, words_a) -> dict:
    """Mean |A ∩ B| / max(|A|, |B|) over masked-LM words, and the share of identical lists."""
    inter, same, n = 0.0, 0, 0
    for x, y in zip(a, b):
        for s, ca, cb in zip(x.source, x.candidates, y.candidates):
            if s != "mlm":
                continue
            n += 1
            inter += len(set(ca) & set(cb)) / max(len(ca), len(cb), 1)
            same += ca == cb
    return {"topk_overlap": round(inter / max(n, 1), 4), "identical_lists": round(same / max(n, 1), 4), "words": n}


def count_targets(texts, tok) -> list:
    """Per target rule: words, targets, masked-LM / GloVe targets and negations per sentence."""
    from augment.words import STOPWORDS, eligible, split_words

    negations = {"no", "nor", "not", "t", "don", "didn", "doesn", "isn", "wasn", "aren", "weren", "won",
                 "wouldn", "couldn", "shouldn", "never"}
    out = []
    for rule in ("alpha", "reference"):
        words = targets = mlm = glove = neg = 0
        for t in texts:
            for w in split_words(t):
                words += 1
                if not eligible(w, rule):
                    continue
                targets += 1
                neg += w.lower() in negations
                pieces = tok.tokenize(w)
                mlm += len(pieces) == 1 and pieces[0] != tok.unk_token
                glove += not (len(pieces) == 1 and pieces[0] != tok.unk_token)
        n = len(texts)
        out.append({"rule": rule, "words_per_sentence": round(words / n, 2), "targets_per_sentence": round(targets / n, 2),
                    "target_share": round(targets / words, 3), "mlm_forwards_per_sentence": round(mlm / n, 2),
                    "glove_words_per_sentence": round(glove / n, 2), "negations_targeted": neg,
                    "stopwords_in_list": len(STOPWORDS)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mlm", default="bert-base-random")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--n-ref", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--home", default=os.environ.get("TINYFW_HOME", "~/.cache/tinyfw"))
    ap.add_argument("--settings", default="all",
                    help="setting names separated by ';' (they contain commas), default: all")
    ap.add_argument("--out", default="")
    ap.add_argument("--targets", default="reference", help="target rule of every setting: reference | alpha | all")
    ap.add_argument("--targets-only", action="store_true", help="print the target-rule table and stop")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--texts", default="mr", help="mr | gensim | a file with one sentence per line")
    ap.add_argument("--tokenizer", default="", help="bert-base-random's tokenizer (default: the minilm-l6 asset)")
    ap.add_argument("--vectors", default="glove-50d", help="glove-50d | random | a vectors file")
    ap.add_argument("--vector-rows", type=int, default=400_000, help="rows of --vectors random")
    args = ap.parse_args()

    from augment import Augmenter

    home = Path(args.home).expanduser()
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    texts = load_texts(args.texts, home, args.n)
    model, tok = load_mlm(args.mlm, args.tokenizer or str(home / "assets" / "minilm-l6"))
    model.to(device)

    counts = count_targets(texts, tok)
    print(f"\ntarget rules on {len(texts)} sentences (p_t = 0.4 rewrites ~0.4 x the target share of the words):")
    print("| rule | words / sentence | targets / sentence | share of words | masked-LM forwards / sentence "
          "(reference mode) | GloVe words / sentence | negations targeted |")
    print("|---|---|---|---|---|---|---|")
    for c in counts:
        print(f"| {c['rule']} | {c['words_per_sentence']} | {c['targets_per_sentence']} | {c['target_share']:.1%} | "
              f"{c['mlm_forwards_per_sentence']} | {c['glove_words_per_sentence']} | {c['negations_targeted']} |")
    if args.targets_only:
        if args.out:
            Path(args.out).write_text(json.dumps({"args": vars(args), "targets": counts}, indent=2))
        return
    vectors = load_word_vectors(args.vectors, home, texts, tok, args.vector_rows)
    names = list(SETTINGS) if args.settings == "all" else [s.strip() for s in args.settings.split(";") if s.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        ap.error(f"unknown settings {unknown}; choose from {list(SETTINGS)}")

    def augmenter(name: str) -> Augmenter:
        mode, seg, prec, multi = SETTINGS[name]
        return Augmenter(model, tok, vectors, n_aug=20, p_replace=0.4, top_k=15, seed=0, second_segment=seg,
                         targets="reference" if mode == "reference" else args.targets,
                         precision=prec, multi_mask=multi, mode=mode, batch_size=args.batch_size,
                         stopwords=None, alpha_only=False, device=device)

    for key in dict.fromkeys(SETTINGS[n][0::2] for n in names):  # per (mode, precision), untimed
        augmenter(next(n for n in names if SETTINGS[n][0::2] == key)).analyse(texts[:4])
    results, analyses = {}, {}
    for name in names:
        mode = SETTINGS[name][0]
        data = texts[: args.n_ref] if mode == "reference" else texts
        aug = augmenter(name)
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        an = aug.analyse(data)
        from augment import sampling

        rows = [sampling.variants(a.text, a.words, a.candidates, 20, 0.4, sampling.row_rng(0, i))
                for i, a in enumerate(an)]
        dt = time.perf_counter() - t0
        st = aug.stats()
        analyses[name] = an
        results[name] = {
            "sentences": len(data), "seconds": round(dt, 2), "sentences_per_s": round(len(data) / dt, 3),
            "outputs": sum(len(r) for r in rows), "mlm_forwards": st["mlm_forwards"], "mlm_masked": st["mlm_masked"],
            "mlm_tokens": st["mlm_tokens"], "mlm_seconds": st["mlm_seconds"], "glove_seconds": st["glove_seconds"],
            "load_avg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
        }
        print(name, json.dumps(results[name]), flush=True)
    if BASE in analyses:
        for name, an in analyses.items():
            if name == BASE:
                continue
            n = len(an)
            results[name]["vs_" + BASE] = overlap(analyses[BASE][:n], an, None)
        ref = next((k for k in analyses if SETTINGS[k][0] == "reference"), None)
        if ref:
            base_rate = results[ref]["sentences_per_s"]
            for name in results:
                results[name]["speedup_vs_reference"] = round(results[name]["sentences_per_s"] / base_rate, 2)
    print("\n| setting | sentences/s | speed-up vs reference | top-15 overlap vs exact fp32 | identical lists | forwards |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        ov = r.get("vs_" + BASE, {})
        print(f"| {name} | {r['sentences_per_s']} | {r.get('speedup_vs_reference', '')} | "
              f"{ov.get('topk_overlap', '1.0' if name == BASE else '')} | {ov.get('identical_lists', '')} | {r['mlm_forwards']} |")
    sample = analyses[names[-1]][0]
    print("\nexample:", sample.text)
    for w, s, c in zip(sample.words, sample.source, sample.candidates):
        if c:
            print(f"  {w} [{s}]: {', '.join(c[:8])}")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "targets": counts, "results": results,
                                              "torch_threads": torch.get_num_threads(), "device": device,
                                              "device_name": torch.cuda.get_device_name() if device == "cuda"
                                              else "cpu"}, indent=2))


if __name__ == "__main__":
    main()
