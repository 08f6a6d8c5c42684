#!/usr/bin/env bash
# Shows that a change leaves every output unchanged: builds REF (default: HEAD, i.e. the working tree against the
# last commit; give the previous main's commit to check a series of commits) in a scratch worktree and the
# working tree in build/, runs tests/equivalence/outputs.sh with both (each demo's logits and hooks, every
# `analyze` table, verify, eval, models trained by each build), and compares the two folders bit for bit
# (tests/equivalence/compare.py). Both runs use the same thread count and the same command list (the working
# tree's). Exit status 0 when identical.
# usage: scripts/equivalence.sh [REF] [quick]      (quick: three models only)
# $MECHSCOPE_EQUIV_IGNORE_PROVENANCE: provenance keys to leave out (compare.py --ignore-provenance).
# Scratch space: $MECHSCOPE_EQUIV_DIR (default /tmp/mechscope-equivalence).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ref=${1:-HEAD}
quick=${2:-}
work=${MECHSCOPE_EQUIV_DIR:-/tmp/mechscope-equivalence}
mkdir -p "$work"
commit=$(git -C "$root" rev-parse --verify "$ref^{commit}")
tree="$work/ref-tree"
if [ ! -d "$tree" ]; then git -C "$root" worktree add --detach "$tree" "$commit" > /dev/null
else git -C "$tree" checkout -q --detach "$commit"; fi
echo "equivalence: building $ref ($commit) in $tree"
MECHSCOPE_BUILD_DIR="$work/ref-build" bash "$tree/scripts/build.sh" > "$work/ref-build.log" 2>&1 ||
  { tail -20 "$work/ref-build.log"; exit 2; }
echo "equivalence: building the working tree"
bash "$root/scripts/build.sh" > "$work/new-build.log" 2>&1 || { tail -20 "$work/new-build.log"; exit 2; }
rm -rf "$work/ref-out" "$work/new-out"
echo "equivalence: outputs of $ref"
bash "$root/tests/equivalence/outputs.sh" "$work/ref-build/bin/mechscope-cli" "$root/resources/models" "$work/ref-out" $quick > /dev/null
echo "equivalence: outputs of the working tree"
bash "$root/tests/equivalence/outputs.sh" "$root/build/bin/mechscope-cli" "$root/resources/models" "$work/new-out" $quick > /dev/null
ignore=()
[ -n "${MECHSCOPE_EQUIV_IGNORE_PROVENANCE:-}" ] && ignore=(--ignore-provenance "$MECHSCOPE_EQUIV_IGNORE_PROVENANCE")
/usr/bin/python3 "$root/tests/equivalence/compare.py" "${ignore[@]}" "$work/ref-out" "$work/new-out"
