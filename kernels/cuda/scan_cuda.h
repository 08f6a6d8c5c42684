// Host entry points of the CUDA scans (kernels/cuda/scans.cu). Pointers are device pointers of contiguous
// float32 buffers (the layouts of kernels/cpu/scan_params.h); `stream` is a cudaStream_t (nullptr: the default
// stream). Errors (a failed launch, an unsupported state size) throw std::runtime_error / invalid_argument.
// Must not: include torch, core, or CUDA headers, so the binding compiles without the CUDA toolkit's headers.
#pragma once

#include <cstdint>

#include "kernels/cpu/scan_params.h"

namespace mechscope::kernels {

/// workspace: selective_scan_fwd_workspace_floats(p) floats of device memory (null when that is 0).
void selective_scan_fwd_cuda(const SelectiveScanParams& p, float* workspace, void* stream);
int64_t selective_scan_fwd_workspace_floats(const SelectiveScanParams& p);
/// workspace: selective_scan_bwd_workspace_floats(p) floats of device memory.
void selective_scan_bwd_cuda(const SelectiveScanParams& p, const SelectiveScanGrads& g, float* workspace, void* stream);
int64_t selective_scan_bwd_workspace_floats(const SelectiveScanParams& p);

void ssd_fwd_cuda(const SsdParams& p, float* workspace, void* stream);
int64_t ssd_fwd_workspace_floats(const SsdParams& p);
void ssd_bwd_cuda(const SsdParams& p, const SsdGrads& g, float* workspace, void* stream);
int64_t ssd_bwd_workspace_floats(const SsdParams& p);

}  // namespace mechscope::kernels
