#!/usr/bin/env python3
"""Builds foreign checkpoints (the layouts of mamba_ssm and Hugging Face) for the importer's tests, with Debian's
python3-torch, h5py and numpy only.

  make_foreign.py export NATIVE.h5 OUTDIR --format mamba_ssm|hf-mamba|hf-mamba2 [--weights bin|safetensors|sharded]
                  [--dtype float32|bfloat16]
      Writes a native checkpoint's weights in the foreign layout: config.json as that library writes it, and the
      state dict through torch.save of a real nn.Module's state_dict() (an OrderedDict, tied weights sharing one
      storage, as mamba_ssm's save_pretrained does) or as safetensors (written by hand from the format's spec:
      8-byte little-endian header length, JSON header, raw data), or as two safetensors shards with an index.
  make_foreign.py llama OUTDIR [--seed S] [--weights bin|safetensors]
      A random LlamaForCausalLM (GQA, untied head, intermediate_size not a multiple of 128, rope_theta 500000).
  make_foreign.py llama-check OUTDIR RESULTS.h5 --tokens 1,2,3 [--tol 1e-4]
      Recomputes the Llama's logits with a literal transcription of Hugging Face's LlamaForCausalLM math
      (rotate_half rotary, repeat_kv, RMSNorm, down(silu(gate) * up)) and compares them with a
      `mechscope-cli forward` results file of the imported model.
  make_foreign.py compare A.h5 B.h5 [--tol 1e-5]
      Compares the logits of two `mechscope-cli forward` results files.
"""
import argparse
import collections
import json
import math
import os
import struct
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F


def read_native(path):
    with h5py.File(path, "r") as f:
        cfg = json.loads(f.attrs["model_config"])
        w = collections.OrderedDict((k, torch.from_numpy(f["weights"][k][()]).float()) for k in f["weights"].keys())
    return cfg, w


def module_state_dict(named):
    """A real nn.Module whose parameters carry these names (identical tensors become one shared Parameter), so that
    torch.save(module.state_dict()) writes exactly what mamba_ssm and transformers write."""
    root = torch.nn.Module()
    shared = {}
    for name, t in named.items():
        *path, leaf = name.split(".")
        m = root
        for p in path:
            if not hasattr(m, p):
                m.add_module(p, torch.nn.Module())
            m = getattr(m, p)
        key = id(t)
        if key not in shared:
            shared[key] = torch.nn.Parameter(t.clone())
        m.register_parameter(leaf, shared[key])
    sd = root.state_dict()
    assert isinstance(sd, collections.OrderedDict)
    return sd


ST_DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.float64: "F64"}


def write_safetensors(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        t = t.detach().contiguous()
        if t.dtype == torch.bfloat16:
            raw = t.view(torch.int16).numpy().tobytes()
        else:
            raw = t.numpy().tobytes()
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write_weights(outdir, sd, how, dtype):
    sd = collections.OrderedDict((k, v.to(dtype)) for k, v in sd.items())
    if how == "bin":
        torch.save(module_state_dict(sd), os.path.join(outdir, "pytorch_model.bin"))
    elif how == "safetensors":
        write_safetensors(os.path.join(outdir, "model.safetensors"), sd, {"format": "pt"})
    elif how == "sharded":
        names = list(sd.keys())
        half = len(names) // 2
        shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
        wmap = {}
        for fname, keys in shards.items():
            write_safetensors(os.path.join(outdir, fname), collections.OrderedDict((k, sd[k]) for k in keys))
            wmap.update({k: fname for k in keys})
        with open(os.path.join(outdir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 0}, "weight_map": wmap}, f)
    else:
        raise SystemExit("unknown --weights " + how)


