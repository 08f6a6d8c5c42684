#!/usr/bin/env python3
"""`bench` of two mechscope-cli builds, interleaved on the same machine, as medians and ratios: the check that a
change left the speed as it was (docs/architecture.md, "Checking a redesign step"). Each round runs both builds on
every demo; the machine's drift hits both alike. Timings are CPU timings of this machine; compare ratios only.

usage: bench-compare.py REF_CLI NEW_CLI [ROUNDS] [DEMO ...]     (demos: names under resources/models)
"""
import os
import re
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS = [
    ("plain forward", re.compile(r"plain forward:\s+([\d.]+) ms")),
    ("full cache", re.compile(r"forward \+ full cache:\s+([\d.]+) ms")),
    ("ablation sweep", re.compile(r"head-ablation sweep .*batched ([\d.]+) (ms|s)")),
    ("patching sweep", re.compile(r"residual patching sweep .*batched ([\d.]+) (ms|s)")),
    ("attribution", re.compile(r"attribution patching .*: ([\d.]+) (ms|s),")),
]


def run(cli, demo):
    out = subprocess.run([cli, "bench", "--checkpoint", os.path.join(ROOT, "resources/models", demo + ".h5"),
                          "--batch", "32", "--seq", "64", "--repeat", "5"], capture_output=True, text=True).stdout
    values = {}
    for name, pattern in METRICS:
        m = pattern.search(out)
        if m:
            v = float(m.group(1))
            values[name] = v * 1000 if len(m.groups()) > 1 and m.group(2) == "s" else v
    return values


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    ref, new = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    demos = sys.argv[4:] or ["mqar-attn", "mqar-hybrid", "mqar-mamba1", "mqar-mamba2"]
    times = {(d, which): {} for d in demos for which in ("ref", "new")}
    for _ in range(rounds):
        for d in demos:
            for which, cli in (("ref", ref), ("new", new)):
                for k, v in run(cli, d).items():
                    times[(d, which)].setdefault(k, []).append(v)
    print(f"{'demo':14s} {'metric':16s} {'ref ms':>9s} {'new ms':>9s} {'new/ref':>8s}")
    for d in demos:
        for name, _ in METRICS:
            r, n = times[(d, "ref")].get(name), times[(d, "new")].get(name)
            if not r or not n:
                continue
            mr, mn = statistics.median(r), statistics.median(n)
            print(f"{d:14s} {name:16s} {mr:9.2f} {mn:9.2f} {mn / mr:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
