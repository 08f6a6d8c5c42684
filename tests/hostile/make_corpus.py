#!/usr/bin/env python3
"""Writes the hostile-input corpus that tests/hostile/run_corpus.sh runs against the CLI and the workbench.

Standard library only (no torch, no h5py), seeded, so the corpus is the same on every machine. Each entry is a case
that once crashed, hung, clobbered a file or allocated gigabytes (docs/robustness.md):

  deep_config/          config.json with a value nested 2,000,000 deep under an unknown key
  deep_pickle/          pytorch_model.bin whose pickle nests a tuple 3,000,000 deep
  stale_pickle/         a pickle that nests objects ~1.4M deep through memoized lists appended to later
  stride0/              a 1-float storage viewed as 16384 x 32768 (torch.zeros(1).expand(...)) -- 2 GiB if copied
  overlap/              safetensors whose two tensors share bytes
  sparse.h5             a seal claiming 20 GiB over a file of holes
  mutants/mNNN.h5       seeded byte mutants of an unsealed copy of a demo checkpoint (libhdf5 sees them unchecked)
  rmutants/rNNN.h5      the same of an unsealed results file (for the workbench's --render path)

usage: make_corpus.py OUT_DIR DEMO_CHECKPOINT RESULTS_FILE [MUTANTS]
"""
import json
import os
import random
import struct
import sys
import zipfile

USER_BLOCK = 512


def stored_zip(path, entries):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name, data in entries:
            z.writestr(name, data)


def pstr(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def mamba_config(folder):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"d_model": 16, "n_layer": 1, "vocab_size": 16, "ssm_cfg": {"layer": "Mamba2"}}, f)


def main():
    out, demo, results = sys.argv[1], sys.argv[2], sys.argv[3]
    n_mutants = int(sys.argv[4]) if len(sys.argv) > 4 else 60
    os.makedirs(out, exist_ok=True)

    d = os.path.join(out, "deep_config")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write('{"d_model": 16, "n_layer": 1, "vocab_size": 16, "surprise": ' + "[" * 2_000_000 + "]" * 2_000_000 + "}")

    d = os.path.join(out, "deep_pickle")
    mamba_config(d)
    stored_zip(os.path.join(d, "pytorch_model.bin"), [("archive/data.pkl", b"\x80\x02)" + b"\x85" * 3_000_000 + b".")])

    d = os.path.join(out, "stale_pickle")
    mamba_config(d)
    p = bytearray(b"\x80\x02)r" + struct.pack("<I", 0))
    prev, memo = 0, 1
    for _ in range(1400):
        m, w = memo, memo + 1
        memo += 2
        p += b"]r" + struct.pack("<I", m) + b"\x85r" + struct.pack("<I", w)
        p += b"j" + struct.pack("<I", m) + b"j" + struct.pack("<I", prev) + b"\x85" * 990 + b"a"
        prev = w
    p += b"."
    stored_zip(os.path.join(d, "pytorch_model.bin"), [("archive/data.pkl", bytes(p))])

    d = os.path.join(out, "stride0")
    mamba_config(d)
    p = b"\x80\x02ccollections\nOrderedDict\n)R" + pstr("x") + b"ctorch._utils\n_rebuild_tensor_v2\n("
    p += b"(" + pstr("storage") + b"ctorch\nFloatStorage\n" + pstr("0") + pstr("cpu") + b"K\x01tQ"
    p += b"K\x00M\x00\x40M\x00\x80\x86K\x00K\x00\x86\x89ccollections\nOrderedDict\n)RtRs."
    stored_zip(os.path.join(d, "pytorch_model.bin"), [("archive/data.pkl", p), ("archive/data/0", b"\0" * 4)])

    d = os.path.join(out, "overlap")
    mamba_config(d)
    h = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}).encode()
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"\0" * 12)

    size = 20 << 30
    head = ("MECHSCOPE-SEAL-1\nlength %d\nsha256 %s\n" % (size, "0" * 64)).encode().ljust(USER_BLOCK, b"\0")
    with open(os.path.join(out, "sparse.h5"), "wb") as f:
        f.write(head + b"\x89HDF\r\n\x1a\n")
        f.truncate(size)

    rng = random.Random(1234)
    for folder, prefix, source, count in (("mutants", "m", demo, n_mutants), ("rmutants", "r", results, n_mutants // 3)):
        os.makedirs(os.path.join(out, folder), exist_ok=True)
        with open(source, "rb") as f:
            seed = f.read()[USER_BLOCK:]  # without its user block: an unsealed HDF5 file
        for i in range(count):
            m = bytearray(seed)
            for _ in range(rng.randint(1, 4)):
                m[rng.randrange(len(m))] ^= 1 << rng.randrange(8)
            with open(os.path.join(out, folder, "%s%03d.h5" % (prefix, i)), "wb") as f:
                f.write(m)


if __name__ == "__main__":
    main()
