#!/usr/bin/env bash
# Command-line behaviour as a user sees it: the README's example commands work, outputs have the documented
# layout, and mistakes give a non-zero exit with a message that says what was wrong.
# usage: test_cli.sh MECHSCOPE_CLI WORKDIR
set -uo pipefail
source "$(cd "$(dirname "$0")" && pwd)/checks.sh"  # ok, bad, expect_ok, expect_err, contains
cli=$1; work=$2
rm -rf "$work"; mkdir -p "$work"; cd "$work"

v=$("$cli" --version); contains "version" "BLAS" "$v"; contains "version" "threads" "$v"
for p in transformer mamba1 mamba2 hybrid parallel-hybrid; do
  expect_ok "init $p" "$cli" init --preset "$p" --seed 7 --out "$p.h5"
  expect_ok "info $p" "$cli" info "$p.h5"
done
i=$("$cli" info hybrid.h5 --hooks); contains "info --hooks" "blocks.1.attn.hook_pattern" "$i"; contains "info --hooks" "* blocks.0.ssm.hook_state" "$i"
contains "info layers" "layer 0      mamba2" "$i"
j=$("$cli" info mamba2.h5 --json); contains "info --json" '"parameters"' "$j"
fx=$(cd "$(dirname "$0")/../import/fixtures/hf5" && pwd)  # imported families whose layers differ in their MLP
i=$("$cli" info "$fx/jamba"); contains "info MoE layers" "4 attention heads (head_dim 4, 2 kv heads); MLP: 4 experts (top 2)" "$i"
contains "info dense layers" "; MLP: dense" "$i"
i=$("$cli" info "$fx/nemotron_h"); contains "info MLP-only layers" "layer 1      none       no mixer" "$i"; contains "info no-MLP layers" "; no MLP" "$i"
j=$("$cli" info "$fx/nemotron_h" --json); contains "info --json mlp" '"mlp": "none"' "$j"
# tokenize: the ids the tokenizers package gave for corpus line 1204 ("a", tests/text/fixtures/llama3.expected.jsonl:
# {"ids":[0,66]}, 0 its <|begin_of_text|>), back to text, as JSON; a model folder without tokenizer.json is told so.
tx=$(cd "$(dirname "$0")/../text/fixtures" && pwd)
t=$("$cli" tokenize --tokenizer "$tx/llama3.tokenizer.json" --text a); contains "tokenize" "0,66" "$t"
t=$("$cli" tokenize --tokenizer "$tx/llama3.tokenizer.json" --text a --no-special); contains "tokenize --no-special" "66" "$t"
t=$("$cli" tokenize --tokenizer "$tx/llama3.tokenizer.json" --decode 0,66 --keep-special); contains "tokenize --decode" "<|begin_of_text|>a" "$t"
t=$("$cli" tokenize --tokenizer "$tx/llama3.tokenizer.json" --text a --json); contains "tokenize --json" '"token": "<|begin_of_text|>"' "$t"
contains "tokenize --json exact" '"exact": true' "$t"
# Llama 2's normalizer (Prepend, Replace) leaves no token characters of its own: said per token.
t=$("$cli" tokenize --tokenizer "$tx/llama2.tokenizer.json" --text "ab cd" --json); contains "tokenize --json not exact" '"exact": false' "$t"
expect_err "tokenize without tokenizer.json" "no tokenizer.json" "$cli" tokenize -c "$fx/jamba" --text a
# --text through a model's own tokenizer.json: a hand-made BPE whose one merge makes "ab a" ids 2,3,0 (ab, space, a).
mkdir -p tkm && cp "$fx/llama_theta500k"/* tkm/
printf '%s' '{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2," ":3},"merges":["a b"]}}' > tkm/tokenizer.json
t=$("$cli" tokenize -c tkm --text "ab a"); contains "tokenize -c" "2,3,0" "$t"
f=$("$cli" forward -c tkm --text "ab a" --all-positions); contains "forward --text" "pos 0 ab ->" "$f"; contains "forward --text" "pos 2 a ->" "$f"
printf 'ab a' > tkm.txt
f=$("$cli" forward -c tkm --text-file tkm.txt --all-positions); contains "forward --text-file" "pos 1   ->" "$f"
expect_err "forward --text and --tokens" "exactly one of" "$cli" forward -c tkm --text a --tokens 1
# A prompt dataset through ablation (the batch's rows: tests/core/text/test_dataset.cpp); patching refuses a
# dataset whose corruptions do not move this random model's answer, saying so.
mkdir -p dsm && cp "$fx/llama_theta500k"/* dsm/
printf '%s' '{"model":{"type":"BPE","vocab":{"a":0,"b":1,"c":2,"d":3,"e":4,"f":5,"g":6,"h":7,"i":8,"j":9," ":10,"ab":11},"merges":["a b"]}}' > dsm/tokenizer.json
printf '%s\n' '{"clean": "abc de", "corrupted": "abc df", "answer": " a"}' '{"clean": [1, 2, 3], "corrupted": [1, 2, 4], "answer": [5]}' > ds.jsonl
a=$("$cli" analyze ablation -c dsm --dataset ds.jsonl --out dsa.h5); contains "ablation --dataset" "heads zero-ablated one at a time" "$a"
expect_err "patching --dataset, no effect" "the corruption does not change the answer" "$cli" analyze patching -c dsm --dataset ds.jsonl
expect_err "--dataset with --text" "--dataset replaces the task" "$cli" analyze ablation -c dsm --dataset ds.jsonl --text a
printf '%s\n' '{"clean": "abc de", "answer": " a"}' '{"clean": "ab", "corrupted": "abc", "answer": "c"}' > ds2.jsonl
expect_err "dataset lengths differ" "line 2: the clean prompt has 1 tokens and the corrupted one 2" "$cli" analyze ablation -c dsm --dataset ds2.jsonl
# kv-text (P4's dictionary prompts through resources/text/kv-tokenizer.json, where "apple" ":" "42" are ids 809, 25,
# 437): the trained checkpoint carries its tokenizer (tokenize -c, forward --text); make-dataset writes the same
# prompts for any tokenizer; ga-discovery reads them as a multiple choice.
kvt=$(cd "$(dirname "$0")/../../resources/text" && pwd)/kv-tokenizer.json
expect_ok "train kv-text" "$cli" train --preset hybrid --set d_model=32 --set n_layer=2 --set attn_cfg.rotary_emb_dim=8 --task kv-text --task-set tokenizer="$kvt" --task-set min_pairs=2 --task-set max_pairs=6 --train-set steps=3 --train-set eval_every=3 --train-set eval_examples=16 --out kv.h5
t=$("$cli" tokenize -c kv.h5 --text "apple:42"); contains "tokenize a kv-text checkpoint" "809,25,437" "$t"
i=$("$cli" info kv.h5); contains "info kv-text" '"tokenizer":"tokenizer.json (1082 entries' "$i"
expect_ok "forward --text on kv-text" "$cli" forward -c kv.h5 --text "apple:42"
m=$("$cli" make-dataset kv-retrieval --tokenizer "$kvt" -n 6 --min-pairs 2 --max-pairs 6 --seed 3 --out kv.jsonl); contains "make-dataset" "wrote 6 kv-retrieval prompts" "$m"
l=$(head -1 kv.jsonl); contains "make-dataset line" '"clean":"Memorize the following dictionary:\n' "$l"; contains "make-dataset choices" '"choices":[' "$l"
g=$("$cli" analyze ga-discovery -c kv.h5 --dataset kv.jsonl --csv ga.csv); contains "ga-discovery --dataset" "multiple choice" "$g"
contains "ga-discovery pruning" "layer pruning" "$g"; contains "ga-discovery csv" "head,causal,causal_rank,gather,aggregate" "$(head -1 ga.csv)"
g=$("$cli" analyze ga-discovery -c kv.h5 -n 8); contains "ga-discovery on the task" "rank  head" "$g"
# generate: the caches' continuation is the full forward's (core/model/generate.h); --stop-text must be one token
g1=$("$cli" generate -c kv.h5 --text "apple:42" --max-new 6 --json 2>/dev/null | tr -d ' \n'); g2=$("$cli" generate -c kv.h5 --text "apple:42" --max-new 6 --json --reference 2>/dev/null | tr -d ' \n')
contains "generate ids" '"ids":[' "$g1"; i1=${g1#*\"ids\":}; i2=${g2#*\"ids\":}
[ "${i1%%\"ms\"*}" == "${i2%%\"ms\"*}" ] && ok || bad "generate: caches and reference differ :: $g1 :: $g2"
expect_err "generate --stop-text of two tokens" "it must be one" "$cli" generate -c kv.h5 --text "apple" --stop-text "apple:"
expect_err "generate without a prompt" "exactly one of" "$cli" generate -c kv.h5
# score: line by line (core/text/scoring.h), the summary and a CSV row per line
s=$("$cli" score -c kv.h5 --dataset kv.jsonl --by choice); contains "score --by choice" "multiple-choice accuracy" "$s"
s=$("$cli" score -c kv.h5 --dataset kv.jsonl --by logprob -n 2 --csv sc.csv); contains "score --by logprob" "on 2 lines" "$s"
contains "score csv" "line,logprob,correct,chosen,generated" "$(head -1 sc.csv)"
m=$("$cli" make-dataset phone-book -n 2 --min-entries 3 --max-entries 5 --out pb.jsonl); contains "make-dataset phone-book" "wrote 2 phone-book prompts" "$m"
s=$("$cli" score -c kv.h5 --dataset pb.jsonl --by generation --max-new 4); contains "score --by generation" "exact match" "$s"
expect_err "score --by bogus" "not a way of scoring" "$cli" score -c kv.h5 --dataset pb.jsonl --by bleu
expect_err "score --by choice without choices" "has no \"choices\"" "$cli" score -c kv.h5 --dataset pb.jsonl --by choice
expect_err "make-dataset refuses its own output" "exists" "$cli" make-dataset kv-retrieval --tokenizer "$kvt" --out kv.jsonl
expect_err "make-dataset, too many pairs for digits" "lower max_pairs" "$cli" make-dataset kv-retrieval --tokenizer "$tx/llama2.tokenizer.json" --out kvd.jsonl
expect_err "kv-text without tokenizer" "needs \"tokenizer\"" "$cli" train --preset transformer --task kv-text --out kvx.h5
cp "$tx/gpt2.tokenizer.json" tkm/tokenizer.json
expect_err "a tokenizer of another model" "does not belong to this model" "$cli" forward -c tkm --text "hello world"
# The README's example: logits [pos, vocab] from token ids.
f=$("$cli" forward --checkpoint mamba2.h5 --tokens 5,9,2 --out out.h5); contains "forward" "logits [3, 64]" "$f"
contains "forward topk" "pos 2" "$f"
f=$("$cli" forward -c transformer.h5 --tokens "<bos> x7 x9" --hooks 'blocks.*.attn.hook_pattern,hook_embed' --out hooks.h5)
contains "forward hooks" "3 hook tensor(s)" "$f"
expect_ok "forward bfloat16" "$cli" forward -c hybrid.h5 --tokens 1,2,3,4 --dtype bfloat16
expect_ok "init from config + set" "$cli" init --config <(echo '{"model_config": {"d_model": 16, "n_layer": 1, "vocab_size": 10}}') --set ssm_cfg.d_state=4 --out cfg.h5
expect_ok "bench" "$cli" bench --preset mamba1 --batch 2 --seq 16 --repeat 2

# Training, evaluation, interrupt and resume.
expect_ok "train" "$cli" train --preset transformer --set d_model=32 --set attn_cfg.rotary_emb_dim=8 --task ar \
  --task-set num_pairs=3 --task-set num_keys=8 --task-set num_values=8 --train-set steps=30 --train-set batch=8 \
  --train-set eval_every=10 --train-set eval_examples=32 --seed 7 --out ar.h5 --quiet
e=$("$cli" info -c ar.h5); contains "info records the initialisation seed" '"init_seed":7' "$e"
expect_err "init_seed as a training setting" "give --seed" "$cli" train --preset mamba1 --task ar --train-set init_seed=3 --out x.h5
expect_err "init_seed as a setting of a resume" "give --seed" "$cli" train --resume ar.h5 --train-set init_seed=3
e=$("$cli" eval --checkpoint ar.h5 --seed 11 --examples 64); contains "eval" "accuracy " "$e"
e=$("$cli" forward --checkpoint ar.h5 --example 2 --topk 1); contains "forward --example" "(target v" "$e"
expect_err "forward --example on a bare model" "no task_config" "$cli" forward -c mamba1.h5 --example 1
e=$("$cli" eval -c ar.h5 --seeds 1,2,3 --examples 32); contains "eval seeds" "95% interval over 3 seeds" "$e"
expect_ok "eval sweep" "$cli" eval -c ar.h5 --sweep num_pairs=2,3,4 --examples 32 --csv sweep.csv
[ "$(wc -l < sweep.csv)" -eq 4 ] && ok || bad "sweep csv rows: $(cat sweep.csv)"
expect_err "eval vocabulary change" "vocabulary" "$cli" eval -c ar.h5 --task-set num_keys=9
# eval --by-answer: each example's 1st, 2nd, ... answer. An MQAR example has num_pairs answers, so (one seed) the
# overall accuracy is the mean of the per-answer ones. layout=zoology is kept in the task's config; the default is not.
"$cli" train --preset mamba2 --set d_model=32 --task mqar --task-set vocab_size=64 --task-set seq_len=32 \
  --task-set num_pairs=4 --task-set layout=zoology --train-set steps=20 --train-set batch=8 --train-set eval_every=10 \
  --train-set eval_examples=32 --out mqz.h5 --quiet > /dev/null
e=$("$cli" info -c mqz.h5); contains "mqar layout kept" '"layout":"zoology"' "$e"
expect_ok "eval --by-answer" "$cli" eval -c mqz.h5 --by-answer --examples 200 --csv byans.csv
[ "$(wc -l < byans.csv)" -eq 6 ] && [ "$(head -1 byans.csv | cut -d, -f1)" = answer ] && ok || bad "by-answer rows: $(cat byans.csv)"
awk -F, 'NR == 2 {all = $4} NR > 2 {s += $4; n++} END {d = all - s / n; exit !(n == 4 && d < 1e-9 && d > -1e-9)}' \
  byans.csv && ok || bad "by-answer mean != overall: $(cat byans.csv)"
expect_err "mqar layout unknown" "expected one of shown, zoology" "$cli" eval -c mqz.h5 --task-set layout=bogus
e=$("$cli" eval -c mqz.h5 --task-set layout=shown --examples 8); contains "eval in the shown layout" "accuracy " "$e"
# several --sweep options vary together: point i sets each parameter to its i-th value
expect_ok "eval zipped sweeps" "$cli" eval -c mqz.h5 --sweep num_pairs=2,4 --sweep min_pairs=1,4 --examples 16 --csv zip.csv
[ "$(cut -d, -f1-2 zip.csv | tr '\n' ' ')" = "num_pairs,min_pairs 2,1 4,4 " ] && ok || bad "zipped sweep csv: $(cat zip.csv)"
expect_err "zipped sweeps of unequal lengths" "need as many values each" "$cli" eval -c mqz.h5 --sweep num_pairs=2,4 --sweep min_pairs=1
expect_err "a parameter swept twice" "swept twice" "$cli" eval -c mqz.h5 --sweep num_pairs=2 --sweep num_pairs=4

# Analyses and sweeps: results files, CSV, verify, and their mistakes.
for a in attention head-scores ablation dla logit-lens; do
  expect_ok "analyze $a" "$cli" analyze "$a" -c ar.h5 -n 8 --out "an-$a.h5" --quiet
done
expect_ok "analyze ablation csv" "$cli" analyze ablation -c ar.h5 -n 8 --ablation mean --csv abl.csv --quiet
head -1 abl.csv | grep -q '^head,prob,logit_diff,accuracy,kl$' && ok || bad "ablation csv header: $(head -1 abl.csv)"
[ "$(wc -l < abl.csv)" -eq 9 ] && ok || bad "ablation csv rows (8 heads): $(cat abl.csv)"
a=$("$cli" analyze ablation -c ar.h5 -n 8 --heads L1.attn.H0 --ablation resample); contains "ablate a set" "after resample-ablating L1.attn.H0" "$a"
a=$("$cli" analyze ablation -c ar.h5 -n 8 --heads L1.attn.H0-2,L0.attn.H1); contains "ablate a range" "after zero-ablating L0.attn.H1+L1.attn.H0-2" "$a"
# A set of heads writes --out and --csv (one value per metric, before and after), and its "after" is the sweep's row
# for the same head on the same examples.
expect_ok "ablate a set to files" "$cli" analyze ablation -c ar.h5 -n 8 --heads L1.attn.H0 --out set.h5 --csv set.csv --quiet
head -1 set.csv | grep -q '^metric,before,after$' && ok || bad "ablation set csv header: $(head -1 set.csv)"
"$cli" analyze ablation -c ar.h5 -n 8 --csv sweep0.csv --quiet > /dev/null
set_acc=$(awk -F, '$1 == "accuracy" {print $3}' set.csv); sweep_acc=$(awk -F, '$1 == "L1.attn.H0" {print $4}' sweep0.csv)
[[ -n "$set_acc" && "$set_acc" == "$sweep_acc" ]] && ok || bad "ablation set after ($set_acc) != the sweep's L1.attn.H0 ($sweep_acc)"
expect_ok "channel groups" "$cli" analyze ablation -c "$(dirname "$0")/../../resources/models/mqar-mamba1.h5" -n 4 --channel-group 32 --csv grp.csv --quiet
[ "$(wc -l < grp.csv)" -eq 9 ] && grep -q '^L1.ssm.H96-127,' grp.csv && ok || bad "channel-group csv (2 layers x 4 groups): $(cat grp.csv)"
a=$("$cli" analyze knockout -c ar.h5 -n 8 --layer 1 --last-row); contains "knockout" "after knockout" "$a"
a=$("$cli" analyze patching -c ar.h5 -n 16 --site resid_pre --corrupt key --keep-threshold -1 --csv pat.csv --out pat.h5 2>&1)
contains "patching" "cells in" "$a"
head -1 pat.csv | grep -q '^row\\pos,0:<bos>' && ok || bad "patching csv header: $(head -1 pat.csv)"
contains "patching aligned table" "corrupted+1" "$a"
expect_ok "aligned csv" "$cli" analyze patching -c ar.h5 -n 16 --keep-threshold -1 --aligned-csv al.csv --quiet
head -1 al.csv | grep -q '^row\\anchor,corrupted-1,corrupted,corrupted+1,corrupted+2,corrupted+3,readout$' && \
  [ "$(wc -l < al.csv)" -eq 3 ] && ok || bad "aligned csv: $(cat al.csv)"
expect_err "aligned csv of another analysis" "only patching and attribution" "$cli" analyze dla -c ar.h5 --aligned-csv x.csv
a=$("$cli" analyze attribution -c ar.h5 -n 16 --site mixer_out --keep-threshold -1 --compare 2>&1)
contains "attribution" "correlation with exact patching" "$a"
a=$("$cli" analyze attention -c ar.h5 --tokens "<bos>,k1,v2,k3,v4,k1" --layer 1 --head 0 --csv att.csv); contains "attention" "L1 attn" "$a"
[ "$(wc -l < att.csv)" -eq 7 ] && ok || bad "attention csv rows: $(cat att.csv)"
a=$("$cli" analyze embeddings -c ar.h5 --ids 5,6,7,8,9,10,11,12 --k 2); contains "embeddings" "locality (k = 2)" "$a"
v=$("$cli" verify ar.h5); contains "verify" "verify: PASS" "$v"
v=$("$cli" verify mamba1.h5 --examples 2); contains "verify bare model" "verify: PASS" "$v"
expect_err "unknown analysis" "did you mean patching" "$cli" analyze patchin -c ar.h5
# Plugins: the in-tree ones load from the build tree; a broken one on MECHSCOPE_PLUGIN_PATH is reported and skipped.
p=$("$cli" plugins); contains "plugins" "provides task phonebook" "$p"; contains "plugins" "attention-rollout" "$p"
echo "not a library" > broken.so
p=$(MECHSCOPE_PLUGIN_PATH=$PWD/broken.so:/nonexistent "$cli" plugins 2>&1); contains "broken plugin" "FAILED  $PWD/broken.so" "$p"
contains "missing plugin folder" "no such file or folder" "$p"
p=$(MECHSCOPE_PLUGIN_PATH=$PWD/broken.so "$cli" info ar.h5 2>&1); contains "broken plugin warning" "warning: plugin $PWD/broken.so skipped" "$p"
expect_ok "plugin analysis" "$cli" analyze attention-rollout -c ar.h5 --option example=2 --csv roll.csv
head -1 roll.csv | grep -q '^q_pos\\k_pos,<bos>' && ok || bad "rollout csv: $(head -1 roll.csv)"
expect_ok "train a plugin task" "$cli" train --preset transformer --set d_model=32 --set attn_cfg.rotary_emb_dim=8 --task phonebook \
  --task-set num_entries=3 --train-set steps=5 --train-set batch=4 --train-set eval_every=5 --train-set eval_examples=8 --out pb.h5 --quiet
expect_err "unknown site" "did you mean resid_pre" "$cli" analyze patching -c ar.h5 --site resid_pr
expect_err "bad head" "expected L<layer>.<mixer>.H<head> with a mixer of this model (attn), e.g. L0.attn.H0" "$cli" analyze ablation -c ar.h5 --heads first
expect_err "head out of range" "has 4 heads" "$cli" analyze ablation -c ar.h5 --heads L1.attn.H9
expect_err "bad ablation" "zero, mean or resample" "$cli" analyze ablation -c ar.h5 --ablation median
expect_err "analysis needs a task" "no task_config" "$cli" analyze ablation -c mamba1.h5
expect_err "state attribution" "exact-only" "$cli" analyze attribution -c ar.h5 --site state
expect_err "analyze output exists" "--force" "$cli" analyze dla -c ar.h5 --out an-dla.h5
expect_err "csv of a 3-d result" "choose one map" "$cli" analyze attention -c ar.h5 --csv x.csv
[ -f x.csv ] && bad "a failed analysis left x.csv" || ok
"$cli" train --preset mamba1 --set d_model=32 --task ar --task-set num_pairs=3 --task-set num_keys=8 --task-set num_values=8 \
  --train-set steps=100000 --train-set batch=4 --train-set eval_every=5 --train-set eval_examples=8 --out long.h5 --quiet \
  > long.log 2>&1 &
pid=$!
for _ in $(seq 1 100); do [ -f long.h5 ] && break; sleep 0.2; done
sleep 1; kill -INT $pid; wait $pid; rc=$?
[ "$rc" -eq 130 ] && ok || bad "Ctrl-C exit code $rc :: $(cat long.log)"
contains "Ctrl-C" "interrupted at step" "$(cat long.log)"
done_steps=$(sed -n 's/.*interrupted at step \([0-9]*\).*/\1/p' long.log)
r=$("$cli" train --resume long.h5 --train-set steps=$((done_steps + 20)) --quiet 2>&1)
contains "resume" "finished at step $((done_steps + 20))" "$r"
expect_err "resume past the end" "raise steps" "$cli" train --resume long.h5 --train-set steps=10
expect_err "train without task" "--task" "$cli" train --preset mamba1 --out x.h5
expect_err "unknown task" "mqar" "$cli" train --preset mamba1 --task mqr --out x.h5
expect_err "resume a bare model" "no training run" "$cli" train --resume mamba1.h5

