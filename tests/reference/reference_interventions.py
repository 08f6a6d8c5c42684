#!/usr/bin/env python3
"""Independent checks of `mechscope-cli analyze` interventions with the literal reference model of
reference_forward.py (one example at a time, loops over positions), and a TransformerLens-style timing loop.

  reference_interventions.py ablation CHECKPOINT RESULTS   # results of `analyze ablation --out`
      zero-ablates heads by zeroing their out_proj columns (a different mechanism than MechScope's hook on the
      head outputs) and compares each head's mean answer probability with the results file.
  reference_interventions.py patching CHECKPOINT RESULTS   # results of `analyze patching --site resid_pre --out`
      patches the clean block input into the corrupted run at every (layer, position) and compares the answer
      probability grid (means over the kept examples, spec §4's filter recomputed here), then the normalised score
      aligned to each example's corrupted token and readout (patching/aligned_score).
  reference_interventions.py bench-hooks CHECKPOINT [--batch 32] [--threads 2]
      times a full zero-ablation sweep of an attention-only checkpoint as a TransformerLens user writes it: eager
      PyTorch, batched over examples, one forward per head with a hook zeroing that head's output.
"""
import argparse, json, os, sys, time

import h5py
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_forward as ref  # noqa: E402
import torch_twin  # noqa: E402


def read_results(path):
    with h5py.File(path, "r") as f:
        out = {}
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = (torch.from_numpy(obj[()]), dict(obj.attrs))
        f.visititems(visit)
        return out


def answer_probs(cfg, w, tokens, targets, length, positions):
    logits = ref.forward(cfg, w, tokens[:length])
    p = torch.softmax(logits.double(), -1)
    return [p[q, targets[q]].item() for q in positions]


def labelled(targets, length):
    return [q for q in range(length) if targets[q] != -100]


def check_ablation(a):
    cfg, w = ref.load(a.checkpoint)
    r = read_results(a.results)
    tokens, targets, lengths = r["inputs/tokens"][0].long(), r["inputs/targets"][0].long(), r["inputs/lengths"][0]
    probs, attrs = r["ablation/prob"]
    heads = json.loads(attrs["labels_head"])
    n = min(a.examples, tokens.shape[0])
    if n < tokens.shape[0]:
        print(f"note: the results were computed on {tokens.shape[0]} examples; comparing needs all of them")
        n = tokens.shape[0]
    # Heads to check: the first and last few (a Mamba1 model has hundreds of channels).
    pick = sorted(set(list(range(min(4, len(heads)))) + list(range(max(0, len(heads) - 4), len(heads)))))
    worst = 0.0
    for i in pick:
        label = heads[i]  # L{l}.{attn|ssm}.H{h}
        l, mixer, h = label[1:].split(".")
        l, h = int(l), int(h[1:])
        p = f"backbone.layers.{l}.mixer."
        if str(l) in [str(x) for x in cfg.get("parallel_layer_idx", [])]:
            p += "attn." if mixer == "attn" else "ssm."
        if mixer == "attn":
            at = cfg["attn_cfg"]
            D = at.get("head_dim") or cfg["d_model"] // at["num_heads"]
            cols = slice(h * D, (h + 1) * D)
        elif cfg["ssm_cfg"].get("layer", "Mamba1") == "Mamba2":
            s = cfg["ssm_cfg"]
            d_inner = s.get("expand", 2) * cfg["d_model"]
            d_ssm = s.get("d_ssm") or d_inner
            P = s.get("headdim", 64)
            off = d_inner - d_ssm
            cols = slice(off + h * P, off + (h + 1) * P)
        else:
            cols = slice(h, h + 1)
        w2 = dict(w)
        W = w[p + "out_proj.weight"].clone()
        W[:, cols] = 0
        w2[p + "out_proj.weight"] = W
        per_example = []
        for e in range(n):
            L = int(lengths[e])
            qs = labelled(targets[e], L)
            ps = answer_probs(cfg, w2, tokens[e], targets[e], L, qs)
            per_example.append(sum(ps) / len(ps))
        mine = sum(per_example) / len(per_example)
        diff = abs(mine - probs[i].item())
        worst = max(worst, diff)
        print(f"{label}: reference {mine:.6f}, mechscope {probs[i].item():.6f}, |diff| {diff:.2e}")
    print(f"ablation: {len(pick)} heads, largest difference {worst:.2e} (tolerance {a.tol:g})")
    return 0 if worst <= a.tol else 1


