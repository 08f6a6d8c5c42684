#!/usr/bin/env bash
# A user's session under Xvfb at 1920 x 1080 and at 1280 x 800 (`mechscope --journey`, docs/gui.md): open two MQAR
# demos, the kv-text demo (its tokenizer) and an imported Hugging Face folder (no task), ablate a head, look at the
# attention map under the ablation, run a patching sweep and click a cell, compare the models, export every figure
# (PNG, PDF, SVG, CSV), type text and tokens, save the workspace and open it in a second window. Each step's
# window goes to DIR/<size>/NN-step.png (default DIR: build/screenshots), with the figures under figures/; then the
# per-panel screenshots of the older --screenshots mode at 1700 x 1000 in DIR/panels.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build/screenshots}
bin=${MECHSCOPE_BUILD_DIR:-$root/build}/bin
models=$root/resources/models
imported=$root/tests/import/fixtures/hf5/llama_theta500k
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
status=0
for size in 1920x1080 1280x800; do
  echo "== $size"
  xvfb-run -a -s "-screen 0 ${size}x24" "$bin/mechscope" "$models/mqar-hybrid.h5" "$models/mqar-attn.h5" \
    "$models/kv-hybrid.h5" "$imported" --journey "$out/$size" || status=1
done
xvfb-run -a -s "-screen 0 1700x1000x24" "$bin/mechscope" "$models/mqar-attn.h5" "$models/mqar-hybrid.h5" \
  --screenshots "$out/panels" "${@:2}" || status=1
exit $status
