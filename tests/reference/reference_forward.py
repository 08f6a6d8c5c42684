#!/usr/bin/env python3
"""Independent reference of spec §1's math, for cross-checking the C++ engine.

Reads a MechScope checkpoint with h5py alone, re-implements mamba_ssm's MixerModel forward with plain
torch ops (literal step-by-step scans, no chunking, no shared code with the engine), and compares its
logits with a `mechscope-cli forward` results file. Exit 0 when the max |difference| <= tolerance.

usage: reference_forward.py CHECKPOINT RESULTS [--tol 1e-4]
       reference_forward.py --perturb SRC DST [--seed 0]
The second form copies a checkpoint with every parameter perturbed (norm weights away from 1, beta away
from 0, biases non-zero), so that no branch of the model hides behind its initial values.
"""
import argparse
import json
import math
import sys

import h5py
import torch
import torch.nn.functional as F


def load(path):
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "mechscope-checkpoint", f.attrs["format"]
        assert int(f.attrs["format_version"]) == 1
        cfg = json.loads(f.attrs["model_config"])
        w = {k: torch.from_numpy(f["weights"][k][()]).float() for k in f["weights"].keys()}
    return cfg, w


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def norm(cfg, w, prefix, x):
    eps = cfg.get("norm_epsilon", 1e-5)
    if cfg.get("rms_norm", True):
        return rms_norm(x, w[prefix + ".weight"], eps)
    return F.layer_norm(x, (x.shape[-1],), w[prefix + ".weight"], w[prefix + ".bias"], eps)


def linear(w, prefix, x):
    b = w.get(prefix + ".bias")
    return F.linear(x, w[prefix + ".weight"], b)


def causal_conv(w, prefix, x):  # x [L, C]
    weight = w[prefix + ".weight"]  # [C, 1, K]
    C, _, K = weight.shape
    L = x.shape[0]
    xp = torch.cat([torch.zeros(K - 1, C), x], 0)
    out = torch.zeros(L, C)
    for t in range(L):
        out[t] = (xp[t:t + K].T * weight[:, 0, :]).sum(-1)
    if prefix + ".bias" in w:
        out = out + w[prefix + ".bias"]
    return out


def rotary(x, rd, base, interleaved):  # x [L, H, D]
    L = x.shape[0]
    inv = 1.0 / (base ** (torch.arange(0, rd, 2, dtype=torch.float32) / rd))
    ang = torch.outer(torch.arange(L, dtype=torch.float32), inv)  # [L, rd/2]
    cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]
    out = x.clone()
    if interleaved:
        x1, x2 = x[..., 0:rd:2], x[..., 1:rd:2]
        out[..., 0:rd:2] = x1 * cos - x2 * sin
        out[..., 1:rd:2] = x1 * sin + x2 * cos
    else:
        h = rd // 2
        x1, x2 = x[..., :h], x[..., h:rd]
        out[..., :h] = x1 * cos - x2 * sin
        out[..., h:rd] = x1 * sin + x2 * cos
    return out


