#!/usr/bin/env python3
"""Writes the tokenizer fixtures of tests/core/text/test_tokenizer.cpp with the real `tokenizers` package: tokenizers
of the byte-level BPE kinds the imported families use, trained on a small multilingual corpus, saved as
tokenizer.json, and the ids and text the package itself gives for every line of a test corpus (emoji and their ZWJ
sequences, combining marks, CJK, right-to-left scripts, whitespace runs, digits, contractions, special tokens inline),
plus the package's decoding of random id sequences (cut UTF-8 included). Run it in a venv outside the repository:

    python3 -m venv ~/.venvs/hf5 && ~/.venvs/hf5/bin/pip install "tokenizers>=0.20"
    ~/.venvs/hf5/bin/python tests/text/make_tokenizer_fixtures.py tests/text/fixtures

Writes DIR/corpus.txt (the test lines, one per line, backslash escapes for newlines and carriage returns) and for
each kind DIR/KIND.tokenizer.json and DIR/KIND.expected.jsonl: one JSON object per corpus line ({"ids": [...]} and,
only where they differ from what is implied, "plain": the ids with add_special_tokens=False where they are not the
ids after the template's prefix (the ids of an empty text), "decoded": the
decoded ids where not the line itself, "decoded_all": decoded with the special tokens kept) and, after them,
{"decode": [...ids], "text": ...} lines.
"""
import json
import os
import random
import sys
import unicodedata

import tokenizers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import AddedToken, Regex

WORDS = {
    "en": "the quick brown fox jumps over lazy dog don't I'LL we've they're it's you'd she'll model head layer "
          "attention state space retrieval induction copy token".split(),
    "de": "Grüße Straße Mädchen über schön Äpfel Größe Fußgänger".split(),
    "fr": "café naïve élève garçon déjà où Noël cœur".split(),
    "ru": "привет мир модель внимание память слово".split(),
    "el": "γειά σου κόσμε λόγος ἀρχή".split(),
    "zh": "你好 世界 模型 注意力 状态空间 检索 复制".split(),
    "ja": "こんにちは 世界 カタカナ ひらがな 漢字".split(),
    "ko": "안녕하세요 세계 모델 주의".split(),
    "ar": "مرحبا بالعالم نموذج انتباه".split(),
    "hi": "नमस्ते दुनिया मॉडल ध्यान".split(),
    "emoji": ["😀", "👍🏽", "👩‍💻", "🇫🇷", "❤️", "🧠", "1️⃣", "👨‍👩‍👧‍👦", "🤖"],
    "code": ["def f(x):", "return x**2;", "if (a != b) { c++; }", "https://example.com/a?b=1&c=2", "#include <x.h>",
             "snake_case_name", "CamelCaseName", "x_1, y_2"],
    "num": ["0", "7", "42", "1234567", "3.14159", "2026-12-07", "1,000,000", "٣٤٥", "१२३", "½", "Ⅻ", "①②"],
    "compat": ["ﬁle", "Ｆｕｌｌｗｉｄｔｈ", "x²", "㎏", "Å", "ǅ"],
}
SPACES = [" ", " ", " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", " \n ", "\u00a0", "\u3000", "\u2009"]
SPECIALS = ["<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>", "<mask>", "<pad>"]
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
          r"|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)"
         r"|\s+")


def line(rng, specials):
    parts = []
    for _ in range(rng.randint(1, 12)):
        kind = rng.choice(list(WORDS))
        w = rng.choice(WORDS[kind])
        r = rng.random()
        if r < 0.08:
            w = unicodedata.normalize("NFD", w)  # combining marks
        elif r < 0.12:
            w = w.upper()
        elif r < 0.15 and specials:
            w = rng.choice(SPECIALS)
        parts.append(w)
        parts.append(rng.choice(SPACES) if rng.random() < 0.4 else " ")
    s = "".join(parts)
    if rng.random() < 0.2:
        s = rng.choice(SPACES) + s  # leading whitespace
    if rng.random() < 0.3:
        s = s.rstrip(" ")
    return s


def train(tok, corpus, vocab, specials):
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    return tok


def train_sp(tok, corpus, vocab):
    """A SentencePiece-style BPE: <unk>, <s>, </s> first, an alphabet of the 60 commonest characters (the rest fall
    back to bytes)."""
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<unk>", "<s>", "</s>"], limit_alphabet=60,
                                  show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    return tok


def with_bytes(tok):
    """The trained tokenizer with <0x00>..<0xFF> in its vocabulary after the three specials (as Llama 2's has them;
    merges name strings, so the ids may move) and <s> before each sequence."""
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    order = sorted(vocab, key=vocab.get)
    specials, rest = order[:3], [t for t in order[3:]]
    new = {t: i for i, t in enumerate(specials)}
    for b in range(256):
        new[f"<0x{b:02X}>"] = len(new)
    for t in rest:
        if t not in new:
            new[t] = len(new)
    j["model"]["vocab"] = new
    j["post_processor"] = {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [new["<s>"]], "tokens": ["<s>"]}}}
    return Tokenizer.from_str(json.dumps(j))


