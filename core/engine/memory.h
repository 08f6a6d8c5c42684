// Memory guard: requests whose estimated size exceeds what the machine has free are refused with a message
// (naming the request, the estimate and what is available) before anything is allocated, instead of ending in
// an out-of-memory kill. Also turns LibTorch's allocation failures and c10 errors into one-line messages.
#pragma once

#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>

namespace mechscope {

class MemoryLimitError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Bytes this process may still allocate: MemAvailable from /proc/meminfo, capped by a cgroup (v2 or v1) limit
/// and by MECHSCOPE_MEMORY_LIMIT_MB when set.
uint64_t available_memory_bytes();

/// Throws MemoryLimitError when `bytes` exceeds 90% of available_memory_bytes(). `what` names the request
/// ("attention maps of 65536 tokens"); `hint` says how to make it smaller.
void require_memory(double bytes, const std::string& what, const std::string& hint = "");

/// One line for a user: c10::Error without its C++ backtrace, and an allocation failure explained.
std::string describe_error(const std::exception& e);

}  // namespace mechscope
