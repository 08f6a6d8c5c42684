#!/usr/bin/env bash
# The bundled demo checkpoints load, describe themselves, and keep the accuracy the README table promises
# on fresh seeds (thresholds from the issue: attention and hybrid MQAR demos at least 99%).
# usage: test_demos.sh MECHSCOPE_CLI MODELS_DIR
set -uo pipefail
cli=$1; dir=$2
fail=0; pass=0
declare -A min=( [mqar-attn]=0.99 [mqar-attn4]=0.98 [mqar-hybrid]=0.99 [mqar-mamba2-d128]=0.98 [ar-attn]=0.99 [ar-mamba1]=0.99 [ar-mamba1-1layer]=0.99 [ar-mamba1-conv2]=0.99 [atr-mamba1]=0.9 [atr-attn]=0.65 [position-attn]=0.99 [position-hybrid]=0.9 [ngram-hybrid]=0.9 [kv-hybrid]=0.95 [copy-rotary]=0.95 [copy-hard-alibi]=0.95 [copy-mamba2]=0.9 )
for f in "$dir"/*.h5; do
  name=$(basename "$f" .h5)
  if ! "$cli" info "$f" > /dev/null; then echo "FAIL: info $name"; fail=$((fail+1)); continue; fi
  if [ -n "${min[$name]:-}" ]; then
    acc=$("$cli" eval --checkpoint "$f" --seed 777 --examples 256 | sed -n 's/^accuracy \([0-9.]*\).*/\1/p')
    if awk -v a="$acc" -v m="${min[$name]}" 'BEGIN { exit !(a >= m) }'; then pass=$((pass+1)); else
      echo "FAIL: $name accuracy $acc < ${min[$name]}"; fail=$((fail+1)); fi
  fi
  size=$(stat -c %s "$f")
  if [ "$size" -gt 5242880 ]; then echo "FAIL: $name is $size bytes (> 5 MiB)"; fail=$((fail+1)); else pass=$((pass+1)); fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
