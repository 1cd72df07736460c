"""Augmenting long texts whole vs only the student's window (``augmenter.window``).

    python scripts/bench_window.py                      # 50 texts of 300 words, tiny random masked LM
    python scripts/bench_window.py --mlm minilm-random --n 20

Texts: gensim's bundled news articles (``lee_background.cor``) run together and cut into ``--n``
texts of ``--words`` words. Masked LM (random weights: timing only): ``tiny-random`` (2 x 64,
the built-in small vocabulary, 128 positions) or ``minilm-random`` (the MiniLM-L6 asset's shape
and tokenizer, 512 positions; needs ``stage=assets``). Vectors: random over the texts' words.
Each setting augments the same texts with a fresh Augmenter (N_a=20, p=0.4, K=15, reference
targets, fp32, exact mode): first whole texts (``max_seq_len=None``, the former behaviour),
then the window of ``--max-seq-len`` word pieces. Prints seconds, masked-LM forwards and input
tokens of each, and their ratio; the machine's load average is recorded beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch


def texts(n: int, words: int):
    from gensim.test.utils import datapath

    from augment import split_words

    flat = [w for line in Path(datapath("lee_background.cor")).read_text(encoding="latin-1").splitlines()
            for w in split_words(line)]
    if len(flat) < n * words:
        raise SystemExit(f"the corpus has {len(flat)} words, fewer than --n x --words = {n * words}")
    return [" ".join(flat[i * words:(i + 1) * words]) for i in range(n)]


def load_mlm(spec: str, home: str):
    from transformers import AutoConfig, AutoTokenizer, BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    if spec == "tiny-random":
        import tempfile

        from tinyfw.models.load import write_tiny_tokenizer

        tok = write_tiny_tokenizer(Path(tempfile.mkdtemp()))
        cfg = BertConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=128, max_position_embeddings=128)
        return BertForMaskedLM(cfg).eval(), tok
    if spec == "minilm-random":
        path = Path(os.path.expanduser(home)) / "assets" / "minilm-l6"
        tok = AutoTokenizer.from_pretrained(str(path))
        return BertForMaskedLM(AutoConfig.from_pretrained(str(path))).eval(), tok
    raise SystemExit(f"--mlm: tiny-random or minilm-random, not {spec}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mlm", default="tiny-random")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--words", type=int, default=300)
    ap.add_argument("--max-seq-len", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--home", default=os.environ.get("TINYFW_HOME", "~/.cache/tinyfw"))
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    from augment import Augmenter, random_vectors, split_words

    model, tok = load_mlm(args.mlm, args.home)
    data = texts(args.n, args.words)
    kv = random_vectors({w.lower() for t in data for w in split_words(t)}, dim=50, seed=0)
    res = {}
    for name, window in (("whole texts", None), (f"window {args.max_seq_len}", args.max_seq_len)):
        aug = Augmenter(model, tok, kv, n_aug=20, p_replace=0.4, top_k=15, batch_size=args.batch_size,
                        stopwords=None, alpha_only=False, max_seq_len=window)  # as recorded in BENCHMARKS.md
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        out = aug.augment(data)
        s = time.perf_counter() - t0
        st = aug.stats()
        res[name] = {"seconds": round(s, 2), "mlm_forwards": st["mlm_forwards"], "mlm_masked": st["mlm_masked"],
                     "mlm_tokens": st["mlm_tokens"], "texts_cut": st["texts_cut"],
                     "words_beyond_window": st["words_beyond_window"], "outputs": sum(len(g) for g in out),
                     "loadavg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)]}
        print(f"{name:>14}: {s:8.2f} s  forwards {st['mlm_forwards']:5d}  masked {st['mlm_masked']:6d}  "
              f"tokens {st['mlm_tokens']:9d}  texts cut {st['texts_cut']}  words left {st['words_beyond_window']}")
    a, b = res["whole texts"], res[f"window {args.max_seq_len}"]
    ratio = a["seconds"] / max(b["seconds"], 1e-9)
    print(f"speed-up of the window: {ratio:.1f}x ({args.n} texts of {args.words} words, {args.mlm}, "
          f"torch threads {torch.get_num_threads()})")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "results": res, "speedup": round(ratio, 2)}, indent=1))


if __name__ == "__main__":
    main()
