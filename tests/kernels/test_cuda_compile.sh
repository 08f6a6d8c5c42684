#!/usr/bin/env bash
# Compiles the CUDA kernels (kernels/cuda/*.cu) to object files for sm_80 and sm_90 with nvcc, warnings as
# errors, so that a syntax or type error in GPU code cannot land on a machine without a GPU (issue 6).
# The .cu files need no LibTorch, so this runs in the default (CPU LibTorch) build.
# usage: test_cuda_compile.sh SOURCE_DIR OUT_DIR   (exit 77 = skipped: no nvcc on this machine)
set -euo pipefail
src=$1
out=$2
nvcc=${MECHSCOPE_NVCC:-}
if [ -z "$nvcc" ]; then
  for c in "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" "$(command -v nvcc || true)"; do
    if [ -n "$c" ] && [ -x "$c" ]; then nvcc=$c; break; fi
  done
fi
if [ -z "$nvcc" ]; then
  echo "SKIP: no nvcc (set MECHSCOPE_NVCC or CUDA_HOME)"
  exit 77
fi
mkdir -p "$out"
"$nvcc" --version | tail -1
for cu in "$src"/kernels/cuda/*.cu; do
  obj=$out/$(basename "$cu" .cu).o
  "$nvcc" -std=c++17 -O3 -I"$src" -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror \
    -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -c "$cu" -o "$obj"
  # Both architectures must be in the object's fat binary (checked where cuobjdump is installed).
  if [ -x "${nvcc%/nvcc}/cuobjdump" ]; then
    listing=$("${nvcc%/nvcc}/cuobjdump" --list-elf "$obj")
    for sm in sm_80 sm_90; do
      if [[ "$listing" != *"$sm"* ]]; then echo "FAIL: $obj has no $sm code"; exit 1; fi
    done
  fi
  echo "ok: $(basename "$cu") -> sm_80, sm_90"
done
