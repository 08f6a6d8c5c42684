// Files from outside and files we write, handled so that neither can hang, clobber or half-write
// (docs/robustness.md):
//  - readers refuse anything that is not a regular file before reading it (a FIFO would block forever, a
//    device such as /dev/zero would never end), and read text with a cap checked while reading;
//  - writers write to an exclusive temporary beside the target (O_CREAT|O_EXCL|O_NOFOLLOW with an
//    unpredictable name, so a planted symlink cannot redirect the write) and rename it over the target only
//    when every byte is written and synced;
//  - an OutputClaim held for a command's whole run refuses a second writer of the same path (a lock file
//    created exclusively, which also works on NFS), an existing file without --force, an output that is one
//    of the command's inputs, and a folder that does not exist, before any work is done.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace mechscope {

class FileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// "a FIFO", "a folder", "a character device", ... for the file type of `path` (following links), or "" when it
/// is a regular file; "missing" when it does not exist.
std::string file_kind(const std::string& path);

/// Throws FileError unless `path` is a regular file: "'p' is a FIFO, not a regular file". `what` prefixes the
/// message ("token file"). Never opens the path, so a FIFO cannot block it.
void require_regular_file(const std::string& path, const std::string& what = "");

/// Opens a regular file read-only (O_CLOEXEC), without blocking on a FIFO: opened non-blocking, checked with
/// fstat, then switched back to blocking. Returns the descriptor; throws FileError otherwise.
int open_regular_file(const std::string& path, const std::string& what = "", bool allow_pipe = false);

/// The whole of a regular file, refusing it when it has more than `max_bytes` (checked while reading, so a file
/// that grows or lies about its size cannot make this read without bound). With `allow_pipe`, a pipe is read too
/// (`--config <(...)`): it is opened without waiting for a writer, and one without a writer reads as empty.
std::string read_file_capped(const std::string& path, uint64_t max_bytes, const std::string& what = "",
                             bool allow_pipe = false);

/// A temporary file beside `target`, created exclusively and without following links, named
/// "<target>.tmp-<pid>-<random>". commit() renames it over the target (after the caller has written and closed
/// it); the destructor removes it when it was not committed.
class TempFile {
 public:
  explicit TempFile(const std::string& target);
  ~TempFile();
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }
  /// The descriptor, open for writing; closed by close() or the destructor.
  int fd() const { return fd_; }
  /// Writes all of `data`; throws FileError naming the target on failure (a full disk included).
  void write(const void* data, size_t n);
  /// fsync and close; throws FileError when either fails (a full disk shows here on some file systems).
  void close();
  /// Renames the temporary over the target and syncs the folder. Throws FileError on failure, removing it.
  void commit();

 private:
  std::string target_, path_;
  int fd_ = -1;
  bool committed_ = false;
};

/// Writes `data` to `path` through a TempFile: the old file stays whole until the new one is complete.
void write_file_atomically(const std::string& path, const std::string& data);

/// The outputs of one command, claimed before it starts work and released when it ends.
class OutputClaim {
 public:
  OutputClaim() = default;
  ~OutputClaim();
  OutputClaim(const OutputClaim&) = delete;
  OutputClaim& operator=(const OutputClaim&) = delete;
  /// Claims `path`: refuses a missing folder, an existing file unless `force`, a path naming the same file as
  /// one of `inputs`, and a path another process is writing (its "<path>.lock" exists and the process that
  /// made it is alive or on another host). Stale locks of dead processes on this host are taken over.
  void claim(const std::string& path, bool force, const std::vector<std::string>& inputs = {});

 private:
  std::vector<std::string> locks_;
};

/// This machine's host name ("?" when it cannot be had).
std::string host_name();

/// Who holds a lock file, as it says ("<pid> <host>"); pid 0 when it could not be read (being written, or garbage).
struct LockOwner {
  long pid = 0;
  std::string host;
};
/// Creates `lock` exclusively (O_CREAT|O_EXCL|O_NOFOLLOW, which also works on NFS) holding this process's pid and
/// host; true when this process now holds it. A lock whose process is gone from this host is stale and taken over;
/// with `foreign_is_stale`, so is one held on another host (whose processes cannot be seen from here). Otherwise
/// false, with the holder in `owner`. Throws FileError naming `target` when the lock cannot be created or written.
/// OutputClaim's locks, and a grid task's claim (core/cli/grid.cpp), are these.
bool take_lock(const std::string& lock, const std::string& target, bool foreign_is_stale, LockOwner* owner = nullptr);

/// The folder part of a path: "a/b.h5" -> "a", "b.h5" -> ".", "/b.h5" -> "/".
std::string parent_folder(const std::string& path);

/// True when `a` and `b` name the same existing file (same device and inode).
bool same_file(const std::string& a, const std::string& b);

}  // namespace mechscope
