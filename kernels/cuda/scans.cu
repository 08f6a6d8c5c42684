// CUDA launches of the scan plans in scan_device.h: each phase is one launch of a grid-stride kernel over
// the phase's threads, on the caller's stream. The arithmetic lives in scan_device.h (shared with the host
// emulation test); this file only launches and checks.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "kernels/cuda/scan_cuda.h"
#include "kernels/cuda/scan_device.h"

namespace mechscope::kernels {

namespace {

constexpr int kThreads = 128;

template <class F>
__global__ void __launch_bounds__(kThreads) each_thread(int64_t count, F f) {
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < count;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x)
    f(idx);
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("CUDA scan: ") + what + ": " + cudaGetErrorString(e));
}

struct Launch {
  cudaStream_t stream;
  template <class F>
  void operator()(int64_t count, const F& f) const {
    if (count <= 0) return;
    const int64_t blocks = (count + kThreads - 1) / kThreads;
    const unsigned grid = static_cast<unsigned>(blocks < 65535 * 32 ? blocks : 65535 * 32);
    each_thread<F><<<grid, kThreads, 0, stream>>>(count, f);
    check(cudaGetLastError(), "kernel launch");
  }
};

}  // namespace

void selective_scan_fwd_cuda(const SelectiveScanParams& p, float* workspace, void* stream) {
  cuda::selective_scan_fwd_plan(p, Launch{static_cast<cudaStream_t>(stream)}, workspace);
}

int64_t selective_scan_fwd_workspace_floats(const SelectiveScanParams& p) { return cuda::selective_scan_fwd_workspace(p); }

void selective_scan_bwd_cuda(const SelectiveScanParams& p, const SelectiveScanGrads& g, float* workspace, void* stream) {
  cuda::selective_scan_bwd_plan(p, g, workspace, Launch{static_cast<cudaStream_t>(stream)});
}

int64_t selective_scan_bwd_workspace_floats(const SelectiveScanParams& p) { return cuda::selective_scan_bwd_workspace(p); }

void ssd_fwd_cuda(const SsdParams& p, float* workspace, void* stream) {
  cuda::ssd_fwd_plan(p, Launch{static_cast<cudaStream_t>(stream)}, workspace);
}

int64_t ssd_fwd_workspace_floats(const SsdParams& p) { return cuda::ssd_fwd_workspace(p); }

void ssd_bwd_cuda(const SsdParams& p, const SsdGrads& g, float* workspace, void* stream) {
  cuda::ssd_bwd_plan(p, g, workspace, Launch{static_cast<cudaStream_t>(stream)});
}

int64_t ssd_bwd_workspace_floats(const SsdParams& p) { return cuda::ssd_bwd_workspace(p); }

}  // namespace mechscope::kernels
