#!/usr/bin/env python3
"""Times training steps of a MechScope attention checkpoint re-implemented in plain PyTorch (eager, same
shapes, same math as SPEC §1: RMSNorm, MHA with rotary, optional GatedMLP, tied head), to compare with
`mechscope-cli bench --train --checkpoint FILE --batch B`. Data generation is not timed.

usage: bench_torch_train.py CHECKPOINT [--batch 64] [--seq 64] [--repeat 5] [--threads 2]
"""
import argparse, json, math, time

import h5py
import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with h5py.File(a.checkpoint, "r") as f:
        cfg = json.loads(f.attrs["model_config"])
        w = {k: torch.nn.Parameter(torch.from_numpy(f["weights"][k][()])) for k in f["weights"].keys()}
    assert len(cfg.get("attn_layer_idx", [])) == cfg["n_layer"], "attention-only checkpoints"
    at = cfg["attn_cfg"]
    H, d = at["num_heads"], cfg["d_model"]
    D = at.get("head_dim") or d // H
    rd = at.get("rotary_emb_dim", 0)
    eps = cfg.get("norm_epsilon", 1e-5)
    V = w["backbone.embedding.weight"].shape[0]

    def rms(x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g

    def rotary(x):
        L = x.shape[1]
        inv = 1.0 / (at.get("rotary_emb_base", 10000.0) ** (torch.arange(0, rd, 2).float() / rd))
        fr = torch.outer(torch.arange(L).float(), inv)
        c, s = fr.cos()[None, :, None], fr.sin()[None, :, None]
        x1, x2, rest = x[..., : rd // 2], x[..., rd // 2 : rd], x[..., rd:]
        return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s, rest], -1)

    def forward(t):
        x = w["backbone.embedding.weight"][t]
        B, L = t.shape
        mask = torch.ones(L, L, dtype=torch.bool).triu(1)
        for i in range(cfg["n_layer"]):
            p = f"backbone.layers.{i}."
            h = rms(x, w[p + "norm.weight"])
            qkv = F.linear(h, w[p + "mixer.in_proj.weight"], w.get(p + "mixer.in_proj.bias"))
            q, k, v = qkv.split(H * D, -1)
            q, k, v = (z.view(B, L, H, D) for z in (q, k, v))
            if rd:
                q, k = rotary(q), rotary(k)
            s = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(D)
            z = torch.einsum("bhqk,bkhd->bqhd", s.masked_fill(mask, float("-inf")).softmax(-1), v)
            x = x + F.linear(z.reshape(B, L, H * D), w[p + "mixer.out_proj.weight"], w.get(p + "mixer.out_proj.bias"))
            if p + "mlp.fc1.weight" in w:
                y = F.linear(rms(x, w[p + "norm2.weight"]), w[p + "mlp.fc1.weight"])
                u, g = y.chunk(2, -1)
                x = x + F.linear(u * F.silu(g), w[p + "mlp.fc2.weight"])
        return rms(x, w["backbone.norm_f.weight"]) @ w["backbone.embedding.weight"].T

    opt = torch.optim.AdamW(list(w.values()), lr=1e-4, weight_decay=0.0)
    t = torch.randint(V, (a.batch, a.seq))
    y = torch.randint(V, (a.batch, a.seq))

    def step():
        opt.zero_grad()
        F.cross_entropy(forward(t).reshape(-1, V), y.reshape(-1)).backward()
        opt.step()

    step()
    times = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    ms = sorted(times)[len(times) // 2] * 1e3
    print(f"{a.checkpoint}: PyTorch {torch.__version__} eager training step (batch {a.batch} x {a.seq}, {a.threads} threads): "
          f"{ms:.2f} ms, {a.batch / ms * 1e3:.0f} examples/s")


if __name__ == "__main__":
    main()
