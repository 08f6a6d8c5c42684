#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, and runs the whole test suite under ctest.
# MECHSCOPE_TEST_LABELS (a ctest -L regex) narrows it, e.g. MECHSCOPE_TEST_LABELS=fast.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/packaging/install-deps.sh"
bash "$root/tests/cluster/install-slurm.sh"  # a test dependency only: the Slurm test's single-node cluster
bash "$root/scripts/build.sh"
build=${MECHSCOPE_BUILD_DIR:-$root/build}
args=(--test-dir "$build" --output-on-failure -j "$(nproc)")
[ -n "${MECHSCOPE_TEST_LABELS:-}" ] && args+=(-L "$MECHSCOPE_TEST_LABELS")
ctest "${args[@]}"
