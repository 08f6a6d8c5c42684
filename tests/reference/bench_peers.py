#!/usr/bin/env python3
"""MechScope's sweeps beside the tools researchers use today, on the same random-weight model, the same prompts and
the same thread count: plain PyTorch hooks on the transformers model, TransformerLens 4 (TransformerBridge) and
nnsight. Prints one table (docs/benchmarks.md, "Against the peers"). Needs a venv with torch, transformers,
transformer-lens and nnsight (e.g. ~/.venvs/torch); CI does not run it.

usage:
  bench_peers.py make DIR KIND        a random float32 model and a word-level tokenizer (t0 .. tN) in DIR; KIND is
                                      llama-52m (6 layers x 8 heads, d 512, vocab 32000), llama-135m (SmolLM-135M's
                                      shape: 30 x 9 heads, 3 kv heads, d 576, vocab 49152), mamba2-130m or mamba-130m
  bench_peers.py dataset DIR FILE [N [LEN]]
                                      N prompts (default 16) of LEN random token ids (default 32) as a MechScope
                                      dataset: the corrupted prompt differs in one token, the answer a random id
  bench_peers.py forward DIR [--threads T] [--batch B] [--seq L] [--cli PATH] [--repeat R]
                                      the plain forward of B x L random tokens: transformers' eager path (and sdpa for
                                      attention; for Mamba1 its sequential scan and a vectorised twin of it (a
                                      parallel scan in PyTorch), checked against it), beside `mechscope-cli bench -c DIR` (plain and full cache)
  bench_peers.py train DIR FILE [--threads T] [--cli PATH] [--repeat R]
                                      a training step (forward, backward, AdamW) on the dataset's prompts: transformers'
                                      model in eager PyTorch against `mechscope-cli bench --train -c DIR --dataset FILE`
  bench_peers.py run DIR FILE [--threads T] [--cli PATH] [--tools hf,tl,nnsight,mechscope] [--repeat R]
                                      the forward, every head zero-ablated (one run per head), residual patching of
                                      every layer x position (one run per cell) and attribution patching, each timed
                                      by each tool; MechScope through `mechscope-cli bench -c DIR --dataset FILE`

Each tool does what its users write: the forward computes the logits of every position (MechScope's sweeps compute
only what their readout needs; that is part of what is measured). The metric read is the answer's logit at the
prompt's last token. Every tool's sweep results are compared with the plain hooks' (max abs difference printed),
so a table never times a tool that computed something else.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

import torch

DEFAULT_CLI = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../build/bin/mechscope-cli")


def make(folder, kind):
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers
    torch.manual_seed(0)
    if kind == "llama-52m":
        cfg = transformers.LlamaConfig(vocab_size=32000, hidden_size=512, intermediate_size=1408, num_hidden_layers=6,
                                       num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=2048)
        model = transformers.LlamaForCausalLM(cfg)
    elif kind == "llama-135m":
        cfg = transformers.LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                       num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                                       tie_word_embeddings=True)
        model = transformers.LlamaForCausalLM(cfg)
    elif kind == "mamba2-130m":
        cfg = transformers.Mamba2Config(vocab_size=50288, hidden_size=768, num_hidden_layers=24, state_size=128,
                                        expand=2, head_dim=64, num_heads=24, n_groups=1, tie_word_embeddings=True)
        model = transformers.Mamba2ForCausalLM(cfg)
    elif kind == "mamba-130m":
        cfg = transformers.MambaConfig(vocab_size=50280, hidden_size=768, num_hidden_layers=24, state_size=16,
                                       expand=2, conv_kernel=4, tie_word_embeddings=True)
        model = transformers.MambaForCausalLM(cfg)
    else:
        sys.exit(f"unknown model {kind}: llama-52m, llama-135m, mamba2-130m or mamba-130m")
    model.save_pretrained(folder, safe_serialization=True)
    vocab = {f"t{i}": i for i in range(cfg.vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # Beside the model, not in it: the peers need a tokenizer object to start; MechScope reads token ids
    tok_dir = os.path.join(folder, "peers-tokenizer")
    os.makedirs(tok_dir, exist_ok=True)
    tok.save(os.path.join(tok_dir, "tokenizer.json"))
    with open(os.path.join(tok_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "t0", "model_max_length": 2048}, f)
    print(f"{sum(p.numel() for p in model.parameters())} parameters written to {folder}")


def dataset(folder, path, n, length):
    with open(os.path.join(folder, "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
    g = torch.Generator().manual_seed(1)
    with open(path, "w") as f:
        for _ in range(n):
            clean = torch.randint(10, vocab, (length,), generator=g).tolist()
            corrupted = list(clean)
            corrupted[length // 2] = (clean[length // 2] + 1 + int(torch.randint(vocab - 11, (1,), generator=g))) % vocab
            answer = int(torch.randint(10, vocab, (1,), generator=g))
            f.write(json.dumps({"clean": clean, "corrupted": corrupted, "answer": [answer]}) + "\n")
    print(f"{n} prompts of {length} tokens written to {path}")


def read_dataset(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    clean = torch.tensor([r["clean"] for r in rows])
    corrupted = torch.tensor([r["corrupted"] for r in rows])
    answer = torch.tensor([r["answer"][0] for r in rows])
    return clean, corrupted, answer


def timed(fn, repeat, warm=True):
    if warm:
        fn()
    times = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def metric(logits, answer):
    """The answer's logit at the last position, one per example."""
    return logits[:, -1].gather(1, answer[:, None])[:, 0]


