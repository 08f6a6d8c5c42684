#!/usr/bin/env python3
"""Writes tests/text/fixtures/bos_policy.json: the ids transformers 4 gives for model folders that pair a fixture
tokenizer.json (tests/text/fixtures/KIND.tokenizer.json) with a tokenizer_config.json, for the first 60 corpus lines.
tests/core/text/test_tokenizer.cpp requires Tokenizer::from_model_file to give the same. Run in a venv with
transformers 4.x (not by CI):

    python3 -m venv ~/.venvs/hf4 && ~/.venvs/hf4/bin/pip install "transformers>=4.57,<5"
    ~/.venvs/hf4/bin/python tests/text/make_bos_fixtures.py tests/text/fixtures

transformers 5 is recorded beside (key "transformers5") where its AutoTokenizer loads the folder: it keeps the
file's template for these classes and rebuilds some of their pre-tokenizers (docs/text.md).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import transformers
from transformers import AutoTokenizer

CASES = [
    ("llama2_default", "llama2", {"tokenizer_class": "LlamaTokenizerFast", "bos_token": "<s>", "eos_token": "</s>"}),
    ("llama2_no_bos", "llama2", {"tokenizer_class": "LlamaTokenizerFast", "add_bos_token": False, "bos_token": "<s>",
                                 "eos_token": "</s>"}),
    ("llama2_bos_eos", "llama2", {"tokenizer_class": "LlamaTokenizer", "add_eos_token": True, "bos_token": "<s>",
                                  "eos_token": "</s>"}),
    ("mistral_eos_only", "mistral_metaspace", {"tokenizer_class": "LlamaTokenizerFast", "add_bos_token": False,
                                               "add_eos_token": True, "bos_token": "<s>",
                                               "eos_token": {"__type": "AddedToken", "content": "</s>", "lstrip": False,
                                                             "normalized": False, "rstrip": False,
                                                             "single_word": False, "special": True}}),
    ("neox_bos", "gpt2", {"tokenizer_class": "GPTNeoXTokenizerFast", "add_bos_token": True,
                          "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}),
    ("neox_class_drops_file_bos", "llama3", {"tokenizer_class": "GPTNeoXTokenizerFast",
                                             "bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}),
    ("llama_class_other_bos", "llama3", {"tokenizer_class": "LlamaTokenizerFast", "bos_token": "<|end_of_text|>",
                                         "eos_token": "<|end_of_text|>"}),
    ("generic_class_keeps_file", "llama3", {"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": False,
                                            "add_eos_token": True, "bos_token": "<|begin_of_text|>",
                                            "eos_token": "<|end_of_text|>"}),
    ("qwen2_keeps_file", "qwen2", {"tokenizer_class": "Qwen2TokenizerFast", "add_eos_token": True}),
]


def corpus_lines(fixtures, n):
    out = []
    with open(os.path.join(fixtures, "corpus.txt"), encoding="utf-8") as f:
        for line in f:
            raw, text, i = line.rstrip("\n"), "", 0
            while i < len(raw):  # backslash escapes, as test_tokenizer.cpp's corpus() reads them
                if raw[i] == "\\" and i + 1 < len(raw):
                    i += 1
                    text += {"n": "\n", "r": "\r"}.get(raw[i], raw[i])
                else:
                    text += raw[i]
                i += 1
            out.append(text)
            if len(out) == n:
                break
    return out


def ids_for(fixtures, kind, config, lines):
    d = tempfile.mkdtemp()
    try:
        shutil.copy(os.path.join(fixtures, kind + ".tokenizer.json"), os.path.join(d, "tokenizer.json"))
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump(config, f)
        tok = AutoTokenizer.from_pretrained(d)
        return type(tok).__name__, [tok(line)["input_ids"] for line in lines]
    finally:
        shutil.rmtree(d)


def main():
    fixtures = sys.argv[1]
    lines = corpus_lines(fixtures, 60)
    if len(sys.argv) > 2 and sys.argv[2] == "--one":  # a child run under another transformers version
        print(json.dumps({name: ids_for(fixtures, kind, cfg, lines)[1] for name, kind, cfg in CASES}))
        return
    cases = []
    for name, kind, cfg in CASES:
        cls, ids = ids_for(fixtures, kind, cfg, lines)
        cases.append({"name": name, "tokenizer": kind, "config": cfg, "class": cls, "ids": ids})
    out = {"transformers": transformers.__version__, "lines": 60, "cases": cases}
    v5 = os.path.expanduser("~/.venvs/hf5/bin/python")
    if os.path.exists(v5):
        r = subprocess.run([v5, __file__, fixtures, "--one"], capture_output=True, text=True)
        if r.returncode == 0:
            five = json.loads(r.stdout.strip().splitlines()[-1])
            ver = subprocess.run([v5, "-c", "import transformers; print(transformers.__version__)"],
                                 capture_output=True, text=True).stdout.strip().splitlines()[-1]
            out["transformers5"] = ver
            for c in cases:
                c["same_in_transformers5"] = five[c["name"]] == c["ids"]
    with open(os.path.join(fixtures, "bos_policy.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    for c in cases:
        print(c["name"], c["class"], "first line", c["ids"][0][:4], "...", c["ids"][0][-2:],
              "same in 5:", c.get("same_in_transformers5"))


if __name__ == "__main__":
    main()
