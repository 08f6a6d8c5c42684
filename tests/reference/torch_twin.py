"""An attention-only MechScope checkpoint re-implemented in plain, batched PyTorch (eager; spec §1 math: RMSNorm,
MHA with rotary, optional GatedMLP, tied head), for timing comparisons: bench_torch_train.py (training steps)
and reference_interventions.py bench-hooks (a TransformerLens-style hook loop)."""
import json, math

import h5py
import torch
import torch.nn.functional as F


def load(path, trainable=False):
    """Returns (cfg, weights, forward) where forward(tokens [B, L], hook_z=None) -> logits [B, L, V] and
    hook_z(layer, z [B, L, H, D]) -> z may replace each layer's per-head outputs."""
    with h5py.File(path, "r") as f:
        cfg = json.loads(f.attrs["model_config"])
        w = {k: torch.from_numpy(f["weights"][k][()]) for k in f["weights"].keys()}
    if trainable:
        w = {k: torch.nn.Parameter(v) for k, v in w.items()}
    assert len(cfg.get("attn_layer_idx", [])) == cfg["n_layer"], "attention-only checkpoints"
    at = cfg["attn_cfg"]
    H, d = at["num_heads"], cfg["d_model"]
    D = at.get("head_dim") or d // H
    rd = at.get("rotary_emb_dim", 0)
    eps = cfg.get("norm_epsilon", 1e-5)

    def rms(x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g

    def rotary(x):
        L = x.shape[1]
        inv = 1.0 / (at.get("rotary_emb_base", 10000.0) ** (torch.arange(0, rd, 2).float() / rd))
        fr = torch.outer(torch.arange(L).float(), inv)
        c, s = fr.cos()[None, :, None], fr.sin()[None, :, None]
        x1, x2, rest = x[..., : rd // 2], x[..., rd // 2 : rd], x[..., rd:]
        return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s, rest], -1)

    def forward(t, hook_z=None):
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
            if hook_z is not None:
                z = hook_z(i, z)
            x = x + F.linear(z.reshape(B, L, H * D), w[p + "mixer.out_proj.weight"], w.get(p + "mixer.out_proj.bias"))
            if p + "mlp.fc1.weight" in w:
                y = F.linear(rms(x, w[p + "norm2.weight"]), w[p + "mlp.fc1.weight"])
                u, g = y.chunk(2, -1)
                x = x + F.linear(u * F.silu(g), w[p + "mlp.fc2.weight"])
        return rms(x, w["backbone.norm_f.weight"]) @ w["backbone.embedding.weight"].T

    return cfg, w, forward
