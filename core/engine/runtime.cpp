// Runtime set-up and the BLAS/threads report.
#include "core/engine/runtime.h"

#include <dlfcn.h>
#include <link.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/Context.h>
#include <torch/version.h>

#include "core/version.h"
#include "kernels/binding/scan_ops.h"

namespace mechscope {

std::string executable_dir() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  buf[n] = 0;
  const std::string exe(buf);
  return exe.substr(0, exe.find_last_of('/'));
}

namespace {
using NameFn = char* (*)();
NameFn openblas_fn(const char* name) { return reinterpret_cast<NameFn>(dlsym(RTLD_DEFAULT, name)); }

// The OpenBLAS core this CPU can run, best first, or nullptr without AVX (Prescott is then right).
const char* core_for_cpu() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  if (__builtin_cpu_supports("avx")) return "Sandybridge";
  return nullptr;
}
}  // namespace

std::string blas_core() {
  NameFn f = openblas_fn("openblas_get_corename");
  const char* name = f ? f() : nullptr;
  return name ? std::string(name) : std::string();
}

void select_blas_core() {
  if (std::getenv("OPENBLAS_CORETYPE")) return;  // the user's choice
  if (blas_core() != "Prescott") return;
  const char* core = core_for_cpu();
  using Fn = void (*)();
  auto quit = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit"));
  auto init = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init"));
  if (!core || !quit || !init) return;
  // What the library's constructor did, again with the name set: quit forgets the choice, init reads the variable,
  // picks the kernels and sets their blocking sizes. Its buffers are sized for every core of a DYNAMIC_ARCH build.
  ::setenv("OPENBLAS_CORETYPE", core, 1);  // processes this one starts choose alike
  quit();
  init();
}

std::string cpu_model() {
  FILE* f = std::fopen("/proc/cpuinfo", "r");
  if (!f) return "";
  char line[512];
  std::string model;
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, "model name", 10) != 0) continue;
    const char* colon = std::strchr(line, ':');
    if (colon) model = colon + 1;
    break;
  }
  std::fclose(f);
  const auto b = model.find_first_not_of(" \t"), e = model.find_last_not_of(" \t\n");
  return b == std::string::npos ? "" : model.substr(b, e - b + 1);
}

void init_thread() {
  at::globalContext().setFlushDenormal(true);
  // Each worker of this thread's team: grain 1 over the team's size gives each one index.
  if (!at::in_parallel_region())
    at::parallel_for(0, at::get_num_threads(), 1, [](int64_t, int64_t) { at::globalContext().setFlushDenormal(true); });
}

namespace {
std::atomic<bool> g_heap_kept{false};   // init_runtime set the thresholds below
std::atomic<int> g_fresh_scopes{0};
constexpr int kKeptThreshold = 256 << 20;

// How much freed memory at the heap's top stays: an eighth of the RAM, from 256 MiB to 2 GiB. A forward caching
// every hook of a 130M Mamba2 (4 x 128 tokens) keeps 532 MiB; freed, a 256 MiB threshold gave half of it back,
// and the next such forward faulted it in again page by page: 1.11-1.14x the plain forward, 1.08x with 2 GiB kept
// (docs/benchmarks.md). The process's peak is the same either way; between peaks it holds up to this much more.
int trim_threshold() {
  const double ram = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGESIZE));
  const double eighth = ram > 0 ? ram / 8 : 0;
  return static_cast<int>(std::min(std::max(eighth, static_cast<double>(kKeptThreshold)), 2047.0 * (1 << 20)));
}
}  // namespace

FreshLargeBlocks::FreshLargeBlocks() {
  if (g_fresh_scopes++ == 0 && g_heap_kept) mallopt(M_MMAP_THRESHOLD, 1 << 20);
}
FreshLargeBlocks::~FreshLargeBlocks() {
  if (--g_fresh_scopes == 0 && g_heap_kept) mallopt(M_MMAP_THRESHOLD, kKeptThreshold);
}