# ------------------------------------------------------------------ plain PyTorch hooks on transformers' model

class Hooks:
    name = "PyTorch hooks"

    def __init__(self, folder, attn="eager"):
        from transformers import AutoModelForCausalLM
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation=attn).eval()
        self.cfg = self.model.config
        base = getattr(self.model, "model", None) or self.model.backbone  # Llama's model, Mamba's backbone
        self.layers = base.layers
        self.is_attn = hasattr(self.layers[0], "self_attn")

    def logits(self, tokens):
        return self.model(tokens).logits

    def ablate(self, tokens, answer):
        """Attention heads only (run() skips this for an SSM: its heads are no module a hook can reach)."""
        dh = self.cfg.hidden_size // self.cfg.num_attention_heads
        out = []
        for l in range(self.cfg.num_hidden_layers):
            for h in range(self.cfg.num_attention_heads):
                def zero(module, args, h=h):
                    x = args[0].clone()
                    x[..., h * dh:(h + 1) * dh] = 0
                    return (x,) + tuple(args[1:])
                handle = self.layers[l].self_attn.o_proj.register_forward_pre_hook(zero)
                try:
                    out.append(metric(self.logits(tokens), answer))
                finally:
                    handle.remove()
        return torch.stack(out)

    def resid_pre(self, tokens):
        cache = []
        handles = [layer.register_forward_pre_hook(lambda m, a, k: cache.append(_hidden(a, k).detach()), with_kwargs=True)
                   for layer in self.layers]
        try:
            self.logits(tokens)
        finally:
            for h in handles:
                h.remove()
        return cache

    def patch(self, clean, corrupted, answer):
        cache = self.resid_pre(clean)
        L = clean.shape[1]
        out = torch.zeros(len(self.layers), L, clean.shape[0])
        for l, layer in enumerate(self.layers):
            for p in range(L):
                def put(module, args, kwargs, p=p, l=l):
                    x = _hidden(args, kwargs).clone()
                    x[:, p] = cache[l][:, p]
                    return _with_hidden(args, kwargs, x)
                handle = layer.register_forward_pre_hook(put, with_kwargs=True)
                try:
                    out[l, p] = metric(self.logits(corrupted), answer)
                finally:
                    handle.remove()
        return out

    def attribution(self, clean, corrupted, answer):
        cache = self.resid_pre(clean)
        acts = []

        def keep(module, args, kwargs):
            x = _hidden(args, kwargs)
            x.retain_grad()
            acts.append(x)
        handles = [layer.register_forward_pre_hook(keep, with_kwargs=True) for layer in self.layers]
        try:
            with torch.enable_grad():
                metric(self.logits(corrupted), answer).sum().backward()
        finally:
            for h in handles:
                h.remove()
        return torch.stack([((c - a) * a.grad).sum(-1) for c, a in zip(cache, acts)])