def export(a):
    cfg, w = read_native(a.native)
    os.makedirs(a.outdir, exist_ok=True)
    tie = cfg.get("tie_embeddings", True)
    ssm = cfg.get("ssm_cfg", {})
    if a.format == "mamba_ssm":
        # MambaConfig's fields, as save_pretrained writes self.config.__dict__.
        conf = {k: cfg[k] for k in ("d_model", "d_intermediate", "n_layer", "vocab_size", "ssm_cfg", "attn_layer_idx",
                                    "attn_cfg", "rms_norm", "residual_in_fp32", "fused_add_norm",
                                    "pad_vocab_size_multiple", "tie_embeddings") if k in cfg}
        sd = collections.OrderedDict(w)
        if tie:  # MambaLMHeadModel's state_dict lists the tied head too
            sd["lm_head.weight"] = sd["backbone.embedding.weight"]
    elif a.format in ("hf-mamba", "hf-mamba2"):
        assert cfg.get("pad_vocab_size_multiple", 8) == 1 or cfg["vocab_size"] % cfg.get("pad_vocab_size_multiple", 8) == 0
        assert not cfg.get("attn_layer_idx") and not cfg.get("d_intermediate")
        d = cfg["d_model"]
        common = {"hidden_size": d, "num_hidden_layers": cfg["n_layer"], "vocab_size": cfg["vocab_size"],
                  "layer_norm_epsilon": cfg.get("norm_epsilon", 1e-5), "residual_in_fp32": cfg.get("residual_in_fp32", True),
                  "tie_word_embeddings": tie, "hidden_act": "silu", "use_cache": True, "initializer_range": 0.1,
                  "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0, "transformers_version": "4.46.0",
                  "torch_dtype": "float32" if a.dtype == "float32" else "bfloat16"}
        if a.format == "hf-mamba":
            conf = dict(common, model_type="mamba", architectures=["MambaForCausalLM"], state_size=ssm.get("d_state", 16),
                        expand=ssm.get("expand", 2), conv_kernel=ssm.get("d_conv", 4), use_bias=ssm.get("bias", False),
                        use_conv_bias=ssm.get("conv_bias", True), time_step_rank=ssm.get("dt_rank", "auto"),
                        intermediate_size=int(ssm.get("expand", 2) * d), time_step_scale=1.0, time_step_min=0.001,
                        time_step_max=0.1, time_step_init_scheme="random", time_step_floor=1e-4,
                        rescale_prenorm_residual=False, use_mambapy=False)
        else:
            d_ssm = ssm.get("d_ssm") or ssm.get("expand", 2) * d
            assert d_ssm == ssm.get("expand", 2) * d, "HF Mamba2 has no d_ssm < d_inner"
            limit = ssm.get("dt_limit", [0.0, None])
            conf = dict(common, model_type="mamba2", architectures=["Mamba2ForCausalLM"], num_heads=d_ssm // ssm["headdim"],
                        head_dim=ssm["headdim"], state_size=ssm["d_state"], expand=ssm.get("expand", 2),
                        conv_kernel=ssm.get("d_conv", 4), n_groups=ssm.get("ngroups", 1), use_bias=ssm.get("bias", False),
                        use_conv_bias=ssm.get("conv_bias", True), chunk_size=ssm.get("chunk_size", 256),
                        time_step_limit=[limit[0], math.inf if limit[1] is None else limit[1]], time_step_rank="auto",
                        time_step_min=0.001, time_step_max=0.1, time_step_floor=1e-4, rms_norm=True,
                        norm_before_gate=False, rescale_prenorm_residual=False)
        sd = collections.OrderedDict()
        for k, v in w.items():
            sd["backbone.embeddings.weight" if k == "backbone.embedding.weight" else k] = v
        if tie:
            sd["lm_head.weight"] = sd["backbone.embeddings.weight"]
    else:
        raise SystemExit("unknown --format " + a.format)
    with open(os.path.join(a.outdir, "config.json"), "w") as f:
        json.dump(conf, f, indent=2)  # Python writes Infinity, as transformers' to_json_file does
    write_weights(a.outdir, sd, a.weights, getattr(torch, a.dtype))
    print(f"wrote {a.outdir}: {a.format}, {len(sd)} tensors, {a.weights}, {a.dtype}")


LLAMA = dict(hidden_size=96, intermediate_size=200, num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2,
             vocab_size=75, rms_norm_eps=1e-6, rope_theta=500000.0)


