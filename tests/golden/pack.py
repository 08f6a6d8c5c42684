#!/usr/bin/env python3
"""Packs the outputs of tests/equivalence/outputs.sh (one build's) into one small results file per demo checkpoint,
tests/golden/<demo>.h5, which tests/demo/test_golden.cpp compares the current build against with tolerances.

Kept per demo: the logits of task example 3 and the tables of the analyses test_golden.cpp reruns (ablation sweep,
residual patching, attribution with its exact comparison, head scores, attention maps of example 3, DLA, logit lens,
knockout of layer 1's last row, embeddings where the model has position rows), each as <tag>/<tensor>.

usage: pack.py OUTPUTS_DIR MODELS_DIR GOLDEN_DIR SOURCE_DESCRIPTION   (Debian's python3 with h5py and numpy)
"""
import json
import os
import sys

import h5py
import numpy as np

TAGS = ["forward", "ablation", "patching-resid_pre", "attribution", "head-scores", "attention", "dla", "logit-lens",
        "knockout-L1", "embeddings"]


def main():
    if len(sys.argv) != 5:
        print(__doc__)
        return 2
    outputs, models, golden, source = sys.argv[1:]
    os.makedirs(golden, exist_ok=True)
    for f in sorted(os.listdir(models)):
        if not f.endswith(".h5"):
            continue
        demo = f[:-3]
        path = os.path.join(golden, demo + ".h5")
        with h5py.File(path + ".tmp", "w") as out:
            out.attrs["format"] = "mechscope-results"
            out.attrs["format_version"] = np.int64(1)
            out.attrs["kind"] = "golden"
            out.attrs["provenance"] = json.dumps({"source": source, "demo": demo, "examples": 32, "seed": 0,
                                                  "made_by": "tests/golden/record.sh"})
            for tag in TAGS:
                src = os.path.join(outputs, f"{demo}.{tag}.h5")
                if not os.path.exists(src):
                    continue  # the command failed for this demo (e.g. embeddings without position rows)
                with h5py.File(src, "r") as r:
                    items = {}
                    r.visititems(lambda k, v: items.__setitem__(k, v) if isinstance(v, h5py.Dataset) else None)
                    for name, ds in sorted(items.items()):
                        if name.startswith("inputs/") or (tag == "forward" and name != "logits"):
                            continue
                        data = ds[()]
                        if data.dtype.kind == "f":
                            data = data.astype(np.float32)
                        out.create_dataset(f"{tag}/{name}", data=data, compression="gzip", compression_opts=9,
                                           shuffle=True)
        os.replace(path + ".tmp", path)
        print(f"{path}: {os.path.getsize(path)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
