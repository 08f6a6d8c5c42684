#!/usr/bin/env bash
# Every output a redesign must leave unchanged, written by one mechscope-cli build into a folder: each demo's
# logits and hooks, every `analyze` table (ablation zero/mean/resample, batched and plain, channel groups and sets;
# patching at every site, batched and plain; attribution with its exact comparison; head scores; attention maps;
# embeddings; knockout; DLA; logit lens), verify and eval, plus models trained here for the architectures the demos
# lack (parallel hybrid, MLP, learned positions, Mamba1 hybrid). scripts/equivalence.sh runs it with two builds and
# compares the folders (compare.py). Exit codes and messages are outputs too: a failing command is recorded.
# usage: outputs.sh MECHSCOPE_CLI MODELS_DIR OUT_DIR [quick]
set -uo pipefail
cli=$(realpath "$1"); models=$(realpath "$2"); out=$3; quick=${4:-}
mkdir -p "$out"
cd "$out"
rm -f ./*.h5 ./*.log ./*.csv  # a fresh run (outputs are never overwritten by the commands)
export MECHSCOPE_NUM_THREADS=${MECHSCOPE_NUM_THREADS:-2}
n=32

# run NAME ARGS...: the command's output to NAME.log, its exit code on the log's last line.
run() {
  local name=$1; shift
  "$cli" "$@" > "$name.log" 2>&1
  echo "exit $?" >> "$name.log"
}

# Models trained here (each build trains its own: training is an output too). Short runs: the point is the bits.
train() {
  local name=$1; shift
  run "train-$name" train "$@" --task mqar --task-set vocab_size=64 --task-set seq_len=32 --task-set num_pairs=4 \
    --train-set steps=40 --train-set eval_every=20 --train-set batch_size=16 --seed 3 --quiet --out "$name.h5"
}
train parallel --preset parallel-hybrid --set d_model=32
train mlp --preset transformer --set d_model=32 --set d_intermediate=64 --set attn_cfg.num_heads=2 \
  --set attn_cfg.num_heads_kv=1 --set tie_embeddings=false
train learned --preset transformer --set d_model=32 --set pos_emb=learned --set max_seq_len=32 \
  --set attn_cfg.rotary_emb_dim=0 --set rms_norm=false
train m1hybrid --preset hybrid --set ssm_cfg.layer=Mamba1 --set d_model=32 --set d_intermediate=32

ckpts=()
for f in "$models"/*.h5; do ckpts+=("$f"); done
ckpts+=(parallel.h5 mlp.h5 learned.h5 m1hybrid.h5)
[ "$quick" = quick ] && ckpts=("$models/mqar-hybrid.h5" "$models/mqar-mamba1.h5" parallel.h5)

for c in "${ckpts[@]}"; do
  m=$(basename "$c" .h5)
  run "$m.info" info "$c" --hooks
  run "$m.forward" forward -c "$c" --example 3 --hooks all --all-positions --out "$m.forward.h5"
  run "$m.verify" verify -c "$c" --examples 8
  run "$m.eval" eval -c "$c" --seeds 5 --examples 64
  a() { local tag=$1; shift; run "$m.$tag" analyze "$@" -c "$c" -n $n --quiet --out "$m.$tag.h5"; }
  a ablation ablation --csv "$m.ablation.csv"
  a ablation-plain ablation --plain
  a ablation-mean ablation --ablation mean
  a ablation-resample ablation --ablation resample
  a ablation-groups ablation --channel-group 16
  heads=$("$cli" info "$c" --json 2>/dev/null | /usr/bin/python3 -c '
import json, sys
ls = json.load(sys.stdin)["layers"]
first = ["L" + str(l["index"]) + "." + k + ".H0" for l in ls[:1] for k in l["heads"]][:1]
last = ["L" + str(l["index"]) + "." + k + ".H" + str(n - 1) for l in ls[-1:] for k, n in l["heads"].items()][-1:]
print(",".join(first + last))' 2>/dev/null)
  [ -n "$heads" ] && run "$m.ablation-set" analyze ablation -c "$c" -n $n --quiet --heads "$heads"
  for site in resid_pre resid_mid resid_post mixer_in mixer_out mlp_in mlp_out heads conv_out state; do
    a "patching-$site" patching --site $site --aligned-csv "$m.patching-$site.aligned.csv"
  done
  a patching-plain patching --plain
  a patching-value patching --corrupt value
  a attribution attribution --compare --site resid_pre
  a attribution-heads attribution --site heads
  a head-scores head-scores
  a attention attention --example 3
  a attention-norm attention --example 2 --layer 0 --normalise --groups 4
  a embeddings embeddings
  a embeddings-training embeddings --over-training
  a dla dla --csv "$m.dla.csv"
  a logit-lens logit-lens
  for l in 0 1; do a "knockout-L$l" knockout --layer $l --last-row; done
  a knockout-edge knockout --layer 1 --edge 5:2 --edge 9:4
done
echo "outputs written to $out"
