#!/usr/bin/env bash
# Cross-checks mechscope-cli forward against the independent Python reference (reference_forward.py) on
# every preset and on config variants (GQA, untied head, LayerNorm, learned positions, MLPs, Mamba2 groups,
# d_ssm < d_inner, D per channel, norm before gate, interleaved/partial rotary), each with perturbed weights.
# usage: cross_check.sh MECHSCOPE_CLI PYTHON WORKDIR
set -euo pipefail
cli=$1; py=$2; work=$3
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work"
tokens=$(seq -s, 1 3 63),7,7,7,$(seq -s, 5 2 63),$(seq -s, 1 1 40)   # 114 tokens: over the chunk size of 64
fail=0
check() {  # name preset [--set ...]
  local name=$1; shift
  "$cli" init "$@" --seed 3 --out "$work/$name.h5" --force > /dev/null
  "$py" "$here/reference_forward.py" --perturb "$work/$name.h5" "$work/$name-p.h5" --seed 5
  "$cli" forward -c "$work/$name-p.h5" --tokens "$tokens" --out "$work/$name-out.h5" --force --topk 0 > /dev/null
  if "$py" "$here/reference_forward.py" "$work/$name-p.h5" "$work/$name-out.h5" --tol 1e-4; then :; else
    echo "MISMATCH: $name"; fail=1; fi
}
check transformer --preset transformer
check mamba1 --preset mamba1
check mamba2 --preset mamba2
check hybrid --preset hybrid
check parallel-hybrid --preset parallel-hybrid
check parallel-mamba1 --preset parallel-hybrid --set ssm_cfg='{"layer":"Mamba1","d_state":8,"headdim":null,"ngroups":null,"chunk_size":null}'
check gqa-untied-layernorm --preset transformer --set attn_cfg.num_heads_kv=2 --set tie_embeddings=false \
  --set rms_norm=false --set attn_cfg.rotary_emb_dim=16 --set attn_cfg.rotary_emb_interleaved=true
check learned-pos-nope --preset transformer --set pos_emb='"learned"' --set max_seq_len=128 --set attn_cfg.rotary_emb_dim=0 \
  --set vocab_size=61
check mamba2-groups-dmlp --preset mamba2 --set ssm_cfg.ngroups=2 --set ssm_cfg.d_ssm=128 --set ssm_cfg.chunk_size=16 \
  --set d_intermediate=100 --set ssm_cfg.D_has_hdim=true
check mamba2-gate-first --preset mamba2 --set ssm_cfg.norm_before_gate=true --set ssm_cfg.dt_limit='[0.01, 0.5]'
check mamba2-nonorm --preset mamba2 --set ssm_cfg.rmsnorm=false --set ssm_cfg.chunk_size=128
check mamba1-bias-mlp --preset mamba1 --set ssm_cfg.bias=true --set d_intermediate=64 --set ssm_cfg.dt_rank=4 --set n_layer=3
exit $fail
