// SHA-256 of large files remembered across runs, so that the provenance of every figure and results file of a
// multi-gigabyte model (core/session: checkpoint_digest) costs the full read once, not once per command. Must not:
// be trusted for anything but provenance (see below).
#pragma once

#include <cstdint>
#include <string>

namespace mechscope {

/// sha256_file(path), taken from a cache when the file is unchanged since it was hashed: same real path, size,
/// inode and device, modification and status-change times (nanoseconds), the test make and rsync use; the
/// status-change time cannot be set back by a user, so a rewrite of the same size is seen. Files under
/// `min_bytes` are hashed every time. The cache is $XDG_CACHE_HOME/mechscope/digests.json (else
/// ~/.cache/mechscope/), at most 512 entries (the least recently used go first), written atomically; an unreadable,
/// corrupt or unwritable cache is ignored (the digest is then computed, as without one). MECHSCOPE_DIGEST_CACHE=0
/// turns it off.
std::string sha256_file_cached(const std::string& path, uint64_t min_bytes = uint64_t{64} << 20);

/// The cache file in use ("" when off or no home).
std::string digest_cache_path();

}  // namespace mechscope