def peers_tokenizer(folder):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(os.path.join(folder, "peers-tokenizer"))


def _hidden(args, kwargs):
    return args[0] if args else kwargs["hidden_states"]


def _with_hidden(args, kwargs, x):
    if args:
        return (x,) + tuple(args[1:]), kwargs
    kwargs = dict(kwargs)
    kwargs["hidden_states"] = x
    return args, kwargs


# ------------------------------------------------------------------ TransformerLens 4: TransformerBridge

class Lens:
    name = "TransformerLens 4"

    def __init__(self, folder):
        from transformer_lens.model_bridge import TransformerBridge
        self.bridge = TransformerBridge.boot_transformers(folder, device="cpu", tokenizer=peers_tokenizer(folder))
        self.cfg = self.bridge.cfg
        self.n_layers = self.cfg.n_layers

    def logits(self, tokens):
        return self.bridge(tokens, return_type="logits")

    def ablate(self, tokens, answer):
        out = []
        for l in range(self.n_layers):
            for h in range(self.cfg.n_heads):
                def zero(z, hook, h=h):
                    z[:, :, h] = 0
                    return z
                logits = self.bridge.run_with_hooks(tokens, return_type="logits",
                                                    fwd_hooks=[(f"blocks.{l}.attn.hook_z", zero)])
                out.append(metric(logits, answer))
        return torch.stack(out)

    def patch(self, clean, corrupted, answer):
        names = [f"blocks.{l}.hook_resid_pre" for l in range(self.n_layers)]
        _, cache = self.bridge.run_with_cache(clean, names_filter=lambda n: n in names)
        L = clean.shape[1]
        out = torch.zeros(self.n_layers, L, clean.shape[0])
        for l in range(self.n_layers):
            for p in range(L):
                def put(x, hook, p=p, l=l):
                    x[:, p] = cache[names[l]][:, p]
                    return x
                logits = self.bridge.run_with_hooks(corrupted, return_type="logits", fwd_hooks=[(names[l], put)])
                out[l, p] = metric(logits, answer)
        return out

    def attribution(self, clean, corrupted, answer):
        names = [f"blocks.{l}.hook_resid_pre" for l in range(self.n_layers)]
        _, cache = self.bridge.run_with_cache(clean, names_filter=lambda n: n in names)
        acts, grads = {}, {}
        fwd = [(n, lambda x, hook, n=n: acts.__setitem__(n, x.detach())) for n in names]
        bwd = [(n, lambda g, hook, n=n: grads.__setitem__(n, g.detach())) for n in names]
        with torch.enable_grad(), self.bridge.hooks(fwd_hooks=fwd, bwd_hooks=bwd):
            metric(self.logits(corrupted), answer).sum().backward()
        return torch.stack([((cache[n] - acts[n]) * grads[n]).sum(-1) for n in names])


# ------------------------------------------------------------------ nnsight

class Sight:
    name = "nnsight"

    def __init__(self, folder):
        from nnsight import LanguageModel
        self.lm = LanguageModel(folder, tokenizer=peers_tokenizer(folder), device_map="cpu", dispatch=True,
                                dtype=torch.float32, attn_implementation="eager")
        self.cfg = self.lm.config
        self.layers = self.lm.model.layers

    def logits(self, tokens):
        with self.lm.trace(tokens):
            out = self.lm.lm_head.output.save()
        return out

    def ablate(self, tokens, answer):
        dh = self.cfg.hidden_size // self.cfg.num_attention_heads
        out = []
        for l in range(self.cfg.num_hidden_layers):
            for h in range(self.cfg.num_attention_heads):
                with self.lm.trace(tokens):
                    self.layers[l].self_attn.o_proj.input[..., h * dh:(h + 1) * dh] = 0
                    m = self.lm.lm_head.output[:, -1].gather(1, answer[:, None])[:, 0].save()
                out.append(m)
        return torch.stack(out)

    def resid_pre(self, tokens):
        saved = {}  # nnsight runs the block's body elsewhere: what it fills must live outside it
        with self.lm.trace(tokens):
            for i, layer in enumerate(self.layers):
                saved[i] = layer.input.save()
        return [saved[i] for i in range(len(self.layers))]

    def patch(self, clean, corrupted, answer):
        cache = self.resid_pre(clean)
        L = clean.shape[1]
        out = torch.zeros(len(self.layers), L, clean.shape[0])
        for l in range(len(self.layers)):
            for p in range(L):
                with self.lm.trace(corrupted):
                    self.layers[l].input[:, p] = cache[l][:, p]
                    m = self.lm.lm_head.output[:, -1].gather(1, answer[:, None])[:, 0].save()
                out[l, p] = m
        return out

    def attribution(self, clean, corrupted, answer):
        cache = self.resid_pre(clean)
        acts, grads = {}, {}
        n = len(self.layers)
        with self.lm.trace(corrupted):
            for i in range(n):
                acts[i] = self.layers[i].input.save()
            m = self.lm.lm_head.output[:, -1].gather(1, answer[:, None])[:, 0].sum()
            with m.backward():
                for i in reversed(range(n)):  # gradients arrive from the last layer back
                    grads[i] = acts[i].grad.save()
        return torch.stack([((cache[i] - acts[i]) * grads[i]).sum(-1) for i in range(n)])


