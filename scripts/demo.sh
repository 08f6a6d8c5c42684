#!/usr/bin/env bash
# A tour of the command-line tool (README): installs what is missing, builds, then on the bundled demo
# checkpoints: describe, evaluate, run with hooks, locate the retrieval (patching aligned to the corrupted key,
# head scores), benchmark.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/packaging/install-deps.sh"
bash "$root/scripts/build.sh"
cli=${MECHSCOPE_BUILD_DIR:-$root/build}/bin/mechscope-cli
models=$root/resources/models
out=${MECHSCOPE_DEMO_DIR:-$root/build/demo}
mkdir -p "$out"
set -x
"$cli" --version
"$cli" info "$models/mqar-hybrid.h5"
for m in "$models"/*.h5; do "$cli" eval --checkpoint "$m" --seeds 1,2,3 --examples 256; done
"$cli" forward --checkpoint "$models/mqar-hybrid.h5" --example 3 --topk 3 \
  --hooks 'blocks.1.attn.hook_pattern,blocks.0.ssm.hook_pattern' --out "$out/forward.h5" --force
"$cli" analyze patching --checkpoint "$models/mqar-hybrid.h5" --out "$out/patching.h5" --force --quiet
"$cli" analyze head-scores --checkpoint "$models/mqar-hybrid.h5" --quiet
"$cli" bench --checkpoint "$models/mqar-hybrid.h5" --batch 16 --seq 64 --repeat 5
