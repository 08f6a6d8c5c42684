#!/usr/bin/env python3
"""The peer of `mechscope-cli info DIR` for load time and memory (docs/import.md, "Memory and time at load"):
transformers' from_pretrained of the same folder as float32, timed and with the process's peak RSS.

usage (a venv with torch and transformers, e.g. ~/.venvs/hf5; not needed by CI):
  bench_hf_load.py make DIR     write a random 309M-parameter bfloat16 Llama (16 layers, d 1024, vocab 32000) to DIR
  bench_hf_load.py load DIR     from_pretrained(DIR, dtype=float32), then print the load time and peak RSS
Compare with: /usr/bin/time -f "%e s %M KB" mechscope-cli info DIR
"""
import resource
import sys
import time

import torch


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("make", "load"):
        sys.exit(__doc__)
    what, folder = sys.argv[1], sys.argv[2]
    if what == "make":
        from transformers import LlamaConfig, LlamaForCausalLM
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=32000, hidden_size=1024, intermediate_size=4096, num_hidden_layers=16,
                          num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=2048)
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
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
