// Process-wide runtime set-up: torch's intra-op thread count from the hardware (or MECHSCOPE_NUM_THREADS),
// and a report of what the process actually runs on (BLAS library, threads, LibTorch version), so a
// user can see a slow set-up. Must not: print (callers decide what to show).
#pragma once

#include <string>

namespace mechscope {

struct RuntimeInfo {
  std::string version;        ///< MechScope version
  std::string torch_version;  ///< e.g. "1.13.0"
  int threads = 0;            ///< torch intra-op threads
  bool parallel_loops = false;  ///< MechScope's own at::parallel_for loops (CPU kernels, sweeps) were built with
                                ///< OpenMP; without it they run on one thread (an inline template: our flags decide)
  std::string blas;           ///< e.g. "OpenBLAS 0.3.21 (openblas-pthread)"; "reference BLAS (slow)" ...
  std::string blas_path;      ///< the shared library actually loaded
  std::string blas_core;      ///< OpenBLAS's kernels in use (blas_core()), "" for another BLAS
  bool blas_is_slow = false;  ///< the reference BLAS, or OpenBLAS on kernels older than the CPU
  bool cuda_available = false;
};

/// Where OpenBLAS chose its slowest kernels on a CPU it does not know, chooses again those the CPU can run. OpenBLAS
/// before 0.3.25 (Debian 12 has 0.3.21) falls back to its Prescott (SSE3) kernels on Intel CPUs newer than its
/// table (an Emerald Rapids Xeon, model 207): a 52M Llama's forward took 4x PyTorch's time. Where the core loaded is
/// Prescott, the CPU has AVX and OPENBLAS_CORETYPE is unset, this sets it (SkylakeX with AVX-512, Haswell with AVX2
/// and FMA, else Sandybridge) and has OpenBLAS choose again (gotoblas_dynamic_quit and _init, what its constructor
/// ran). Call it first in main(), before any matrix product and any thread.
void select_blas_core();
/// OpenBLAS's kernels in use ("SkylakeX", "Prescott"), or "" where OpenBLAS is not loaded.
std::string blas_core();
/// The CPU's model name from /proc/cpuinfo ("" where unknown): benchmarks print it beside their figures.
std::string cpu_model();

/// Folder of the running executable (from /proc/self/exe; "." if unknown).
std::string executable_dir();
/// Sets torch's thread count once (idempotent), and init_thread() on the calling thread and torch's worker
/// threads. Returns the count in use.
int init_runtime();
/// Flushes denormal floats to zero on the calling thread and on the worker threads of its OpenMP team (SSE/AVX
/// state is per thread; libgomp keeps a team per calling thread). Attention patterns and SSM decays underflow
/// into denormals, which the CPU handles about 100x slower: the attention demo's second layer ran 1.4x slower
/// on them. Threads that run model code besides the one that called init_runtime (GUI workers) call this
/// first. The values that change are below 1.2e-38 in magnitude.
void init_thread();

/// While one lives, blocks of 1 MiB and more get fresh mappings that go back to the kernel when freed, instead of
/// the heap init_runtime keeps for activations: for reading weights, where tensors of every size are read, fused and
/// freed once, and the kept heap's holes raised a bfloat16 Llama 1.1B's import from 2.4 GB to 3.1 GB at its peak.
/// Nothing happens where GLIBC_TUNABLES set the allocator or init_runtime has not run.
class FreshLargeBlocks {
 public:
  FreshLargeBlocks();
  ~FreshLargeBlocks();
  FreshLargeBlocks(const FreshLargeBlocks&) = delete;
  FreshLargeBlocks& operator=(const FreshLargeBlocks&) = delete;
};
RuntimeInfo runtime_info();
/// Multi-line human-readable report of runtime_info().
std::string runtime_report();

}  // namespace mechscope
