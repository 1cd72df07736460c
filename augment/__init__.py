"""Word-replacement data augmentation (TinyBERT, Algorithm 1), usable without tinyfw.

>>> from augment import Augmenter, load_masked_lm, load_vectors
>>> model, tok = load_masked_lm("bert-base-uncased")
>>> aug = Augmenter(model, tok, load_vectors("glove.6B.300d.txt"), n_aug=20, p_replace=0.4, top_k=15)
>>> aug.augment(["the movie was great and i loved it ."])[0][:3]
>>> aug.augment_words([["EU", "rejects", "German", "call"]])[0][:3]   # token tasks: words one for one
>>> Augmenter(model, tok, load_vectors("glove.6B.300d.txt"), max_seq_len=64)  # augment only the words a 64-piece student reads
"""

from augment.augmenter import Analysis, Augmenter
from augment.window import Window
from augment.io import load_masked_lm, load_vectors, random_vectors
from augment.words import STOPWORDS, TARGET_RULES, split_words

__all__ = ["Analysis", "Augmenter", "Window", "load_masked_lm", "load_vectors", "random_vectors", "STOPWORDS", "TARGET_RULES", "split_words"]
