#!/usr/bin/env python3
"""Writes tiny random-weight models with the real `transformers` package, and the logits it computes for them, as
fixtures for the importer (tests/core/io/test_hf_fixtures.cpp). Run it in a venv outside the repository:

    python3 -m venv ~/.venvs/hf5 && ~/.venvs/hf5/bin/pip install "torch>=2.4" "transformers>=5,<6" safetensors
    ~/.venvs/hf5/bin/python tests/import/make_hf_fixtures.py tests/import/fixtures/hf5

Each fixture is a folder as save_pretrained writes it (config.json, model.safetensors) plus expected.json:
{"transformers": version, "tokens": [...], "logits": [[...], ...]} (float32 logits of one sequence), or, for a
config the importer must refuse, {"refused": "<part of the message>"}.
"""
import json
import os
import sys

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, Mamba2Config, Mamba2ForCausalLM

TOKENS = [3, 17, 42, 5, 9, 61, 0, 33, 12, 8, 50, 27]


def save(model, folder, expected):
    model.save_pretrained(folder, safe_serialization=True)
    for extra in ("generation_config.json",):
        path = os.path.join(folder, extra)
        if os.path.exists(path):
            os.remove(path)
    expected["transformers"] = transformers.__version__
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump(expected, f)


def logits_of(model):
    model.eval()
    with torch.no_grad():
        out = model(torch.tensor([TOKENS])).logits[0].float()
    return {"tokens": TOKENS, "logits": out.tolist()}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)

    # Llama 3-style rotary base, saved by transformers 5 inside rope_parameters (a 4.x reader sees no rope_theta).
    torch.manual_seed(1)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, rope_theta=500000.0, max_position_embeddings=64, rms_norm_eps=1e-6)
    m = LlamaForCausalLM(cfg)
    save(m, os.path.join(out, "llama_theta500k"), logits_of(m))

    # Long-context rotary scaling of Llama 3.1 (llama3) and linear interpolation, imported exactly.
    rope_cases = {
        "llama_rope_llama3": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
        "llama_rope_linear": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0},
    }
    for seed, (name, rope) in enumerate(rope_cases.items(), start=2):
        torch.manual_seed(seed)
        cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                          rope_parameters=rope)
        m = LlamaForCausalLM(cfg)
        with torch.no_grad():  # sharper attention, where the angles show
            for layer in m.model.layers:
                layer.self_attn.q_proj.weight.mul_(8.0)
                layer.self_attn.k_proj.weight.mul_(8.0)
        save(m, os.path.join(out, name), logits_of(m))

    # Rope scaling MechScope does not implement: refused by name, never imported with default rotary.
    torch.manual_seed(5)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64,
                      rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0})
    save(LlamaForCausalLM(cfg), os.path.join(out, "llama_rope_dynamic"), {"refused": "dynamic"})

    # Mamba2 with an infinite time-step limit (written as {"__float__": "Infinity"}) and a gated-norm epsilon of 1e-6.
    torch.manual_seed(3)
    cfg = Mamba2Config(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_heads=4, head_dim=16, state_size=8,
                       n_groups=1, chunk_size=8, expand=2, layer_norm_epsilon=1e-6)
    m = Mamba2ForCausalLM(cfg)
    with torch.no_grad():  # small gated-norm inputs, where the epsilon shows
        for layer in m.backbone.layers:
            layer.mixer.out_proj.weight.mul_(4.0)
            layer.mixer.in_proj.weight.mul_(0.05)
    save(m, os.path.join(out, "mamba2_eps1e-6"), logits_of(m))


if __name__ == "__main__":
    main()
