#!/usr/bin/env bash
# Reproduces the demo checkpoints in resources/models/ with the project's own `train` command, then
# measures each on fresh seeds with `eval`. Each run is capped at 30 minutes on the 2-core machine.
# usage: resources/make-demos.sh [NAME ...]   (default: every demo; build first with scripts/build.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cli=${MECHSCOPE_CLI:-$root/build/bin/mechscope-cli}
out=$root/resources/models
mkdir -p "$out"

# name | model | task | training
demos=(
  "ar-attn|--preset transformer --set d_model=64 --set d_intermediate=0 --set attn_cfg.rotary_emb_dim=16|--task ar --task-set num_keys=64 --task-set num_values=64 --task-set num_pairs=8|--train-set steps=40000 --train-set batch=32 --train-set lr=1e-3 --train-set warmup=0.01 --train-set eval_every=500 --train-set target_accuracy=0.995"
)

want=("$@")
for entry in "${demos[@]}"; do
  IFS='|' read -r name model task train <<< "$entry"
  if [ ${#want[@]} -gt 0 ] && [[ ! " ${want[*]} " == *" $name "* ]]; then continue; fi
  echo "== $name"
  # shellcheck disable=SC2086
  timeout 1800 "$cli" train $model $task $train --seed 1 --out "$out/$name.h5" --force || true
  "$cli" eval --checkpoint "$out/$name.h5" --seeds 101,102,103 --examples 512
done