def llama(a):
    g = torch.Generator().manual_seed(a.seed)
    c = LLAMA
    d, I, H, Hkv = c["hidden_size"], c["intermediate_size"], c["num_attention_heads"], c["num_key_value_heads"]
    D = d // H

    def r(*shape, scale=None):
        return torch.randn(*shape, generator=g) * (scale if scale is not None else 1.0 / math.sqrt(shape[-1]))

    sd = collections.OrderedDict()
    sd["model.embed_tokens.weight"] = r(c["vocab_size"], d, scale=1.0)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        sd[p + "self_attn.q_proj.weight"] = r(H * D, d)
        sd[p + "self_attn.k_proj.weight"] = r(Hkv * D, d)
        sd[p + "self_attn.v_proj.weight"] = r(Hkv * D, d)
        sd[p + "self_attn.o_proj.weight"] = r(d, H * D)
        sd[p + "mlp.gate_proj.weight"] = r(I, d)
        sd[p + "mlp.up_proj.weight"] = r(I, d)
        sd[p + "mlp.down_proj.weight"] = r(d, I)
        sd[p + "input_layernorm.weight"] = 1 + 0.3 * r(d, scale=1.0)
        sd[p + "post_attention_layernorm.weight"] = 1 + 0.3 * r(d, scale=1.0)
    sd["model.norm.weight"] = 1 + 0.3 * r(d, scale=1.0)
    sd["lm_head.weight"] = r(c["vocab_size"], d)
    os.makedirs(a.outdir, exist_ok=True)
    conf = dict(c, model_type="llama", architectures=["LlamaForCausalLM"], hidden_act="silu", max_position_embeddings=2048,
                initializer_range=0.02, use_cache=True, pretraining_tp=1, tie_word_embeddings=False, rope_scaling=None,
                attention_bias=False, attention_dropout=0.0, mlp_bias=False, head_dim=D, bos_token_id=1, eos_token_id=2,
                torch_dtype="float32", transformers_version="4.46.0")
    with open(os.path.join(a.outdir, "config.json"), "w") as f:
        json.dump(conf, f, indent=2)
    # A tokenizer.json naming a few ids, as the GUI shows them.
    with open(os.path.join(a.outdir, "tokenizer.json"), "w") as f:
        json.dump({"model": {"type": "BPE", "vocab": {f"tok{i}": i for i in range(3, c["vocab_size"])}},
                   "added_tokens": [{"id": 0, "content": "<unk>"}, {"id": 1, "content": "<s>"}, {"id": 2, "content": "</s>"}]}, f)
    write_weights(a.outdir, sd, a.weights, torch.float32)
    print(f"wrote {a.outdir}: random Llama, {len(sd)} tensors")