def mha(cfg, w, p, x):
    a = cfg["attn_cfg"]
    H = a["num_heads"]
    Hkv = a.get("num_heads_kv") or H
    D = a.get("head_dim") or cfg["d_model"] // H
    L = x.shape[0]
    qkv = linear(w, p + "in_proj", x)
    q = qkv[:, :H * D].reshape(L, H, D)
    k = qkv[:, H * D:(H + Hkv) * D].reshape(L, Hkv, D)
    v = qkv[:, (H + Hkv) * D:].reshape(L, Hkv, D)
    rd = a.get("rotary_emb_dim", 0)
    if rd:
        q = rotary(q, rd, a.get("rotary_emb_base", 10000.0), a.get("rotary_emb_interleaved", False))
        k = rotary(k, rd, a.get("rotary_emb_base", 10000.0), a.get("rotary_emb_interleaved", False))
    k = k.repeat_interleave(H // Hkv, dim=1)
    v = v.repeat_interleave(H // Hkv, dim=1)
    scale = a.get("softmax_scale") or 1.0 / math.sqrt(D)
    out = torch.zeros(L, H, D)
    for h in range(H):
        for t in range(L):
            s = (k[:t + 1, h] @ q[t, h]) * scale
            out[t, h] = torch.softmax(s, 0) @ v[:t + 1, h]
    return linear(w, p + "out_proj", out.reshape(L, H * D))


def mamba1(cfg, w, p, x):
    s = cfg["ssm_cfg"]
    d_inner = int(s.get("expand", 2) * cfg["d_model"])
    N = s.get("d_state", 16)
    r = s.get("dt_rank", "auto")
    r = math.ceil(cfg["d_model"] / 16) if r == "auto" else r
    L = x.shape[0]
    xz = linear(w, p + "in_proj", x)
    xs, z = xz[:, :d_inner], xz[:, d_inner:]
    xs = F.silu(causal_conv(w, p + "conv1d", xs))
    dbl = F.linear(xs, w[p + "x_proj.weight"])
    dt = F.softplus(linear(w, p + "dt_proj", dbl[:, :r]))
    B, C = dbl[:, r:r + N], dbl[:, r + N:]
    A = -torch.exp(w[p + "A_log"])
    h = torch.zeros(d_inner, N)
    ys = []
    for t in range(L):
        h = torch.exp(dt[t][:, None] * A) * h + (dt[t] * xs[t])[:, None] * B[t][None, :]
        ys.append(h @ C[t] + w[p + "D"] * xs[t])
    y = torch.stack(ys)
    return linear(w, p + "out_proj", y * F.silu(z))


def mamba2(cfg, w, p, x):
    s = cfg["ssm_cfg"]
    d_inner = s.get("expand", 2) * cfg["d_model"]
    d_ssm = s.get("d_ssm") or d_inner
    P = s.get("headdim", 64)
    H = d_ssm // P
    G = s.get("ngroups", 1)
    N = s.get("d_state", 128)
    L = x.shape[0]
    zx = linear(w, p + "in_proj", x)
    d_mlp = (zx.shape[-1] - 2 * d_ssm - 2 * G * N - H) // 2
    z0, x0 = zx[:, :d_mlp], zx[:, d_mlp:2 * d_mlp]
    z = zx[:, 2 * d_mlp:2 * d_mlp + d_ssm]
    xBC = zx[:, 2 * d_mlp + d_ssm:2 * d_mlp + 2 * d_ssm + 2 * G * N]
    dt = zx[:, -H:]
    xBC = F.silu(causal_conv(w, p + "conv1d", xBC))
    xs = xBC[:, :d_ssm].reshape(L, H, P)
    B = xBC[:, d_ssm:d_ssm + G * N].reshape(L, G, N)
    C = xBC[:, d_ssm + G * N:].reshape(L, G, N)
    dt = F.softplus(dt + w[p + "dt_bias"])
    lim = s.get("dt_limit")
    if lim:
        dt = dt.clamp(lim[0], lim[1] if lim[1] is not None else float("inf"))
    A = -torch.exp(w[p + "A_log"])
    D = w[p + "D"]
    if s.get("D_has_hdim", False):
        D = D.reshape(H, P)
    else:
        D = D[:, None].expand(H, P)
    hpg = H // G
    state = torch.zeros(H, P, N)
    ys = []
    for t in range(L):
        y_t = torch.zeros(H, P)
        for hh in range(H):
            g = hh // hpg
            state[hh] = math.exp(dt[t, hh] * A[hh]) * state[hh] + dt[t, hh] * torch.outer(xs[t, hh], B[t, g])
            y_t[hh] = state[hh] @ C[t, g] + D[hh] * xs[t, hh]
        ys.append(y_t)
    y = torch.stack(ys).reshape(L, d_ssm)
    if s.get("rmsnorm", True):
        nbg = s.get("norm_before_gate", False)
        g = y if nbg else y * F.silu(z)
        gg = g.reshape(L, G, d_ssm // G)
        out = (gg * torch.rsqrt(gg.pow(2).mean(-1, keepdim=True) + 1e-5)).reshape(L, d_ssm) * w[p + "norm.weight"]
        if nbg:
            out = out * F.silu(z)
    else:
        out = y * F.silu(z)
    if d_mlp > 0:
        out = torch.cat([F.silu(z0) * x0, out], -1)
    return linear(w, p + "out_proj", out)


def forward(cfg, w, tokens, resid_hook=None):
    x = w["backbone.embedding.weight"][tokens]
    if cfg.get("pos_emb", "none") == "learned":
        x = x + w["backbone.pos_embedding.weight"][: len(tokens)]
    ssm = mamba2 if cfg["ssm_cfg"].get("layer", "Mamba1") == "Mamba2" else mamba1
    for i in range(cfg["n_layer"]):
        p = f"backbone.layers.{i}."
        if resid_hook is not None:
            x = resid_hook(i, x)
        h = norm(cfg, w, p + "norm", x)
        if i in cfg.get("parallel_layer_idx", []):
            beta = w[p + "mixer.beta"]
            m = ssm(cfg, w, p + "mixer.ssm.", h) + torch.tanh(beta) * mha(cfg, w, p + "mixer.attn.", h)
        elif i in cfg.get("attn_layer_idx", []):
            m = mha(cfg, w, p + "mixer.", h)
        else:
            m = ssm(cfg, w, p + "mixer.", h)
        x = x + m
        if cfg.get("d_intermediate", 0) > 0:
            h2 = norm(cfg, w, p + "norm2", x)
            y = F.linear(h2, w[p + "mlp.fc1.weight"])
            v, g = y.chunk(2, -1)
            x = x + F.linear(v * F.silu(g), w[p + "mlp.fc2.weight"])
    x = norm(cfg, w, "backbone.norm_f", x)
    head = w["backbone.embedding.weight"] if cfg.get("tie_embeddings", True) else w["lm_head.weight"]
    return x @ head.T


def perturb(src, dst, seed):
    g = torch.Generator().manual_seed(seed)
    with h5py.File(src, "r") as fi, h5py.File(dst, "w") as fo:
        for k, v in fi.attrs.items():
            fo.attrs[k] = v
        grp = fo.create_group("weights")
        for k in fi["weights"].keys():
            t = torch.from_numpy(fi["weights"][k][()]).float()
            noise = torch.randn(t.shape, generator=g)
            if k.endswith("embedding.weight"):
                t = noise  # unit scale, so that logits are O(1)-O(10) and differences are not hidden
            elif k.endswith("beta"):
                t = t + 0.8
            elif k.endswith("norm.weight") or k.endswith("norm2.weight") or k.endswith("norm_f.weight"):
                t = t + 0.3 * noise
            elif k.endswith(".bias"):
                t = t + 0.1 * noise
            elif k.endswith("A_log") or k.endswith("dt_bias") or k.endswith(".D"):
                t = t + 0.2 * noise
            else:
                t = t * (1 + 0.2 * noise)
            grp.create_dataset(k, data=t.numpy())


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--perturb":
        perturb(sys.argv[2], sys.argv[3], int(sys.argv[5]) if len(sys.argv) > 5 else 0)
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("results")
    ap.add_argument("--tol", type=float, default=1e-4, help="absolute tolerance")
    ap.add_argument("--rtol", type=float, default=1e-6, help="tolerance relative to the largest logit")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    cfg, w = load(a.checkpoint)
    with h5py.File(a.results, "r") as f:
        logits = torch.from_numpy(f["logits"][()])
        tokens = torch.from_numpy(f["tokens"][()]).long()
    ref = forward(cfg, w, tokens)
    diff = (ref - logits).abs().max().item()
    scale = ref.abs().max().item()
    print(f"{a.checkpoint}: {len(tokens)} tokens, max |logit difference| = {diff:.3g} "
          f"(logits up to {scale:.3g}; tolerance {a.tol:g} + {a.rtol:g} x {scale:.3g})")
    return 0 if diff <= a.tol + a.rtol * scale else 1


if __name__ == "__main__":
    sys.exit(main())
