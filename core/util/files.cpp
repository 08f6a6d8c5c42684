// Safe reading and writing of files (see files.h).
#include "core/util/files.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

namespace mechscope {

namespace {

std::string kind_of(mode_t m) {
  if (S_ISREG(m)) return "";
  if (S_ISDIR(m)) return "a folder";
  if (S_ISFIFO(m)) return "a FIFO (named pipe)";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

std::string prefix(const std::string& what) { return what.empty() ? "" : what + " "; }


void sync_folder(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

std::string random_suffix() {
  std::random_device rd;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
  return buf;
}

}  // namespace

std::string host_name() {
  char h[256] = {0};
  if (::gethostname(h, sizeof h - 1) != 0) return "?";
  return h;
}

std::string file_kind(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "missing";
  return kind_of(st.st_mode);
}

void require_regular_file(const std::string& path, const std::string& what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw FileError("cannot open " + prefix(what) + "'" + path + "': " + std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    throw FileError(prefix(what) + "'" + path + "' is " + kind_of(st.st_mode) + ", not a regular file");
}

int open_regular_file(const std::string& path, const std::string& what, bool allow_pipe) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) throw FileError("cannot open " + prefix(what) + "'" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || (allow_pipe && S_ISFIFO(st.st_mode)))) {
    const std::string kind = kind_of(st.st_mode);
    ::close(fd);
    throw FileError(prefix(what) + "'" + path + "' is " + kind + ", not a regular file");
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

std::string read_file_capped(const std::string& path, uint64_t max_bytes, const std::string& what, bool allow_pipe) {
  const int fd = open_regular_file(path, what, allow_pipe);
  std::string s;
  char buf[65536];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      throw FileError("cannot read " + prefix(what) + "'" + path + "': " + std::strerror(err));
    }
    if (n == 0) break;
    if (s.size() + static_cast<uint64_t>(n) > max_bytes) {
      ::close(fd);
      throw FileError(prefix(what) + "'" + path + "' is larger than " + std::to_string(max_bytes) +
                      " bytes, more than such a file can sensibly hold; refused");
    }
    s.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return s;
}

// ------------------------------------------------------------------ temporaries

TempFile::TempFile(const std::string& target) : target_(target) {
  for (int attempt = 0; attempt < 8 && fd_ < 0; ++attempt) {
    path_ = target + ".tmp-" + std::to_string(::getpid()) + "-" + random_suffix();
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd_ < 0 && errno != EEXIST) break;
  }
  if (fd_ < 0)
    throw FileError("cannot write '" + target + "': cannot create a temporary beside it (" + std::strerror(errno) +
                    ")");
}

TempFile::~TempFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(path_.c_str());
}

void TempFile::write(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw FileError("cannot write '" + target_ + "': " + std::strerror(w < 0 ? errno : ENOSPC));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void TempFile::close() {
  if (fd_ < 0) return;
  const bool synced = ::fsync(fd_) == 0;
  const int err = errno;
  const bool closed = ::close(fd_) == 0;
  fd_ = -1;
  if (!synced || !closed) throw FileError("cannot write '" + target_ + "': " + std::strerror(synced ? errno : err));
}

void TempFile::commit() {
  close();
  if (::rename(path_.c_str(), target_.c_str()) != 0)
    throw FileError("cannot write '" + target_ + "': cannot move the finished file into place (" +
                    std::strerror(errno) + ")");
  committed_ = true;
  sync_folder(parent_folder(target_));
}

void write_file_atomically(const std::string& path, const std::string& data) {
  TempFile t(path);
  t.write(data.data(), data.size());
  t.commit();
}

// ------------------------------------------------------------------ claims

std::string parent_folder(const std::string& path) {
  const size_t s = path.find_last_of('/');
  if (s == std::string::npos) return ".";
  return s == 0 ? "/" : path.substr(0, s);
}


bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {}, sb {};
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

OutputClaim::~OutputClaim() {
  for (const auto& l : locks_) ::unlink(l.c_str());
}

void OutputClaim::claim(const std::string& path, bool force, const std::vector<std::string>& inputs) {
  const std::string dir = parent_folder(path);
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw FileError("cannot write '" + path + "': the folder '" + dir + "' does not exist");
  if (::access(dir.c_str(), W_OK) != 0) throw FileError("cannot write '" + path + "': the folder '" + dir + "' is not writable");
  for (const auto& in : inputs)
    if (!in.empty() && same_file(path, in))
      throw FileError("'" + path + "' is also an input of this command ('" + in +
                      "'); write the output to another file");
  if (::lstat(path.c_str(), &st) == 0) {
    if (!force) throw FileError("'" + path + "' already exists; pass --force to overwrite it");
    if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
      throw FileError("'" + path + "' is " + kind_of(st.st_mode) + "; refusing to replace it");
  }
  const std::string lock = path + ".lock";
  LockOwner owner;
  if (!take_lock(lock, path, false, &owner))
    throw FileError("'" + path + "' is being written by " +
                    (owner.pid > 0 ? "process " + std::to_string(owner.pid) + " on " + owner.host
                                   : std::string("another process")) +
                    " (lock '" + lock + "'); wait for it to finish, or remove the lock if that process is gone");
  locks_.push_back(lock);
}

bool take_lock(const std::string& lock, const std::string& target, bool foreign_is_stale, LockOwner* owner) {
  const std::string me = std::to_string(::getpid()) + " " + host_name() + "\n";
  for (int attempt = 0; attempt < 2; ++attempt) {
    const int fd = ::open(lock.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd >= 0) {
      const bool ok = ::write(fd, me.data(), me.size()) == static_cast<ssize_t>(me.size());
      ::close(fd);
      if (!ok) {
        ::unlink(lock.c_str());
        throw FileError("cannot write '" + target + "': cannot write its lock '" + lock + "'");
      }
      return true;
    }
    if (errno != EEXIST) throw FileError("cannot write '" + target + "': cannot create its lock '" + lock + "' (" +
                                         std::strerror(errno) + ")");
    // Someone holds it: a live process, or a stale lock of a process that was killed.
    std::string text;
    try {
      text = read_file_capped(lock, 4096);
    } catch (const FileError&) {
    }
    long pid = 0;
    char host[256] = {0};
    const bool parsed = std::sscanf(text.c_str(), "%ld %255s", &pid, host) == 2 && pid > 0;
    if (owner) *owner = parsed ? LockOwner{pid, host} : LockOwner{};
    const bool gone = parsed && host == host_name() && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
    if (gone || (parsed && foreign_is_stale && host != host_name())) {
      ::unlink(lock.c_str());  // its process is gone, or cannot be seen from here and the caller takes it over
      continue;
    }
    return false;
  }
  throw FileError("cannot write '" + target + "': its lock '" + lock + "' keeps reappearing");
}

}  // namespace mechscope