def kinds(corpus):
    # GPT-2 / GPT-NeoX / Mamba: byte-level with GPT-2's regex, <|endoftext|>, no post-processing of ids.
    gpt2 = Tokenizer(models.BPE())
    gpt2.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    gpt2.decoder = decoders.ByteLevel()
    gpt2.post_processor = processors.ByteLevel(trim_offsets=False)
    train(gpt2, corpus, 700, ["<|endoftext|>"])
    yield "gpt2", gpt2

    # GPT-NeoX/Pythia: NFC first, and a prefix space (the NeoX tokenizer's is off; this exercises the option).
    neox = Tokenizer(models.BPE())
    neox.normalizer = normalizers.NFC()
    neox.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, trim_offsets=True)
    neox.decoder = decoders.ByteLevel()
    train(neox, corpus, 600, ["<|endoftext|>", "<pad>"])
    neox.add_tokens([AddedToken("<mask>", lstrip=True, rstrip=False, normalized=True, special=False)])
    yield "neox_nfc_prefix", neox

    # Llama 3: its split regex, then byte-level without a regex; ignore_merges; <|begin_of_text|> before each
    # sequence.
    llama3 = Tokenizer(models.BPE(ignore_merges=True))
    llama3.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    llama3.decoder = decoders.ByteLevel()
    train(llama3, corpus, 800, ["<|begin_of_text|>", "<|end_of_text|>"])
    bos = llama3.token_to_id("<|begin_of_text|>")
    llama3.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    yield "llama3", llama3

    # Qwen2: NFC, its split regex (digits one by one), byte-level; <|endoftext|>; a token that must stand alone.
    qwen2 = Tokenizer(models.BPE())
    qwen2.normalizer = normalizers.NFC()
    qwen2.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    qwen2.decoder = decoders.ByteLevel()
    train(qwen2, corpus, 600, ["<|endoftext|>"])
    qwen2.add_tokens([AddedToken("copy", single_word=True, normalized=False, special=False)])
    yield "qwen2", qwen2

    # NFKC, then numbers split off (runs of them: Digits without individual_digits), then GPT-2's byte level.
    digits = Tokenizer(models.BPE())
    digits.normalizer = normalizers.Sequence([normalizers.NFKC()])
    digits.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=False),
                                                    pre_tokenizers.ByteLevel(add_prefix_space=False)])
    digits.decoder = decoders.ByteLevel()
    train(digits, corpus, 500, ["<|endoftext|>"])
    yield "nfkc_digits", digits

    # SentencePiece-style BPE (Llama 2, Mistral, Zamba2, Jamba): spaces as U+2581, byte fallback for characters
    # outside a small alphabet, unknowns fused; <s> before each sequence. Llama 2's way: the normalizer prepends and
    # replaces, no pre-tokenizer; its decoder replaces, falls back to bytes, fuses and strips one leading space.
    sp_decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                    decoders.Strip(" ", 1, 0)])
    llama2 = Tokenizer(models.BPE(byte_fallback=True, fuse_unk=True, unk_token="<unk>"))
    llama2.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    llama2.decoder = sp_decoder
    yield "llama2", with_bytes(train_sp(llama2, corpus, 900))

    # The newer way (Mistral's files): a Metaspace pre-tokenizer prepending on the first piece only; here with split
    # on (a piece per word) and Metaspace's own decoder.
    mistral = Tokenizer(models.BPE(byte_fallback=True, fuse_unk=True, unk_token="<unk>"))
    mistral.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    mistral.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="\u2581",
                                                                                     prepend_scheme="first")])
    yield "mistral_metaspace", with_bytes(train_sp(mistral, corpus, 700))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = random.Random(20261207)
    train_corpus = [line(rng, False) for _ in range(3000)]
    test_corpus = [line(rng, True) for _ in range(1200)] + ["", " ", "\n", "a", "<|endoftext|>", "  <mask>  x",
                                                          "copy copying recopy copy", "🇫🇷🇫🇷", "e\u0301", "\u00e9"]
    with open(os.path.join(out, "corpus.txt"), "w", encoding="utf-8") as f:
        for s in test_corpus:
            f.write(s.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r") + "\n")
    for name, tok in kinds(train_corpus):
        tok.save(os.path.join(out, name + ".tokenizer.json"))
        tok = Tokenizer.from_file(os.path.join(out, name + ".tokenizer.json"))  # what the file says, not memory
        with open(os.path.join(out, name + ".expected.jsonl"), "w", encoding="utf-8") as f:
            prefix = len(tok.encode("").ids)  # what the template puts before a sequence (an empty one: all of it)
            for s in test_corpus:
                ids = tok.encode(s).ids
                e = {"ids": ids}
                plain = tok.encode(s, add_special_tokens=False).ids
                decoded, decoded_all = tok.decode(ids), tok.decode(ids, skip_special_tokens=False)
                if plain != ids[prefix:]:
                    e["plain"] = plain
                if decoded != s:
                    e["decoded"] = decoded
                if decoded_all != decoded:
                    e["decoded_all"] = decoded_all
                f.write(json.dumps(e, ensure_ascii=False, separators=(",", ":")) + "\n")
            n = tok.get_vocab_size()
            for _ in range(200):
                ids = [rng.randrange(n) for _ in range(rng.randint(1, 8))]
                f.write(json.dumps({"decode": ids, "text": tok.decode(ids, skip_special_tokens=False)},
                                   ensure_ascii=False, separators=(",", ":")) + "\n")
        print(name, tok.get_vocab_size(), "tokens; tokenizers", tokenizers.__version__)


if __name__ == "__main__":
    main()