# ------------------------------------------------------------------ MechScope

def mechscope(cli, folder, path, n, length, threads, repeat):
    env = dict(os.environ, MECHSCOPE_NUM_THREADS=str(threads))
    out = subprocess.run([cli, "bench", "-c", folder, "--dataset", path, "--batch", str(n), "--seq", str(length),
                          "--repeat", str(repeat)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"mechscope-cli bench failed:\n{out.stderr}")
    text = out.stdout

    def seconds(pattern):
        m = re.search(pattern, text)
        if not m:
            return None
        return float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
    return text, {
        "forward": seconds(r"plain forward:\s+([\d.]+) (ms)"),
        "ablation": seconds(r"head-ablation sweep .*batched ([\d.]+) (ms|s)"),
        "ablation (naive)": seconds(r"head-ablation sweep .*naive ([\d.]+) (ms|s)"),
        "patching": seconds(r"residual patching sweep .*batched ([\d.]+) (ms|s)"),
        "patching (naive)": seconds(r"residual patching sweep .*naive ([\d.]+) (ms|s)"),
        "attribution": seconds(r"attribution patching .*: ([\d.]+) (ms|s),"),
    }


def run(a):
    torch.set_num_threads(a.threads)
    clean, corrupted, answer = read_dataset(a.file)
    n, length = clean.shape
    tools = a.tools.split(",")
    table = {}
    reference = {}
    for name in tools:
        if name == "mechscope":
            text, times = mechscope(a.cli, a.folder, a.file, n, length, a.threads, a.repeat)
            print(text, end="", flush=True)
            table["MechScope"] = times
            continue
        t0 = time.perf_counter()
        tool = {"hf": Hooks, "hf-sdpa": lambda f: Hooks(f, "sdpa"), "tl": Lens, "nnsight": Sight}[name](a.folder)
        label = {"hf": "PyTorch hooks (eager)", "hf-sdpa": "PyTorch hooks (sdpa)", "tl": "TransformerLens 4",
                 "nnsight": "nnsight"}[name]
        print(f"{label}: loaded in {time.perf_counter() - t0:.1f} s", flush=True)
        row = {}
        with torch.no_grad():
            row["forward"], _ = timed(lambda: tool.logits(clean), a.repeat)
            if getattr(tool, "is_attn", True):  # an SSM's heads are not modules a hook can reach
                row["ablation"], abl = timed(lambda: tool.ablate(clean, answer), 1, warm=False)
                check(reference, "ablation", abl, label)
            row["patching"], pat = timed(lambda: tool.patch(clean, corrupted, answer), 1, warm=False)
            check(reference, "patching", pat, label)
        row["attribution"], att = timed(lambda: tool.attribution(clean, corrupted, answer), a.repeat)
        check(reference, "attribution", att, label)
        print("  " + ", ".join(f"{k} {fmt(v)}" for k, v in row.items()), flush=True)
        table[label] = row
    print(f"\n{a.folder}: {n} prompts x {length} tokens, {a.threads} thread(s), {cpu_name()}, torch {torch.__version__}")
    cols = ["forward", "ablation", "patching", "attribution"]
    print("| tool | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    ours = table.get("MechScope", {})
    for label, row in table.items():
        cells = []
        for c in cols:
            v = row.get(c)
            cell = fmt(v)
            if label != "MechScope" and v and ours.get(c):
                cell += f" ({v / ours[c]:.1f}x ours)"
            cells.append(cell)
        print(f"| {label} | " + " | ".join(cells) + " |")


def scanned_selective_scan(hidden_states, dt, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                           return_last_state=False, **unused):
    """transformers' mamba_selective_scan (x, dt, z [b, d, l], A [d, n], B, C [b, n, l]) vectorised over the
    sequence: h_t = a_t h_t-1 + dt_t B_t x_t as a Hillis-Steele scan, log2(l) steps over the whole [b, d, l, n]
    (products of decays only, each at most 1: no overflow), instead of l steps."""
    if delta_bias is not None:
        dt = dt + delta_bias.to(dt.dtype)[..., None]
    if delta_softplus:
        dt = torch.nn.functional.softplus(dt)
    x = hidden_states.float()
    length = x.shape[2]
    a = torch.exp(A[None, :, None, :] * dt[..., None])                     # [b, d, l, n]
    h = dt[..., None] * B.transpose(1, 2)[:, None].float() * x[..., None]  # [b, d, l, n]
    k = 1
    while k < length:
        h = torch.cat([h[:, :, :k], h[:, :, k:] + a[:, :, k:] * h[:, :, :-k]], 2)
        a = torch.cat([a[:, :, :k], a[:, :, k:] * a[:, :, :-k]], 2)
        k *= 2
    y = torch.einsum("bdln,bnl->bdl", h, C.float())
    if D is not None:
        y = y + x * D[None, :, None]
    if z is not None:
        y = y * torch.nn.functional.silu(z)
    y = y.to(hidden_states.dtype)
    return (y, h[:, :, -1]) if return_last_state else y


def forward(a):
    torch.set_num_threads(a.threads)
    from transformers import AutoConfig, AutoModelForCausalLM
    kind = AutoConfig.from_pretrained(a.folder).model_type
    tokens = torch.randint(0, AutoConfig.from_pretrained(a.folder).vocab_size, (a.batch, a.seq),
                           generator=torch.Generator().manual_seed(0))
    rows = []
    paths = ["eager", "sdpa"] if kind not in ("mamba", "mamba2") else ["eager"]
    for attn in paths:
        model = AutoModelForCausalLM.from_pretrained(a.folder, dtype=torch.float32, attn_implementation=attn).eval()
        with torch.no_grad():
            label = {"mamba": "transformers, sequential scan", "mamba2": "transformers, torch path (chunked SSD)"}.get(
                kind, f"transformers, {attn} attention")
            ms, ref = timed(lambda: model(tokens).logits, a.repeat)
            rows.append((label, ms))
            if kind == "mamba":
                from transformers.models.mamba import modeling_mamba
                original = modeling_mamba.mamba_selective_scan
                modeling_mamba.mamba_selective_scan = scanned_selective_scan
                try:
                    ms, twin = timed(lambda: model(tokens).logits, a.repeat)
                finally:
                    modeling_mamba.mamba_selective_scan = original
                diff = (twin - ref).abs().max().item()
                print(f"vectorised twin against the sequential scan: max logit difference {diff:.2e}")
                if not diff <= 1e-3 * (ref.abs().max().item() + 1):  # NaN fails too
                    sys.exit("the vectorised twin computes something else")
                rows.append(("transformers, its scan vectorised (a parallel scan in PyTorch)", ms))
    env = dict(os.environ, MECHSCOPE_NUM_THREADS=str(a.threads))
    out = subprocess.run([a.cli, "bench", "-c", a.folder, "--batch", str(a.batch), "--seq", str(a.seq),
                          "--repeat", str(max(a.repeat, 5))], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"mechscope-cli bench failed:\n{out.stderr}")
    print(out.stdout, end="")
    plain = float(re.search(r"plain forward:\s+([\d.]+) ms", out.stdout).group(1)) / 1000
    cached = float(re.search(r"full cache:\s+([\d.]+) ms", out.stdout).group(1)) / 1000
    print(f"\n{a.folder} ({kind}): forward of {a.batch} x {a.seq} tokens, {a.threads} thread(s), {cpu_name()}, "
          f"torch {torch.__version__}")
    print("| path | forward | MechScope's time / this |")
    print("|---|---|---|")
    for label, ms in rows:
        print(f"| {label} | {fmt(ms)} | {plain / ms:.2f}x |")
    print(f"| MechScope plain | {fmt(plain)} | |")
    print(f"| MechScope, every hook cached | {fmt(cached)} | {cached / plain:.2f}x plain |")


def train(a):
    torch.set_num_threads(a.threads)
    clean, _, answer = read_dataset(a.file)
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(a.folder, dtype=torch.float32, attn_implementation="eager").train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    tokens = torch.cat([clean, answer[:, None]], 1)
    inputs, labels = tokens[:, :-1], tokens[:, 1:]

    def step():
        opt.zero_grad()
        logits = model(inputs).logits
        torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)).backward()
        opt.step()
    ms, _ = timed(step, a.repeat)
    env = dict(os.environ, MECHSCOPE_NUM_THREADS=str(a.threads))
    out = subprocess.run([a.cli, "bench", "--train", "-c", a.folder, "--dataset", a.file, "--batch", str(len(clean)),
                          "--repeat", str(a.repeat)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"mechscope-cli bench --train failed:\n{out.stderr}")
    print(out.stdout, end="")
    ours = float(re.search(r"\): ([\d.]+) ms", out.stdout).group(1)) / 1000
    print(f"PyTorch {torch.__version__} eager (transformers): {fmt(ms)} a step; MechScope {fmt(ours)}: "
          f"{ms / ours:.2f}x PyTorch's speed ({len(clean)} x {inputs.shape[1]} tokens, {a.threads} thread(s), {cpu_name()})")


def cpu_name():
    import platform
    return next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                platform.processor())


