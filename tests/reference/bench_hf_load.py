#!/usr/bin/env python3
"""The peer of `mechscope-cli info DIR` for load time and memory (docs/import.md, "Memory and time at load"):
transformers' from_pretrained of the same folder as float32, timed and with the process's peak RSS.

usage (a venv with torch and transformers, e.g. ~/.venvs/hf5; not needed by CI):
  bench_hf_load.py make DIR [MODEL]   write a random bfloat16 model to DIR; MODEL is llama-309m (the default: 16 layers,
                                      d 1024, vocab 32000), llama-1b (TinyLlama's shape: 22 layers, d 2048, 1.1B) or
                                      mamba2-130m (mamba2-130m's shape: 24 layers, d 768, state 128, vocab 50288)
  bench_hf_load.py load DIR           from_pretrained(DIR, dtype=float32), then print the load time and peak RSS
Compare with: /usr/bin/time -f "%e s %M KB" mechscope-cli info DIR
"""
import resource
import sys
import time

import torch


def main():
    if len(sys.argv) not in (3, 4) or sys.argv[1] not in ("make", "load"):
        sys.exit(__doc__)
    what, folder = sys.argv[1], sys.argv[2]
    if what == "make":
        import transformers
        kind = sys.argv[3] if len(sys.argv) == 4 else "llama-309m"
        torch.manual_seed(0)
        if kind == "llama-309m":
            model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
                vocab_size=32000, hidden_size=1024, intermediate_size=4096, num_hidden_layers=16,
                num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=2048))
        elif kind == "llama-1b":
            model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
                vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048))
        elif kind == "mamba2-130m":
            model = transformers.Mamba2ForCausalLM(transformers.Mamba2Config(
                vocab_size=50288, hidden_size=768, num_hidden_layers=24, state_size=128, expand=2, head_dim=64,
                num_heads=24, n_groups=1, tie_word_embeddings=True))
        else:
            sys.exit(f"unknown model {kind}; llama-309m, llama-1b or mamba2-130m")
        model = model.to(torch.bfloat16)
        model.save_pretrained(folder, safe_serialization=True)
        print(f"{sum(p.numel() for p in model.parameters())} parameters written to {folder}")
        return
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM
    t0 = time.time()
    AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"from_pretrained: {time.time() - t0:.2f} s, peak RSS {peak:.0f} MB (the import of torch and transformers included)")


if __name__ == "__main__":
    main()
