#!/usr/bin/env bash
# Import of foreign checkpoints (docs/import.md), end to end through mechscope-cli:
#  - native models written in mamba_ssm's and Hugging Face's layouts (torch.save of a module's state_dict, an
#    OrderedDict; safetensors; sharded safetensors; bfloat16) import to the same logits as the native model;
#  - a random Hugging Face Llama imports to the logits of a literal transcription of HF's Llama math;
#  - broken and foreign inputs fail with exit code 1 and a message naming what is wrong.
# usage: test_import.sh MECHSCOPE_CLI PYTHON WORKDIR
set -euo pipefail
cli=$1; py=$2; work=$3
here=$(cd "$(dirname "$0")" && pwd)
mk="$py $here/make_foreign.py"
perturb="$py $here/../reference/reference_forward.py --perturb"
rm -rf "$work"; mkdir -p "$work"
tokens=$(seq -s, 1 2 61),3,3,3,$(seq -s, 4 1 30)
fail=0

roundtrip() {  # name preset format weights dtype tol [--set ...]
  local name=$1 preset=$2 format=$3 weights=$4 dtype=$5 tol=$6; shift 6
  "$cli" init --preset "$preset" "$@" --seed 3 --out "$work/$name.h5" --force > /dev/null
  $perturb "$work/$name.h5" "$work/$name-p.h5" --seed 5
  $mk export "$work/$name-p.h5" "$work/$name" --format "$format" --weights "$weights" --dtype "$dtype" > /dev/null
  local out
  out=$("$cli" convert "$work/$name" -o "$work/$name-imported.h5")
  [[ "$out" == *"as $format"* ]] || { echo "FAIL $name: convert did not report the format: $out"; fail=1; }
  if [[ "$dtype" != float32 && "$out" != *"stored as $dtype"* ]]; then echo "FAIL $name: dtype not reported: $out"; fail=1; fi
  "$cli" forward -c "$work/$name-p.h5" --tokens "$tokens" --out "$work/$name-native.r.h5" --force --topk 0 > /dev/null
  "$cli" forward -c "$work/$name" --tokens "$tokens" --out "$work/$name-direct.r.h5" --force --topk 0 > /dev/null
  "$cli" forward -c "$work/$name-imported.h5" --tokens "$tokens" --out "$work/$name-conv.r.h5" --force --topk 0 > /dev/null
  echo -n "$name: "
  $mk compare "$work/$name-native.r.h5" "$work/$name-direct.r.h5" --tol "$tol" || { echo "FAIL $name (direct)"; fail=1; }
  $mk compare "$work/$name-direct.r.h5" "$work/$name-conv.r.h5" --tol 0 > /dev/null || { echo "FAIL $name (converted)"; fail=1; }
}

roundtrip ssm-hybrid-mlp hybrid mamba_ssm bin float32 0 --set d_intermediate=64
roundtrip ssm-mamba1 mamba1 mamba_ssm safetensors float32 0
roundtrip ssm-transformer-untied transformer mamba_ssm bin float32 0 --set tie_embeddings=false
roundtrip ssm-mamba2-bf16 mamba2 mamba_ssm safetensors bfloat16 1.5 --set ssm_cfg.chunk_size=16
roundtrip hf-mamba mamba1 hf-mamba safetensors float32 0
roundtrip hf-mamba-bin mamba1 hf-mamba bin float32 0 --set ssm_cfg.bias=true --set ssm_cfg.dt_rank=4
roundtrip hf-mamba2-sharded mamba2 hf-mamba2 sharded float32 0 --set ssm_cfg.ngroups=2 --set ssm_cfg.chunk_size=16
roundtrip hf-mamba2-limit mamba2 hf-mamba2 safetensors float32 0 --set 'ssm_cfg.dt_limit=[0.01, 0.5]' \
  --set tie_embeddings=false

# Hugging Face Llama against an independent transcription of its forward.
ltoks=3,1,4,1,5,9,2,6,5,3,5,8,9,7,9,3,2,3,8,4,6,2,6,4,3,3,8,3,2,7,9,5
for w in safetensors bin; do
  $mk llama "$work/llama-$w" --seed 7 --weights "$w" > /dev/null
  out=$("$cli" convert "$work/llama-$w" -o "$work/llama-$w.h5")
  [[ "$out" == *"padded with zero units"* && "$out" == *"tokenizer.json"* ]] || { echo "FAIL llama-$w notes: $out"; fail=1; }
  "$cli" forward -c "$work/llama-$w.h5" --tokens "$ltoks" --out "$work/llama-$w.r.h5" --force --topk 0 > /dev/null
  echo -n "llama-$w: "
  $mk llama-check "$work/llama-$w" "$work/llama-$w.r.h5" --tokens "$ltoks" --tol 1e-4 || { echo "FAIL llama-$w"; fail=1; }
done
# The tokenizer's strings are the vocabulary: tokens can be typed by name.
out=$("$cli" forward -c "$work/llama-safetensors" --tokens "<s> tok5 tok7" --topk 1)
[[ "$out" == *"tok7"* ]] || { echo "FAIL: tokenizer vocabulary not used: $out"; fail=1; }

# A task attached at conversion makes the imported model usable by analyses.
"$cli" init --preset mamba2 --set vocab_size=64 --seed 1 --out "$work/task.h5" --force > /dev/null
$mk export "$work/task.h5" "$work/task" --format mamba_ssm > /dev/null
"$cli" convert "$work/task" -o "$work/task-conv.h5" --task mqar --task-set vocab_size=64 > /dev/null
out=$("$cli" info "$work/task-conv.h5")
[[ "$out" == *'"task":"mqar"'* ]] || { echo "FAIL: task not attached: $out"; fail=1; }
out=$("$cli" eval -c "$work/task-conv.h5" --examples 16)
[[ "$out" == *accuracy* ]] || { echo "FAIL: eval of the converted model: $out"; fail=1; }
out=$("$cli" convert "$work/task" -o "$work/task-bad.h5" --task mqar --task-set vocab_size=32 2>&1) && { echo "FAIL: vocabulary mismatch accepted"; fail=1; }
[[ "$out" == *"vocabulary"* && ! -e "$work/task-bad.h5" ]] || { echo "FAIL: vocabulary mismatch message: $out"; fail=1; }

# Broken inputs: exit code 1 (not a crash) and the message names the problem; nothing is written.
mkdir -p "$work/bad"; cp -r "$work/ssm-mamba1" "$work/bad/good"
rm -f "$work/bad/good/model.safetensors"
$mk export "$work/ssm-mamba1-p.h5" "$work/bad/good" --format mamba_ssm --weights bin > /dev/null
$mk bad "$work/bad" > /dev/null
expect_error() {  # case substring
  local rc=0 out
  out=$("$cli" convert "$work/bad/$1" -o "$work/bad/$1.h5" 2>&1) || rc=$?
  if [[ $rc -ne 1 || "$out" != *"$2"* || -e "$work/bad/$1.h5" ]]; then
    echo "FAIL bad input $1: rc $rc, wanted a message with '$2': $out"; fail=1
  else echo "bad input $1: ${out:0:160}"; fi
}
expect_error t5 "model_type 't5'"
expect_error wrong-shape "has shape [64, 128], the config expects [64, 256]"
expect_error legacy "legacy (pre-1.6, non-zip)"
expect_error whole-module "torch.nn.modules.linear.Linear"
expect_error no-config "no config.json"
expect_error truncated "truncated"
expect_error extra-tensor "backbone.extra"
exit $fail
