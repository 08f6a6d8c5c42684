#!/usr/bin/env python3
"""Compares two folders written by outputs.sh (two builds of mechscope-cli) and reports every difference.

Default: bit-identical. Every HDF5 dataset must have the same dtype, shape and bytes (NaN where NaN), every
attribute the same value, every log and CSV the same text. What may differ between two runs of one build is
ignored: wall-clock times (a results file's and a log's timings, a checkpoint's /training/seconds and its seal).

usage: compare.py [--ignore-provenance KEY,...] A B     (Debian's python3 with h5py and numpy)
--ignore-provenance: keys of a results file's provenance left out of the comparison, for a step that changes what
provenance records on purpose (name them in the commit).
Exit status 0: identical; 1: differences (listed); 2: usage or unreadable folders.
"""
import json
import os
import re
import sys

import h5py
import numpy as np

TIMING = [
    (re.compile(r"in [0-9.]+ (s|ms)\b"), "in <t>"),
    (re.compile(r"[0-9.]+ (ex|examples|steps)/s"), "<rate>"),
    (re.compile(r"\b[0-9.]+ ?(s|ms|min)\b(?= |,|\)|$)"), "<t>"),
]
IGNORED_DATASETS = {"seconds"}  # wall time of each training evaluation


def normalise_log(text):
    out = []
    for line in text.splitlines():
        for pattern, repl in TIMING:
            line = pattern.sub(repl, line)
        out.append(line)
    return out


IGNORED_PROVENANCE = set()


def attrs_of(obj):
    out = {}
    for k, v in obj.attrs.items():
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        if isinstance(v, str) and v[:1] in "{[":
            try:
                v = json.loads(v)
            except ValueError:
                pass
        if isinstance(v, np.ndarray):
            v = v.tolist()
        if k == "provenance" and isinstance(v, dict):
            v = {pk: pv for pk, pv in v.items() if pk not in IGNORED_PROVENANCE}
        out[k] = v
    return out


def same_array(a, b):
    if a.dtype != b.dtype or a.shape != b.shape:
        return False, f"dtype/shape {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
    if a.tobytes() == b.tobytes():
        return True, ""
    if a.dtype.kind == "f":
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        finite = np.isfinite(diff)
        worst = float(diff[finite].max()) if finite.any() else float("nan")
        scale = float(np.nanmax(np.abs(a))) if a.size and np.isfinite(a).any() else 0.0
        n = int(np.count_nonzero(~((a == b) | (np.isnan(a) & np.isnan(b)))))
        return False, f"{n} of {a.size} values differ, largest by {worst:.3g} (largest value {scale:.3g})"
    return False, f"{np.count_nonzero(a != b)} of {a.size} values differ"


def compare_h5(pa, pb, problems, name):
    with h5py.File(pa, "r") as fa, h5py.File(pb, "r") as fb:
        items_a, items_b = {}, {}
        fa.visititems(lambda k, v: items_a.__setitem__(k, v))
        fb.visititems(lambda k, v: items_b.__setitem__(k, v))
        if set(items_a) != set(items_b):
            problems.append(f"{name}: objects only in A {sorted(set(items_a) - set(items_b))}, "
                            f"only in B {sorted(set(items_b) - set(items_a))}")
        for objname in ["/"] + sorted(set(items_a) & set(items_b)):
            oa, ob = (fa, fb) if objname == "/" else (items_a[objname], items_b[objname])
            if attrs_of(oa) != attrs_of(ob):
                problems.append(f"{name}:{objname}: attributes differ")
            if isinstance(oa, h5py.Dataset):
                if objname.split("/")[-1] in IGNORED_DATASETS:
                    continue
                ok, why = same_array(oa[()] if oa.shape != () else np.array(oa[()]),
                                     ob[()] if ob.shape != () else np.array(ob[()]))
                if not ok:
                    problems.append(f"{name}:{objname}: {why}")


def main():
    args = sys.argv[1:]
    if len(args) == 4 and args[0] == "--ignore-provenance":
        IGNORED_PROVENANCE.update(k for k in args[1].split(",") if k)
        args = args[2:]
    if len(args) != 2:
        print(__doc__)
        return 2
    a, b = args
    if not (os.path.isdir(a) and os.path.isdir(b)):
        print("compare.py: both arguments must be folders written by outputs.sh")
        return 2
    fa, fb = set(os.listdir(a)), set(os.listdir(b))
    problems = []
    if fa != fb:
        problems.append(f"files only in A: {sorted(fa - fb)}; only in B: {sorted(fb - fa)}")
    compared = 0
    for name in sorted(fa & fb):
        pa, pb = os.path.join(a, name), os.path.join(b, name)
        compared += 1
        if name.endswith(".h5"):
            try:
                compare_h5(pa, pb, problems, name)
            except OSError as e:
                with open(pa, "rb") as x, open(pb, "rb") as y:
                    if x.read() != y.read():
                        problems.append(f"{name}: unreadable ({e}) and the bytes differ")
        else:
            with open(pa, encoding="utf-8", errors="replace") as x, open(pb, encoding="utf-8", errors="replace") as y:
                la, lb = normalise_log(x.read()), normalise_log(y.read())
            if la != lb:
                first = next((i for i in range(min(len(la), len(lb))) if la[i] != lb[i]), min(len(la), len(lb)))
                problems.append(f"{name}: line {first + 1} differs:\n    A: {la[first] if first < len(la) else '<end>'}"
                                f"\n    B: {lb[first] if first < len(lb) else '<end>'}")
    for p in problems:
        print("DIFFERENT " + p)
    print(f"compared {compared} files: " + ("identical" if not problems else f"{len(problems)} difference(s)"))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
