// A seed's own stream of random numbers (splitmix64): what the text tasks' prompt generators draw from, so that
// an example is a pure function of its seed. Must not: hold global state.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace mechscope {

struct SplitMix {
  uint64_t x;
  uint64_t next() {
    uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, n), unbiased (rejection).
  int64_t below(int64_t n) {
    const uint64_t un = static_cast<uint64_t>(n), limit = UINT64_MAX - UINT64_MAX % un;
    uint64_t r;
    do r = next(); while (r >= limit);
    return static_cast<int64_t>(r % un);
  }
  /// Fisher-Yates, from the back.
  template <class T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[static_cast<size_t>(below(static_cast<int64_t>(i)))]);
  }
};

}  // namespace mechscope