def check(reference, what, value, label):
    """Every tool's result beside the first tool's: the same sweep, or the table would compare unlike work."""
    value = value.detach().reshape(-1).float()
    if what not in reference:
        reference[what] = value
        return
    ref = reference[what]
    diff = (value - ref).abs().max().item() if value.numel() == ref.numel() else float("inf")
    scale = ref.abs().max().item() + 1e-6
    print(f"  {what}: max difference to the first tool {diff:.2e} (values up to {scale:.2e})", flush=True)
    if not diff <= 1e-3 * scale + 1e-4:  # NaN fails too
        sys.exit(f"{label}'s {what} differs from the first tool's: not the same computation")


def fmt(v):
    if v is None:
        return "-"
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("make", "dataset", "run", "train", "forward"):
        sys.exit(__doc__)
    if sys.argv[1] == "make":
        if len(sys.argv) != 4:
            sys.exit(__doc__)
        make(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "dataset":
        if len(sys.argv) < 4:
            sys.exit(__doc__)
        dataset(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 16,
                int(sys.argv[5]) if len(sys.argv) > 5 else 32)
    elif sys.argv[1] == "forward":
        ap = argparse.ArgumentParser()
        ap.add_argument("cmd")
        ap.add_argument("folder")
        ap.add_argument("--threads", type=int, default=2)
        ap.add_argument("--batch", type=int, default=4)
        ap.add_argument("--seq", type=int, default=128)
        ap.add_argument("--repeat", type=int, default=5)
        ap.add_argument("--cli", default=DEFAULT_CLI)
        forward(ap.parse_args())
    else:
        ap = argparse.ArgumentParser()
        ap.add_argument("cmd")
        ap.add_argument("folder")
        ap.add_argument("file")
        ap.add_argument("--threads", type=int, default=2)
        ap.add_argument("--cli", default=DEFAULT_CLI)
        ap.add_argument("--tools", default="hf,tl,nnsight,mechscope")
        ap.add_argument("--repeat", type=int, default=3)
        a = ap.parse_args()
        train(a) if a.cmd == "train" else run(a)


if __name__ == "__main__":
    main()