# Mistakes.
expect_err "unknown preset" "parallel-hybrid" "$cli" init --preset mamba3 --out x.h5
expect_err "no preset or config" "exactly one of --preset" "$cli" init --out x.h5
expect_err "bad --set" "expected key=value" "$cli" init --preset mamba1 --set d_model --out x.h5
expect_err "bad config value" "num_heads" "$cli" init --preset transformer --set attn_cfg.num_heads=3 --out x.h5
expect_err "overwrite" "--force" "$cli" init --preset mamba1 --out mamba1.h5
expect_err "missing checkpoint" "no such file" "$cli" info nothere.h5
echo "not hdf5" > text.h5
expect_err "not hdf5" "not an HDF5 file" "$cli" forward -c text.h5 --tokens 1
expect_err "unknown hook" "blocks.0.attn.hook_pattern" "$cli" forward -c transformer.h5 --tokens 1,2 --hooks blocks.0.attn.hook_patern
expect_err "hook pattern no match" "matches no hook" "$cli" forward -c transformer.h5 --tokens 1,2 --hooks 'blocks.*.ssm.hook_x'
expect_err "unknown token" "<bos>" "$cli" forward -c transformer.h5 --tokens "<bso>,3"
expect_err "token out of range" "outside the vocabulary" "$cli" forward -c transformer.h5 --tokens 1,999
expect_err "no tokens" "exactly one of --tokens" "$cli" forward -c transformer.h5
expect_err "bad device" "cpu or cuda" "$cli" forward -c transformer.h5 --tokens 1 --device tpu
expect_err "output exists" "--force" "$cli" forward -c transformer.h5 --tokens 1 --out out.h5
ls ./*.tmp-* > /dev/null 2>&1 && bad "temporary files left behind"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
