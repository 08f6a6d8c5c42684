#!/usr/bin/env python3
"""Trains the byte-level BPE tokenizer of the kv-text demos (resources/README.md) with the `tokenizers` package.

usage: ~/.venvs/hf5/bin/python resources/text/make_kv_tokenizer.py resources/text/kv-tokenizer.json

The corpus is P4's key-value retrieval prompts as core/text/kv_retrieval.cpp writes them (its word list is read
from that file), 1-50 pairs each, with values 0-99, so that every key word and every value is one token. No BOS or
post-processor: prompts are the text alone. Deterministic: the same file for the same inputs.
"""
import pathlib
import random
import re
import sys

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

root = pathlib.Path(__file__).resolve().parents[2]
src = (root / "core/text/kv_retrieval.cpp").read_text()
block = src[src.index("kv_retrieval_words()"):]
block = block[block.index("{") + 1:]
words = re.findall(r'"([a-z]+)"', block[:block.index("};")])
assert len(words) == len(set(words)) and len(words) > 200, len(words)

rng = random.Random(1)
corpus = []
for _ in range(20000):
    n = rng.randint(1, 50)
    keys = rng.sample(words, n)
    vals = rng.sample(range(100), n)
    q = rng.randrange(n)
    corpus.append("Memorize the following dictionary:\n" + "".join(f"{k}:{v}\n" for k, v in zip(keys, vals)) +
                  f"The value of the key '{keys[q]}' is{vals[q]}")

tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=int(sys.argv[2]) if len(sys.argv) > 2 else 1280, min_frequency=2,
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
tok.train_from_iterator(corpus, trainer)
out = sys.argv[1]
tok.save(out)
enc = tok.encode(corpus[0])
print(f"{out}: {tok.get_vocab_size()} tokens; first prompt {len(corpus[0])} characters -> {len(enc.ids)} tokens")
multi = [w for w in words if len(tok.encode(w).ids) > 1]
nums = [v for v in range(100) if len(tok.encode(str(v)).ids) > 1]
print(f"key words of several tokens: {len(multi)}; values of several tokens: {len(nums)}")