def load_any(outdir):
    p = os.path.join(outdir, "pytorch_model.bin")
    if os.path.exists(p):
        return torch.load(p)
    with open(os.path.join(outdir, "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(data[b:e], dtype=np.float32).copy()).reshape(v["shape"])
    return out


def llama_check(a):
    c = json.load(open(os.path.join(a.outdir, "config.json")))
    w = load_any(a.outdir)
    toks = torch.tensor([int(t) for t in a.tokens.split(",")])
    d, H, Hkv = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
    D = c.get("head_dim") or d // H
    L = len(toks)

    def rms(x, wt):
        return wt * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + c["rms_norm_eps"]))

    def rotate_half(x):
        x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
        return torch.cat((-x2, x1), dim=-1)

    inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    freqs = torch.outer(torch.arange(L).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    h = w["model.embed_tokens.weight"][toks]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = rms(h, w[p + "input_layernorm.weight"])
        q = (x @ w[p + "self_attn.q_proj.weight"].T).view(L, H, D).transpose(0, 1)
        k = (x @ w[p + "self_attn.k_proj.weight"].T).view(L, Hkv, D).transpose(0, 1)
        v = (x @ w[p + "self_attn.v_proj.weight"].T).view(L, Hkv, D).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // Hkv, dim=0)
        v = v.repeat_interleave(H // Hkv, dim=0)
        s = q @ k.transpose(1, 2) / math.sqrt(D)
        s = s.masked_fill(torch.triu(torch.ones(L, L, dtype=torch.bool), 1), float("-inf"))
        o = (torch.softmax(s, -1) @ v).transpose(0, 1).reshape(L, H * D)
        h = h + o @ w[p + "self_attn.o_proj.weight"].T
        x = rms(h, w[p + "post_attention_layernorm.weight"])
        m = F.silu(x @ w[p + "mlp.gate_proj.weight"].T) * (x @ w[p + "mlp.up_proj.weight"].T)
        h = h + m @ w[p + "mlp.down_proj.weight"].T
    ref = rms(h, w["model.norm.weight"]) @ w["lm_head.weight"].T
    with h5py.File(a.results, "r") as f:
        got = torch.from_numpy(f["logits"][()]).float().reshape(ref.shape[0], -1)[:, : ref.shape[1]]
    diff = (ref - got).abs().max().item()
    print(f"llama logits: max |HF reference - imported| = {diff:.3g} (logits up to {ref.abs().max().item():.3g})")
    return 0 if diff <= a.tol else 1


def bad(a):
    """Broken and foreign inputs, one folder each, next to a good mamba_ssm export in OUTDIR/good."""
    good = os.path.join(a.outdir, "good")
    conf = json.load(open(os.path.join(good, "config.json")))
    sd = torch.load(os.path.join(good, "pytorch_model.bin"))

    def case(name, config, writer):
        d = os.path.join(a.outdir, name)
        os.makedirs(d, exist_ok=True)
        if config is not None:
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(config, f)
        writer(os.path.join(d, "pytorch_model.bin"))

    case("t5", {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "d_model": 64}, lambda p: torch.save(sd, p))
    case("wrong-shape", dict(conf, d_model=conf["d_model"] * 2), lambda p: torch.save(sd, p))
    case("legacy", conf, lambda p: torch.save(sd, p, _use_new_zipfile_serialization=False))
    case("whole-module", conf, lambda p: torch.save(torch.nn.Linear(2, 2), p))
    case("no-config", None, lambda p: torch.save(sd, p))
    blob = open(os.path.join(good, "pytorch_model.bin"), "rb").read()
    case("truncated", conf, lambda p: open(p, "wb").write(blob[: len(blob) // 2]))
    case("extra-tensor", conf, lambda p: torch.save(collections.OrderedDict(list(sd.items()) + [("backbone.extra", torch.ones(3))]), p))
    print("wrote the bad cases under", a.outdir)


def fixture(a):
    """tests/import/fixtures/tiny_state_dict.pt: every case the pickle reader must handle, with values a test can
    recompute: arange-filled tensors, a tensor sharing another's storage at an offset, a transposed
    (non-contiguous) one, bfloat16, float16, int64, a scalar, and the OrderedDict's _metadata."""
    base = torch.arange(24, dtype=torch.float32)
    sd = collections.OrderedDict()
    sd["a.weight"] = base.view(4, 6)
    sd["a.view"] = base[6:18].view(3, 4)            # same storage, offset 6
    sd["b.t"] = torch.arange(6, dtype=torch.float32).view(2, 3).t()  # stride (1, 3)
    sd["c.bf16"] = torch.tensor([1.5, -2.0, 0.25], dtype=torch.bfloat16)
    sd["c.f16"] = torch.tensor([0.5, 3.0], dtype=torch.float16)
    sd["d.long"] = torch.tensor([7, -3, 2 ** 40], dtype=torch.int64)
    sd["e.scalar"] = torch.tensor(2.5)
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("a", {"version": 1})])
    torch.save(sd, a.out)
    print("wrote", a.out, os.path.getsize(a.out), "bytes")


def compare(a):
    with h5py.File(a.a, "r") as f:
        x = f["logits"][()]
    with h5py.File(a.b, "r") as f:
        y = f["logits"][()]
    if x.shape != y.shape:
        print(f"shapes differ: {x.shape} vs {y.shape}")
        return 1
    diff = float(np.abs(x - y).max())
    print(f"max |logit difference| = {diff:.3g} (logits up to {float(np.abs(x).max()):.3g})")
    return 0 if diff <= a.tol else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("native")
    e.add_argument("outdir")
    e.add_argument("--format", required=True)
    e.add_argument("--weights", default="bin")
    e.add_argument("--dtype", default="float32")
    l = sub.add_parser("llama")
    l.add_argument("outdir")
    l.add_argument("--seed", type=int, default=0)
    l.add_argument("--weights", default="safetensors")
    c = sub.add_parser("llama-check")
    c.add_argument("outdir")
    c.add_argument("results")
    c.add_argument("--tokens", required=True)
    c.add_argument("--tol", type=float, default=1e-4)
    b = sub.add_parser("bad")
    b.add_argument("outdir")
    fx = sub.add_parser("fixture")
    fx.add_argument("out")
    m = sub.add_parser("compare")
    m.add_argument("a")
    m.add_argument("b")
    m.add_argument("--tol", type=float, default=1e-5)
    a = ap.parse_args()
    return {"export": export, "llama": llama, "llama-check": llama_check, "compare": compare, "bad": bad, "fixture": fixture}[a.cmd](a) or 0


if __name__ == "__main__":
    sys.exit(main())