int init_runtime() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Keep freed activation buffers in the heap instead of handing them back to the kernel: glibc serves blocks
    // above its mmap threshold (at most 32 MiB) with fresh mappings, and every forward then page-faults its
    // tensors in again. On the attention demo (32 x 64 tokens) this made a forward 1.2x and a forward caching
    // every hook 1.6x slower (docs/benchmarks.md). Freed memory at the heap's top beyond trim_threshold() goes back.
    // GLIBC_TUNABLES in the environment wins.
    if (!std::getenv("GLIBC_TUNABLES")) {
      mallopt(M_MMAP_THRESHOLD, kKeptThreshold);
      mallopt(M_TRIM_THRESHOLD, trim_threshold());
      g_heap_kept = true;
    }
    int n = static_cast<int>(std::thread::hardware_concurrency());
    if (const char* env = std::getenv("MECHSCOPE_NUM_THREADS")) {
      int v = std::atoi(env);
      if (v > 0) n = v;
    }
    if (n > 0) at::set_num_threads(n);
    // LibTorch already splits work across its OpenMP threads; an OpenBLAS pthread build would add its own
    // threads inside each matrix product, and the two pools then fight for the cores (libgomp spin-waits and
    // sched_yield were 55% of a training step's profile). One BLAS thread halved the attention demo's training
    // step (docs/benchmarks.md). An OpenBLAS OpenMP build (libopenblas0-openmp, which the build links first where
    // it is installed) runs its threads in LibTorch's own OpenMP team, single-threaded inside LibTorch's parallel
    // regions: no second pool, so it gets LibTorch's thread count (a 2-thread forward of a 52M Llama 247 -> 153
    // ms; docs/benchmarks.md). OPENBLAS_NUM_THREADS in the environment still wins.
    if (!std::getenv("OPENBLAS_NUM_THREADS")) {
      using SetThreads = void (*)(int);
      NameFn config = openblas_fn("openblas_get_config");
      const bool openmp = config && std::strstr(config(), "USE_OPENMP") != nullptr;
      if (auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads")))
        set(openmp ? std::max(1, at::get_num_threads()) : 1);
    }
  });
  init_thread();  // after the thread count is set: the team it reaches is the one that will run
  return at::get_num_threads();
}

static int collect_libs(struct dl_phdr_info* info, size_t, void* data) {
  if (info->dlpi_name && *info->dlpi_name) static_cast<std::vector<std::string>*>(data)->push_back(info->dlpi_name);
  return 0;
}

RuntimeInfo runtime_info() {
  RuntimeInfo r;
  r.version = kVersion;
  r.torch_version = TORCH_VERSION;
  r.threads = at::get_num_threads();
#ifdef _OPENMP
  r.parallel_loops = true;
#endif
  r.cuda_available = at::hasCUDA();
  std::vector<std::string> libs;
  dl_iterate_phdr(collect_libs, &libs);
  // The BLAS LibTorch calls is whichever libblas / openblas / mkl got loaded into the process.
  for (const auto& lib : libs) {
    auto has = [&](const char* s) { return lib.find(s) != std::string::npos; };
    if (has("libmkl")) {
      r.blas = "Intel MKL";
      r.blas_path = lib;
      break;
    }
    if (has("openblas") || has("libblas") || has("libcblas")) {
      char resolved[4096];
      std::string real = realpath(lib.c_str(), resolved) ? std::string(resolved) : lib;
      r.blas_path = real;
      if (real.find("openblas") != std::string::npos) {
        using ConfigFn = char* (*)();
        void* h = dlopen(lib.c_str(), RTLD_NOW | RTLD_NOLOAD);
        ConfigFn cfg = h ? reinterpret_cast<ConfigFn>(dlsym(h, "openblas_get_config")) : nullptr;
        r.blas = cfg ? std::string("OpenBLAS (") + cfg() + ")" : "OpenBLAS";
        r.blas_core = blas_core();
        const char* own = core_for_cpu();
        if (r.blas_core == "Prescott" && own) {
          r.blas += std::string(" - slow on this CPU; OPENBLAS_CORETYPE=") + own + " selects its own";
          r.blas_is_slow = true;
        }
        if (real.find("pthread") != std::string::npos) r.blas += ", pthread build (one BLAS thread)";
        if (real.find("openmp") != std::string::npos) r.blas += ", OpenMP build (LibTorch's threads)";
        if (h) dlclose(h);
        break;
      }
      if (real.find("/blas/") != std::string::npos || real.find("libblas.so") != std::string::npos) {
        r.blas = "reference BLAS (netlib) - about 16x slower; install libopenblas0-pthread";
        r.blas_is_slow = true;
      }
    }
  }
  if (r.blas.empty())  // PyPI's LibTorch 2.x links Intel MKL into libtorch_cpu: no library of its own to find
    r.blas = at::hasMKL() ? "Intel MKL (linked into LibTorch)" : "none loaded (LibTorch uses its own kernels)";
  return r;
}

std::string runtime_report() {
  RuntimeInfo r = runtime_info();
  std::string s;
  s += "mechscope " + r.version + "\n";
  s += "LibTorch  " + r.torch_version + (r.cuda_available ? " (CUDA available)" : " (CPU)") + "\n";
  s += "threads   " + std::to_string(r.threads) + " (set MECHSCOPE_NUM_THREADS to change)" +
       (r.parallel_loops ? "" : "; built without OpenMP: MechScope's own loops run on one thread") + "\n";
  s += std::string("scans     CPU kernels") +
       (kernels::cuda_scan_built() ? (r.cuda_available ? " and CUDA kernels" : " and CUDA kernels (no GPU visible)") : "") +
       (kernels::fast_scan_enabled() ? "" : ", off (MECHSCOPE_FAST_SCAN=0)") + "\n";
  s += "BLAS      " + r.blas + (r.blas_path.empty() ? "" : "\n          " + r.blas_path) + "\n";
  return s;
}

}  // namespace mechscope