def check_patching(a):
    cfg, w = ref.load(a.checkpoint)
    r = read_results(a.results)
    clean, corrupt = r["inputs/tokens"][0].long(), r["inputs/corrupted_tokens"][0].long()
    targets, lengths = r["inputs/targets"][0].long(), r["inputs/lengths"][0]
    grid, attrs = r["patching/prob"]
    n = clean.shape[0]
    # Readout: the last labelled position; spec §4's filter p(y|o) - p(y|c) > 0.01.
    kept, q_of, p_c, denom = [], {}, {}, {}
    for e in range(n):
        L = int(lengths[e])
        q = labelled(targets[e], L)[-1]
        po = answer_probs(cfg, w, clean[e], targets[e], L, [q])[0]
        pc = answer_probs(cfg, w, corrupt[e], targets[e], L, [q])[0]
        if po - pc > 0.01:
            kept.append(e)
            q_of[e] = q
            p_c[e], denom[e] = pc, po - pc
    if not kept:
        print("no example kept; nothing to compare")
        return 1
    worst = 0.0
    for e in kept:  # clean block inputs per layer
        L = int(lengths[e])
        resid = {}
        def grab(i, x, resid=resid):
            resid[i] = x.clone()
            return x
        ref.forward(cfg, w, clean[e][:L], resid_hook=grab)
        q_of[e] = (q_of[e], resid)
    Lmax = clean.shape[1]
    layers = grid.shape[0]
    score = {}  # (layer, pos, example) -> normalised score, for the aligned table
    for l in range(layers):
        for pos in range(Lmax):
            vals = []
            for e in kept:
                q, resid = q_of[e]
                L = int(lengths[e])
                if pos >= L:
                    vals.append(answer_probs(cfg, w, corrupt[e], targets[e], L, [q])[0])
                    continue
                def patch(i, x, l=l, pos=pos, resid=resid):
                    if i == l:
                        x = x.clone()
                        x[pos] = resid[l][pos]
                    return x
                logits = ref.forward(cfg, w, corrupt[e][:L], resid_hook=patch)
                vals.append(torch.softmax(logits[q].double(), -1)[targets[e][q]].item())
                score[l, pos, e] = (vals[-1] - p_c[e]) / denom[e]
            mine = sum(vals) / len(vals)
            diff = abs(mine - grid[l, pos].item())
            worst = max(worst, diff)
    print(f"patching: {layers} layers x {Lmax} positions, {len(kept)} kept examples, largest difference "
          f"{worst:.2e} (tolerance {a.tol:g})")
    # The score aligned to each example's corrupted token (its first differing position) and its readout:
    # anchors corrupted-1 .. corrupted+3 (inside the example's length), readout; the mean over kept examples.
    aligned, aattrs = r["patching/aligned_score"]
    anchors = json.loads(aattrs["labels_anchor"])
    assert anchors == ["corrupted-1", "corrupted", "corrupted+1", "corrupted+2", "corrupted+3", "readout"], anchors
    worst_aligned = 0.0
    tol_aligned = a.tol / min(denom[e] for e in kept)  # a probability difference, divided by the smallest denominator
    for l in range(layers):
        for k, name in enumerate(anchors):
            vals = []
            for e in kept:
                L = int(lengths[e])
                diffs = (clean[e][:L] != corrupt[e][:L]).nonzero()
                if len(diffs) == 0:
                    continue
                pos = q_of[e][0] if name == "readout" else int(diffs[0]) + k - 1
                if 0 <= pos < L:
                    vals.append(score[l, pos, e])
            mechscope = aligned[l, k].item()
            if not vals:
                ok = mechscope != mechscope  # NaN where no example has the anchor
                worst_aligned = max(worst_aligned, 0.0 if ok else float("inf"))
                continue
            worst_aligned = max(worst_aligned, abs(sum(vals) / len(vals) - mechscope))
    print(f"patching aligned to the corruption: largest difference {worst_aligned:.2e} (tolerance {tol_aligned:.1e})")
    return 0 if worst <= a.tol and worst_aligned <= tol_aligned else 1


def bench_hooks(a):
    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    cfg, w, forward = torch_twin.load(a.checkpoint)
    H = cfg["attn_cfg"]["num_heads"]
    V = w["backbone.embedding.weight"].shape[0]

    t = torch.randint(V, (a.batch, a.seq))
    y = torch.randint(V, (a.batch, a.seq))

    def sweep():
        base = forward(t).log_softmax(-1)
        out = []
        for layer in range(cfg["n_layer"]):
            for head in range(H):
                def hook(i, z, layer=layer, head=head):
                    if i == layer:
                        z = z.clone()
                        z[:, :, head] = 0
                    return z
                lp = forward(t, hook).log_softmax(-1)
                out.append(lp.gather(-1, y[..., None]).exp().mean().item())
        return out

    sweep()
    times = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        sweep()
        times.append(time.perf_counter() - t0)
    s = sorted(times)[len(times) // 2]
    print(f"{a.checkpoint}: PyTorch {torch.__version__} eager hook loop, zero-ablation sweep of {cfg['n_layer'] * H} heads "
          f"(batch {a.batch} x {a.seq}, {a.threads} threads): {s:.3f} s")
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["ablation", "patching", "bench-hooks"])
    ap.add_argument("checkpoint")
    ap.add_argument("results", nargs="?")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--examples", type=int, default=1 << 30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    if a.mode == "bench-hooks":
        return bench_hooks(a)
    if not a.results:
        ap.error("give the results file")
    return check_ablation(a) if a.mode == "ablation" else check_patching(a)


if __name__ == "__main__":
    sys.exit(main())
