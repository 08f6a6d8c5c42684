#!/usr/bin/env bash
# Builds MechScope against the CUDA-enabled LibTorch inside a PyPI `torch` wheel, with the CUDA kernels
# (MECHSCOPE_CUDA=ON) and without the app (GPU machines here have no Qt). Works without a GPU: the build is
# then a compile and link check; on a GPU machine run the tests and `bench --scan --device cuda` after it.
#
# With --no-kernels it builds the CPU code alone against the same LibTorch 2.x (MKL, oneDNN): the build that
# docs/benchmarks.md compares with the default one (Debian's LibTorch 1.13), e.g. build-torch2/.
#
# usage: scripts/build-cuda.sh [--setup] [--no-kernels] [BUILD_DIR] [-- TARGET ...]
#   --setup      first create ~/.venvs/torch and pip-install torch into it (several GB)
#   --no-kernels MECHSCOPE_CUDA=OFF: no CUDA kernels (the CPU build against LibTorch 2.x)
#   BUILD_DIR    default build-cuda/ (ignored by git)
#   TARGET ...   build only these targets (e.g. mechscope_kernels); default all
# env: MECHSCOPE_TORCH_PYTHON  a python with torch (default ~/.venvs/torch/bin/python, else python3)
#      CUDA_HOME              the toolkit with nvcc (default /usr/local/cuda)
#      TORCH_CUDA_ARCH_LIST   GPU architectures (default "8.0;9.0": Ampere, Hopper)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" = "--setup" ]; then
  shift
  [ -x "$HOME/.venvs/torch/bin/python" ] || python3 -m venv "$HOME/.venvs/torch"
  "$HOME/.venvs/torch/bin/pip" install --quiet torch
fi
cuda=ON
if [ "${1:-}" = "--no-kernels" ]; then cuda=OFF; shift; fi
build=$root/build-cuda
if [ $# -gt 0 ] && [ "$1" != "--" ]; then build=$1; shift; fi
[ "${1:-}" = "--" ] && shift
targets=("$@")

py=${MECHSCOPE_TORCH_PYTHON:-}
if [ -z "$py" ]; then
  if [ -x "$HOME/.venvs/torch/bin/python" ]; then py=$HOME/.venvs/torch/bin/python; else py=python3; fi
fi
if ! tp=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)' 2> /dev/null); then
  echo "error: $py cannot import torch; run scripts/build-cuda.sh --setup, or set MECHSCOPE_TORCH_PYTHON" >&2
  exit 2
fi
if [ "$("$py" -c 'import torch; print(torch.version.cuda is not None)' 2> /dev/null)" != "True" ]; then
  echo "error: the torch at $py is a CPU-only build; install a CUDA wheel (pip install torch)" >&2
  exit 2
fi
cuda_home=${CUDA_HOME:-/usr/local/cuda}
nvcc=$cuda_home/bin/nvcc
command -v "$nvcc" > /dev/null || { echo "error: no nvcc at $nvcc; set CUDA_HOME" >&2; exit 2; }
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-8.0;9.0}
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root}
generator=()
command -v ninja > /dev/null && generator=(-G Ninja)
# The wheel's CUDA libraries (nvidia-* wheels beside torch) must win over the toolkit's at link time: the
# toolkit may carry an older libnccl that lacks symbols libtorch_cuda needs. At run time libtorch_cuda's own
# RPATH finds them.
site=$("$py" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
link_dirs=$(find "$site/nvidia" -maxdepth 2 -type d -name lib 2> /dev/null | tr '\n' ':')
link_flags="-Wl,-rpath-link,$site/torch/lib:${link_dirs%:}"
# The wheel's root goes first: its lib/ holds libtorch.so, which would otherwise be searched for on the system
# paths, where Debian's CPU libtorch lives.
mkdir -p "$build"
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DMECHSCOPE_BUILD_APP=OFF \
  -DMECHSCOPE_CUDA=$cuda -DCMAKE_CUDA_COMPILER="$nvcc" "-DCMAKE_PREFIX_PATH=$tp/../..;$tp" \
  "-DCMAKE_EXE_LINKER_FLAGS=$link_flags" "-DCMAKE_SHARED_LINKER_FLAGS=$link_flags" > "$build/configure.log" 2>&1 \
  || { cat "$build/configure.log" >&2; exit 1; }
grep -E "Found Torch|MechScope" "$build/configure.log"
if [ ${#targets[@]} -gt 0 ]; then
  cmake --build "$build" --parallel "$(nproc)" --target "${targets[@]}"
else
  cmake --build "$build" --parallel "$(nproc)"
fi
