#!/usr/bin/env bash
# Records the golden outputs test_golden.cpp holds every later build to: runs tests/equivalence/outputs.sh with the
# given mechscope-cli (build the commit to record from, e.g. with scripts/equivalence.sh's worktree) and packs each
# demo's logits and analysis tables into tests/golden/<demo>.h5 (tests/golden/pack.py).
# usage: tests/golden/record.sh MECHSCOPE_CLI "what this CLI was built from (a commit)"
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cli=$1; source=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
MECHSCOPE_NUM_THREADS=2 bash "$root/tests/equivalence/outputs.sh" "$cli" "$root/resources/models" "$work/out" > /dev/null
/usr/bin/python3 "$root/tests/golden/pack.py" "$work/out" "$root/resources/models" "$root/tests/golden" "$source"
