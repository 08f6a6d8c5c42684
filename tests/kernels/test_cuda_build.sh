#!/usr/bin/env bash
# Builds the kernels library (binding + CUDA kernels) against the CUDA-enabled LibTorch of a PyPI torch
# wheel with scripts/build-cuda.sh, so the binding's CUDA path compiles against LibTorch 2.x (issue 6).
# usage: test_cuda_build.sh SOURCE_DIR BUILD_DIR   (exit 77 = skipped: no CUDA torch wheel or no nvcc here)
set -euo pipefail
src=$1
build=$2
py=${MECHSCOPE_TORCH_PYTHON:-$HOME/.venvs/torch/bin/python}
if ! [ -x "$py" ] || [ "$("$py" -c 'import torch; print(torch.version.cuda is not None)' 2> /dev/null)" != "True" ]; then
  echo "SKIP: no CUDA-enabled torch at $py (scripts/build-cuda.sh --setup makes one)"
  exit 77
fi
if ! [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]; then
  echo "SKIP: no nvcc under ${CUDA_HOME:-/usr/local/cuda}"
  exit 77
fi
MECHSCOPE_TORCH_PYTHON=$py bash "$src/scripts/build-cuda.sh" "$build" -- mechscope_kernels
log=$(cat "$build/configure.log")
[[ "$log" == *"CUDA kernels: ON"* ]] || { echo "FAIL: the CUDA kernels were not enabled"; exit 1; }
[[ "$log" == *"LibTorch 2."* ]] || { echo "FAIL: not configured against LibTorch 2.x"; exit 1; }
lib=$(find "$build" -name libmechscope_kernels.a | head -1)
syms=$(nm -C "$lib")
for s in "selective_scan_fwd_cuda" "ssd_bwd_cuda" "each_thread"; do
  [[ "$syms" == *"$s"* ]] || { echo "FAIL: $lib lacks $s"; exit 1; }
done
echo "ok: binding and CUDA kernels built against $("$py" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)')"
