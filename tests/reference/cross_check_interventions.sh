#!/usr/bin/env bash
# Cross-checks `mechscope-cli analyze ablation | patching` on the demo checkpoints against the literal Python
# reference (reference_interventions.py): zero-ablation by zeroing out_proj columns, and block-input patching
# with the reference forward, one example at a time (and the patching score aligned to each example's corruption,
# rebuilt from the reference's per-example scores).
# usage: cross_check_interventions.sh MECHSCOPE_CLI PYTHON MODELS_DIR WORKDIR
set -euo pipefail
cli=$1; py=$2; models=$3; work=$4
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work"
fail=0
for m in mqar-attn mqar-attn4 mqar-hybrid mqar-mamba1 mqar-mamba2 ar-attn; do
  "$cli" analyze ablation -c "$models/$m.h5" -n 6 --seed 3 --out "$work/abl-$m.h5" --force --quiet > /dev/null
  "$py" "$here/reference_interventions.py" ablation "$models/$m.h5" "$work/abl-$m.h5" | tail -1 || { echo "MISMATCH: ablation $m"; fail=1; }
done
for m in mqar-attn mqar-attn4 mqar-hybrid ar-attn; do
  "$cli" analyze patching -c "$models/$m.h5" -n 3 --seed 4 --out "$work/pat-$m.h5" --force --quiet > /dev/null
  "$py" "$here/reference_interventions.py" patching "$models/$m.h5" "$work/pat-$m.h5" | tail -1 || { echo "MISMATCH: patching $m"; fail=1; }
done
exit $fail
