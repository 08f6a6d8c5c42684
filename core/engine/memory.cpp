// Available memory from the kernel's accounting, and the guard built on it.
#include "core/engine/memory.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <c10/util/Exception.h>

#include "core/util/strings.h"

namespace mechscope {

namespace {

uint64_t read_u64(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  if (!(in >> s) || s == "max") return UINT64_MAX;
  try {
    return std::stoull(s);
  } catch (...) {
    return UINT64_MAX;
  }
}

}  // namespace

uint64_t available_memory_bytes() {
  uint64_t avail = UINT64_MAX;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  std::string unit;
  while (meminfo >> key >> kb) {
    std::getline(meminfo, unit);
    if (key == "MemAvailable:") {
      avail = kb * 1024;
      break;
    }
  }
  // cgroup v2, then v1: the limit minus what the group already uses.
  for (const auto& [limit_path, usage_path] :
       {std::pair<std::string, std::string>{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
        {"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"}}) {
    const uint64_t limit = read_u64(limit_path), used = read_u64(usage_path);
    if (limit != UINT64_MAX && used != UINT64_MAX && limit < (uint64_t{1} << 60))
      avail = std::min(avail, limit > used ? limit - used : 0);
  }
  if (const char* env = std::getenv("MECHSCOPE_MEMORY_LIMIT_MB")) {
    const long long mb = std::atoll(env);
    if (mb > 0) avail = std::min<uint64_t>(avail, static_cast<uint64_t>(mb) << 20);
  }
  return avail == UINT64_MAX ? (uint64_t{8} << 30) : avail;
}

void require_memory(double bytes, const std::string& what, const std::string& hint) {
  if (bytes < double(uint64_t{256} << 20)) return;  // small requests never need the check
  const double avail = static_cast<double>(available_memory_bytes());
  if (bytes <= 0.9 * avail) return;
  throw MemoryLimitError(what + " needs about " + format_bytes(bytes) + ", more than this machine has free (" +
                         format_bytes(avail) + (std::getenv("MECHSCOPE_MEMORY_LIMIT_MB") ? ", MECHSCOPE_MEMORY_LIMIT_MB" : "") +
                         "); refused before allocating" + (hint.empty() ? "" : ". " + hint));
}

std::string describe_error(const std::exception& e) {
  if (const auto* c = dynamic_cast<const c10::Error*>(&e)) {
    std::string msg = c->what_without_backtrace();
    if (msg.find("can't allocate memory") != std::string::npos || msg.find("Cannot allocate memory") != std::string::npos) {
      std::string bytes;
      const size_t tried = msg.find("you tried to allocate ");
      if (tried != std::string::npos) {
        const double n = std::atof(msg.c_str() + tried + 22);
        if (n > 0) bytes = " (" + format_bytes(n) + " at once)";
      }
      return "out of memory" + bytes + ": the request is too large for this machine; use fewer examples, a shorter "
             "input or a smaller --memory-mb";
    }
    const size_t nl = msg.find('\n');
    return nl == std::string::npos ? msg : msg.substr(0, nl);
  }
  if (dynamic_cast<const std::bad_alloc*>(&e)) return "out of memory: the request is too large for this machine";
  return e.what();
}

}  // namespace mechscope
