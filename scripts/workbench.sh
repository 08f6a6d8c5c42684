#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, and opens the workbench on the bundled demo
# checkpoints. Without a display it says how to run it under Xvfb or use the command line instead.
# Extra arguments go to `mechscope` (e.g. --dark, or more checkpoints).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/packaging/install-deps.sh"
bash "$root/scripts/build.sh"
bin=${MECHSCOPE_BUILD_DIR:-$root/build}/bin
models=$root/resources/models
demos=("$models/mqar-attn.h5" "$models/mqar-attn4.h5" "$models/mqar-hybrid.h5" "$models/mqar-mamba2.h5" "$models/mqar-mamba1.h5")
if [ ! -x "$bin/mechscope" ]; then
  echo "the workbench was not built (Qt 6 or QCustomPlot missing?); the command-line tool is $bin/mechscope-cli" >&2
  exit 1
fi
if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ] && [ -z "${QT_QPA_PLATFORM:-}" ]; then
  cat <<MSG
No display here, so the workbench window cannot open. Either:
  - run it on a virtual display and keep screenshots of every panel:
      xvfb-run -a -s "-screen 0 1600x1000x24" $bin/mechscope ${demos[*]} --screenshots shots/
  - draw figures from results files without any display:
      $bin/mechscope-cli analyze patching -c ${demos[0]} --out p.h5 && $bin/mechscope --render p.h5 --out p.svg
  - or use the command-line tool, which does everything the workbench does:
      $bin/mechscope-cli analyze --help      (and: bash scripts/demo.sh for a tour)
MSG
  exit 0
fi
exec "$bin/mechscope" "${demos[@]}" "$@"
