#!/usr/bin/env bash
# The README's main command (until the workbench lands): installs what is missing, builds, then shows the
# command-line tool on a demo model: create, describe, run with hooks, benchmark.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/packaging/install-deps.sh"
bash "$root/scripts/build.sh"
cli=${MECHSCOPE_BUILD_DIR:-$root/build}/bin/mechscope-cli
out=${MECHSCOPE_DEMO_DIR:-$root/build/demo}
mkdir -p "$out"
set -x
"$cli" --version
"$cli" init --preset hybrid --seed 7 --out "$out/hybrid.h5" --force
"$cli" info "$out/hybrid.h5"
"$cli" forward --checkpoint "$out/hybrid.h5" --tokens "<bos> x7 x9 x11 x7" --hooks 'blocks.*.attn.hook_pattern,blocks.0.ssm.hook_pattern' \
  --out "$out/forward.h5" --force
"$cli" bench --checkpoint "$out/hybrid.h5" --batch 16 --seq 128 --repeat 5
