#!/usr/bin/env bash
# Checkpoints are never half-written: writers are killed with SIGKILL at many moments, and afterwards the target
# path either does not exist, or holds the previous complete file, or the new complete one (each verified by
# `info`, which checks the SHA-256 seal), never a torn file.
#  1. training with a checkpoint every 2 steps, killed at increasing delays; then --resume finishes the run;
#  2. overwriting a complete 40 MB checkpoint (convert --force), killed mid-write: the old file survives intact.
# usage: test_kill_writer.sh MECHSCOPE_CLI WORKDIR
set -euo pipefail
cli=$1; work=$2
rm -rf "$work"; mkdir -p "$work"
fail=0

check_file() {  # path label: absent, or loads
  local p=$1 label=$2 out
  [[ -e "$p" ]] || return 0
  if ! out=$("$cli" info "$p" 2>&1); then echo "FAIL $label: torn file at $p: $out"; fail=1; return 1; fi
}

# 1. training, killed repeatedly
ck="$work/run.h5"
delays=(0.4 0.8 1.2 1.6 2.0 2.4 2.8 3.2)
for d in "${delays[@]}"; do
  if [[ -e "$ck" ]]; then
    "$cli" train --resume "$ck" --quiet > /dev/null 2>&1 & pid=$!
  else
    "$cli" train --preset mamba2 --set d_model=32 --set n_layer=2 --task mqar --task-set num_pairs=2 \
      --task-set seq_len=24 --train-set steps=400 --train-set checkpoint_every=2 --train-set eval_every=50 \
      --train-set batch=16 --out "$ck" --quiet > /dev/null 2>&1 & pid=$!
  fi
  sleep "$d"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  check_file "$ck" "train killed after ${d}s" || true
done
[[ -e "$ck" ]] || { echo "FAIL: no checkpoint was ever completed"; fail=1; }
out=$("$cli" train --resume "$ck" --quiet 2>&1) || { echo "FAIL: resume after the kills: $out"; fail=1; }
out=$("$cli" info "$ck")
[[ "$out" == *"training"* ]] || { echo "FAIL: final checkpoint lacks its history: $out"; fail=1; }
stale=$(ls "$work" | grep -c '\.tmp-' || true)
[[ "$stale" == 0 ]] || { echo "FAIL: $stale temporary file(s) of killed writers left after the next save"; fail=1; }
echo "training: killed ${#delays[@]} times, every checkpoint left behind loads, resume completed"

# 2. overwriting a large checkpoint, killed mid-write: the previous file must survive
"$cli" init --preset transformer --set d_model=512 --set n_layer=8 --set d_intermediate=1024 --seed 1 \
  --out "$work/big.h5" --force > /dev/null
cp "$work/big.h5" "$work/target.h5"
before=$(sha256sum "$work/target.h5" | cut -d' ' -f1)
"$cli" init --preset transformer --set d_model=512 --set n_layer=8 --set d_intermediate=1024 --seed 2 \
  --out "$work/big2.h5" --force > /dev/null
for d in 0.05 0.15 0.3 0.5 0.8; do
  "$cli" convert "$work/big2.h5" -o "$work/target.h5" --force > /dev/null 2>&1 & pid=$!
  sleep "$d"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  check_file "$work/target.h5" "convert killed after ${d}s" || true
  now=$(sha256sum "$work/target.h5" | cut -d' ' -f1)
  if [[ "$now" != "$before" ]]; then
    # the kill came after the rename: then it must be the complete new file
    "$cli" convert "$work/big2.h5" -o "$work/expected.h5" --force > /dev/null
    out=$("$cli" forward -c "$work/target.h5" --tokens 1,2,3 --topk 1)
    ref=$("$cli" forward -c "$work/expected.h5" --tokens 1,2,3 --topk 1)
    [[ "$out" == "$ref" ]] || { echo "FAIL: target is neither the old nor the new model"; fail=1; }
    cp "$work/big.h5" "$work/target.h5"
  fi
done
"$cli" convert "$work/big2.h5" -o "$work/target.h5" --force > /dev/null
stale=$(ls "$work" | grep -c '\.tmp-' || true)
[[ "$stale" == 0 ]] || { echo "FAIL: $stale temporary file(s) of killed writers left after the next save"; fail=1; }
echo "overwrite: killed 5 times mid-write, the target was always a complete file"
exit $fail
