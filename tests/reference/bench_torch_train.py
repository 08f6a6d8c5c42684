#!/usr/bin/env python3
"""Times training steps of a MechScope attention checkpoint re-implemented in plain PyTorch (eager, same
shapes, same math as spec §1: RMSNorm, MHA with rotary, optional GatedMLP, tied head), to compare with
`mechscope-cli bench --train --checkpoint FILE --batch B`. Data generation is not timed.

usage: bench_torch_train.py CHECKPOINT [--batch 64] [--seq 64] [--repeat 5] [--threads 2]
"""
import argparse, os, sys, time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_twin  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg, w, forward = torch_twin.load(a.checkpoint, trainable=True)
    V = w["backbone.embedding.weight"].shape[0]

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
