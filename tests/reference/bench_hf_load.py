#!/usr/bin/env python3
"""The peer of `mechscope-cli info DIR` for load time and memory (docs/import.md, "Memory and time at load"):
transformers' from_pretrained of the same folder as float32, timed and with the process's peak RSS.

usage (a venv with torch and transformers, e.g. ~/.venvs/hf5; not needed by CI):
  bench_hf_load.py make DIR [MODEL]   write a random bfloat16 model to DIR; MODEL is llama-309m (the default: 16 layers,
                                      d 1024, vocab 32000), llama-1b (TinyLlama's shape: 22 layers, d 2048, 1.1B) or
                                      mamba2-130m (mamba2-130m's shape: 24 layers, d 768, state 128, vocab 50288),
                                      mamba2-1.3b (mamba2-1.3b's shape: 48 layers, d 2048, state 128, vocab 50288)
                                      or mixtral-210m (8 layers, d 768, 8 experts of 1024, top 2, vocab 32000)
  bench_hf_load.py load DIR [DTYPE]   from_pretrained(DIR, dtype=DTYPE: float32, the default, or bfloat16), then print
                                      the load time and peak RSS
  bench_hf_load.py forward DIR [THREADS [BATCH SEQ]]
                                      the median of 5 eager forwards of random tokens [BATCH, SEQ] (default 4 x 128)
                                      at THREADS (default 1) threads
Compare with: /usr/bin/time -f "%e s %M KB" mechscope-cli info DIR [--dtype stored], and
MECHSCOPE_NUM_THREADS=1 mechscope-cli bench -c DIR --batch 4 --seq 128 --repeat 5
"""
import resource
import sys
import time

import torch


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("make", "load", "forward"):
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
        elif kind == "mamba2-1.3b":
            model = transformers.Mamba2ForCausalLM(transformers.Mamba2Config(
                vocab_size=50288, hidden_size=2048, num_hidden_layers=48, state_size=128, expand=2, head_dim=64,
                num_heads=64, n_groups=1, tie_word_embeddings=True))
        elif kind == "mixtral-210m":
            model = transformers.MixtralForCausalLM(transformers.MixtralConfig(
                vocab_size=32000, hidden_size=768, intermediate_size=1024, num_hidden_layers=8,
                num_attention_heads=12, num_key_value_heads=4, num_local_experts=8, num_experts_per_tok=2,
                max_position_embeddings=2048))
        else:
            sys.exit(f"unknown model {kind}; llama-309m, llama-1b, mamba2-130m, mamba2-1.3b or mixtral-210m")
        model = model.to(torch.bfloat16)
        model.save_pretrained(folder, safe_serialization=True)
        print(f"{sum(p.numel() for p in model.parameters())} parameters written to {folder}")
        return
    if what == "forward":
        threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
        batch, seq = (int(sys.argv[4]), int(sys.argv[5])) if len(sys.argv) > 5 else (4, 128)
        torch.set_num_threads(threads)
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
        tokens = torch.randint(0, model.config.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(0))
        times = []
        with torch.no_grad():
            model(tokens)  # warm-up
            for _ in range(5):
                t0 = time.perf_counter()
                model(tokens)
                times.append(time.perf_counter() - t0)
        times.sort()
        print(f"eager forward [{batch}, {seq}] at {threads} thread(s): median {1000 * times[2]:.0f} ms "
              f"(torch {torch.__version__})")
        return
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[sys.argv[3] if len(sys.argv) > 3 else "float32"]
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM
    t0 = time.time()
    AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="eager")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"from_pretrained: {time.time() - t0:.2f} s, peak RSS {peak:.0f} MB (the import of torch and transformers included)")


if __name__ == "__main__":
    main()
