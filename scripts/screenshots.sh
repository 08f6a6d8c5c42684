#!/usr/bin/env bash
# Screenshots of the workbench with each panel showing, under Xvfb, into DIR (default build/screenshots):
# window.png and panel-<name>.png, with the attention and hybrid demos loaded and a patching sweep run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build/screenshots}
bin=${MECHSCOPE_BUILD_DIR:-$root/build}/bin
models=$root/resources/models
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
xvfb-run -a -s "-screen 0 1700x1000x24" "$bin/mechscope" "$models/mqar-attn.h5" "$models/mqar-hybrid.h5" \
  --screenshots "$out" "${@:2}"
ls "$out"
