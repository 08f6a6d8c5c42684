// Implementation of the HDF5 helpers. Every failing call becomes h5::Error naming the file/object.
#include "core/io/hdf5.h"

#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <chrono>
#include <cstdlib>
#include <mutex>

#include "core/util/files.h"
#include "core/util/sha256.h"

namespace mechscope::h5 {

namespace {
// libhdf5 registers an exit handler that closes every open object; after a close that failed (a full disk) it
// walks freed state and crashes (SIGSEGV at exit, after the right error was printed). Every file MechScope opens is
// closed by its Handle, so the handler has nothing to do: turn it off before any other HDF5 call.
const bool kNoExitHandler = [] {
  H5dont_atexit();
  return true;
}();

bool g_probe_child = false;
}  // namespace

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    o.id_ = H5I_INVALID_HID;
  }
  return *this;
}

void Handle::reset() {
  if (id_ < 0) return;
  QuietErrors quiet;  // a close that fails (a full disk) is reported by the flush or write before it
  switch (H5Iget_type(id_)) {
    case H5I_FILE: H5Fclose(id_); break;
    case H5I_GROUP: H5Gclose(id_); break;
    case H5I_DATASET: H5Dclose(id_); break;
    case H5I_DATASPACE: H5Sclose(id_); break;
    case H5I_DATATYPE: H5Tclose(id_); break;
    case H5I_ATTR: H5Aclose(id_); break;
    case H5I_GENPROP_LST: H5Pclose(id_); break;
    default: break;
  }
  id_ = H5I_INVALID_HID;
}

QuietErrors::QuietErrors() {
  H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}
QuietErrors::~QuietErrors() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }

int64_t Shape::numel() const {
  int64_t n = 1;
  for (auto d : dims) n *= d;
  return n;
}

std::string Shape::str() const {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

static Handle check(hid_t id, const std::string& what) {
  if (id < 0) throw Error(what);
  return Handle(id);
}
static void check_status(herr_t st, const std::string& what) {
  if (st < 0) throw Error(what);
}

namespace {

constexpr char kSealMagic[] = "MECHSCOPE-SEAL-1\n";
constexpr char kHdf5Signature[] = "\x89HDF\r\n\x1a\n";

std::string read_prefix(const std::string& path, size_t n) {
  int fd = -1;
  try {
    fd = open_regular_file(path);  // never blocks on a FIFO
  } catch (const FileError&) {
    return {};
  }
  std::string s(n, '\0');
  const ssize_t got = ::pread(fd, s.data(), n, 0);
  ::close(fd);
  s.resize(got > 0 ? static_cast<size_t>(got) : 0);
  return s;
}

// A file whose length is mostly holes (a sparse file: `truncate -s 20G`) was not written by MechScope, which writes
// every byte; hashing its claimed length would read gigabytes of zeros for minutes. Copies made sparse by a
// tool (cp --sparse=always) keep their data, so only files whose holes are most of their length are refused.
void refuse_sparse(const std::string& path, uint64_t size) {
  if (size < (uint64_t{64} << 20)) return;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return;
  uint64_t data = 0;
  off_t pos = 0;
  for (int extents = 0; extents < 1000000 && static_cast<uint64_t>(pos) < size; ++extents) {
    const off_t start = ::lseek(fd, pos, SEEK_DATA);
    if (start < 0) break;  // no more data (ENXIO), or holes are not reported here
    off_t end = ::lseek(fd, start, SEEK_HOLE);
    if (end < 0) end = static_cast<off_t>(size);
    data += static_cast<uint64_t>(end - start);
    pos = end;
  }
  ::close(fd);
  if (data * 2 < size)
    throw Error("'" + path + "' is corrupt: it claims " + std::to_string(size) + " bytes but only " +
                std::to_string(data) + " are stored (a sparse file); MechScope never writes one");
}

// A sealed file: the seal must match. A file with a user block but no seal is a damaged seal (or not ours).
void verify_seal(const std::string& path, uint64_t size) {
  if (g_probe_child) return;  // the parent verified it
  const std::string head = read_prefix(path, kUserBlock + 8);
  const bool has_block = head.size() == kUserBlock + 8 && head.compare(kUserBlock, 8, kHdf5Signature, 8) == 0;
  const bool has_magic = head.compare(0, sizeof kSealMagic - 1, kSealMagic) == 0;
  if (!has_magic) {
    if (has_block)
      throw Error("'" + path + "' is corrupt: its integrity header (the first 512 bytes) is damaged");
    return;  // no user block: a file from before the seal, or from another tool
  }
  unsigned long long length = 0;
  char digest[65] = {0};
  if (std::sscanf(head.c_str() + sizeof kSealMagic - 1, "length %llu\nsha256 %64[0-9a-f]\n", &length, digest) != 2)
    throw Error("'" + path + "' is corrupt: its integrity header (the first 512 bytes) is damaged");
  if (size != length)
    throw Error("'" + path + "' is " + (size < length ? "truncated" : "corrupt") + ": it has " + std::to_string(size) +
                " bytes, " + std::to_string(length) + " were written");
  refuse_sparse(path, size);
  if (sha256_file_from(path, kUserBlock) != digest)
    throw Error("'" + path + "' is corrupt: its content does not match the SHA-256 written with it");
}

}  // namespace

bool looks_like_hdf5(const std::string& path) {
  const std::string head = read_prefix(path, kUserBlock + 8);
  return head.compare(0, 8, kHdf5Signature, 8) == 0 || head.compare(0, sizeof kSealMagic - 1, kSealMagic) == 0 ||
         (head.size() == kUserBlock + 8 && head.compare(kUserBlock, 8, kHdf5Signature, 8) == 0);
}

void seal(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw Error("cannot seal '" + path + "': " + std::strerror(errno));
  const std::string head = read_prefix(path, kUserBlock + 8);
  if (head.size() != kUserBlock + 8 || head.compare(kUserBlock, 8, kHdf5Signature, 8) != 0)
    throw Error("cannot seal '" + path + "': it has no 512-byte user block");
  std::string block = std::string(kSealMagic) + "length " + std::to_string(st.st_size) + "\nsha256 " +
                      sha256_file_from(path, kUserBlock) + "\n";
  block.resize(kUserBlock, '\0');
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) throw Error("cannot seal '" + path + "': " + std::strerror(errno));
  const bool ok = ::pwrite(fd, block.data(), block.size(), 0) == static_cast<ssize_t>(block.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) throw Error("cannot seal '" + path + "': write failed");
}

void remove_stale_temporaries(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  const std::string prefix = (slash == std::string::npos ? path : path.substr(slash + 1)) + ".tmp-";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.compare(0, prefix.size(), prefix) != 0 || name.size() == prefix.size()) continue;
    std::string pid = name.substr(prefix.size());
    const size_t dash = pid.find('-');  // "<pid>-<random>" (core/util/files.h), or "<pid>" of older builds
    if (dash != std::string::npos) {
      if (pid.size() - dash - 1 != 16 || pid.find_first_not_of("0123456789abcdef", dash + 1) != std::string::npos) continue;
      pid.resize(dash);
    }
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos || pid.size() > 9) continue;
    if (::kill(static_cast<pid_t>(std::stol(pid)), 0) != 0 && errno == ESRCH)
      std::remove((slash == std::string::npos ? name : dir + name).c_str());
  }
  ::closedir(d);
}

File File::create(const std::string& path) {
  QuietErrors quiet;
  File f;
  f.path_ = path;
  // The 1.8 file format or later: superblock v2 and v2 object headers carry checksums of all metadata, so a
  // corrupted file is refused by the library with an error instead of being followed into a crash
  // (docs/robustness.md). Readable by HDF5 >= 1.8 (h5py included).
  Handle fapl(check(H5Pcreate(H5P_FILE_ACCESS), "cannot create HDF5 file access properties"));
  check_status(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_LATEST), "cannot set the HDF5 format version");
  Handle fcpl(check(H5Pcreate(H5P_FILE_CREATE), "cannot create HDF5 file creation properties"));
  check_status(H5Pset_userblock(fcpl.get(), kUserBlock), "cannot reserve the HDF5 user block");
  f.h_ = check(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl.get(), fapl.get()),
               "cannot create HDF5 file '" + path + "' (is the folder writable?)");
  return f;
}

namespace {
// The checks before libhdf5 sees a file: it exists, is a regular file, and its seal (when it has one) matches.
// The last file verified on this thread is remembered (by device, inode, size and modification time), so that
// check_in_child's verification and the read that follows hash the file once.
struct Verified {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = -1;
  struct timespec mtime {};
};
thread_local Verified g_verified;

void preflight(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw Error("cannot open '" + path + "': no such file");
  if (S_ISDIR(st.st_mode)) throw Error("cannot open '" + path + "': it is a folder, not a file");
  if (!S_ISREG(st.st_mode)) throw Error("cannot open '" + path + "': it is " + file_kind(path) + ", not a regular file");
  const Verified& v = g_verified;
  if (v.dev == st.st_dev && v.ino == st.st_ino && v.size == st.st_size && v.mtime.tv_sec == st.st_mtim.tv_sec &&
      v.mtime.tv_nsec == st.st_mtim.tv_nsec)
    return;
  verify_seal(path, static_cast<uint64_t>(st.st_size));
  g_verified = Verified{st.st_dev, st.st_ino, st.st_size, st.st_mtim};
}
}  // namespace

File File::open_read(const std::string& path) {
  QuietErrors quiet;
  preflight(path);
  struct stat st {};
  ::stat(path.c_str(), &st);
  htri_t is = H5Fis_hdf5(path.c_str());
  if (is <= 0)
    throw Error("'" + path + "' is not an HDF5 file (" + std::to_string(st.st_size) +
                " bytes without the HDF5 signature); MechScope checkpoints and results are HDF5 (.h5)");
  File f;
  f.path_ = path;
  f.h_ = check(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT),
               "'" + path + "' has an HDF5 signature but cannot be opened: the file is truncated or corrupt");
  return f;
}

void File::flush() {
  QuietErrors quiet;
  check_status(H5Fflush(h_.get(), H5F_SCOPE_GLOBAL), "cannot write '" + path_ + "' to disk (is the disk full?)");
}

bool exists(hid_t loc, const std::string& name) {
  QuietErrors quiet;
  return H5Lexists(loc, name.c_str(), H5P_DEFAULT) > 0;
}

Handle create_group(hid_t loc, const std::string& name, const std::string& where) {
  QuietErrors quiet;
  return check(H5Gcreate2(loc, name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
               where + ": cannot create group '" + name + "'");
}

Handle open_group(hid_t loc, const std::string& name, const std::string& where) {
  QuietErrors quiet;
  if (H5Lexists(loc, name.c_str(), H5P_DEFAULT) <= 0) throw Error(where + ": group '" + name + "' is missing");
  return check(H5Gopen2(loc, name.c_str(), H5P_DEFAULT), where + ": '" + name + "' cannot be opened as a group");
}

#if H5_VERSION_GE(1, 12, 0)
using LinkInfo = H5L_info2_t;
#define MECHSCOPE_H5LITERATE H5Literate2
#else
using LinkInfo = H5L_info_t;
#define MECHSCOPE_H5LITERATE H5Literate
#endif

static herr_t collect_name(hid_t, const char* name, const LinkInfo*, void* out) {
  static_cast<std::vector<std::string>*>(out)->push_back(name);
  return 0;
}

std::vector<std::string> list_children(hid_t group, const std::string& where) {
  QuietErrors quiet;
  std::vector<std::string> names;
  hsize_t idx = 0;
  check_status(MECHSCOPE_H5LITERATE(group, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_name, &names),
               where + ": cannot list the group (corrupt file?)");
  return names;
}

static Handle scalar_space() { return check(H5Screate(H5S_SCALAR), "cannot create dataspace"); }

static Handle utf8_string_type() {
  Handle t = check(H5Tcopy(H5T_C_S1), "cannot create string type");
  H5Tset_size(t.get(), H5T_VARIABLE);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  return t;
}

void write_attr_string(hid_t obj, const std::string& name, const std::string& value, const std::string& where) {
  QuietErrors quiet;
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
  Handle type = utf8_string_type();
  Handle space = scalar_space();
  Handle attr = check(H5Acreate2(obj, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
                      where + ": cannot create attribute '" + name + "'");
  const char* ptr = value.c_str();
  check_status(H5Awrite(attr.get(), type.get(), &ptr), where + ": cannot write attribute '" + name + "'");
}

static void write_attr_scalar(hid_t obj, const std::string& name, hid_t type, const void* v, const std::string& where) {
  QuietErrors quiet;
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
  Handle space = scalar_space();
  Handle attr = check(H5Acreate2(obj, name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                      where + ": cannot create attribute '" + name + "'");
  check_status(H5Awrite(attr.get(), type, v), where + ": cannot write attribute '" + name + "'");
}

void write_attr_int(hid_t obj, const std::string& name, int64_t value, const std::string& where) {
  write_attr_scalar(obj, name, H5T_STD_I64LE, &value, where);
}

void write_attr_double(hid_t obj, const std::string& name, double value, const std::string& where) {
  write_attr_scalar(obj, name, H5T_IEEE_F64LE, &value, where);
}

bool has_attr(hid_t obj, const std::string& name) {
  QuietErrors quiet;
  return H5Aexists(obj, name.c_str()) > 0;
}

std::optional<std::string> read_attr_string(hid_t obj, const std::string& name, const std::string& where) {
  QuietErrors quiet;
  if (H5Aexists(obj, name.c_str()) <= 0) return std::nullopt;
  Handle attr = check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), where + ": cannot open attribute '" + name + "'");
  Handle type = check(H5Aget_type(attr.get()), where + ": attribute '" + name + "' has no type");
  if (H5Tget_class(type.get()) != H5T_STRING) throw Error(where + ": attribute '" + name + "' is not a string");
  Handle space = check(H5Aget_space(attr.get()), where + ": attribute '" + name + "' has no dataspace");
  if (H5Sget_simple_extent_npoints(space.get()) != 1)
    throw Error(where + ": attribute '" + name + "' should hold one string");
  if (H5Tis_variable_str(type.get()) > 0) {
    Handle mem = utf8_string_type();
    char* ptr = nullptr;
    check_status(H5Aread(attr.get(), mem.get(), &ptr), where + ": cannot read attribute '" + name + "'");
    std::string out = ptr ? ptr : "";
    if (ptr) H5free_memory(ptr);
    return out;
  }
  size_t size = H5Tget_size(type.get());
  if (size == 0 || size > (size_t(1) << 30)) throw Error(where + ": attribute '" + name + "' has an invalid size");
  std::string buf(size, '\0');
  Handle mem = check(H5Tcopy(H5T_C_S1), "string type");
  H5Tset_size(mem.get(), size);
  check_status(H5Aread(attr.get(), mem.get(), buf.data()), where + ": cannot read attribute '" + name + "'");
  buf.resize(std::strlen(buf.c_str()));
  return buf;
}

std::optional<int64_t> read_attr_int(hid_t obj, const std::string& name, const std::string& where) {
  QuietErrors quiet;
  if (H5Aexists(obj, name.c_str()) <= 0) return std::nullopt;
  Handle attr = check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), where + ": cannot open attribute '" + name + "'");
  Handle type = check(H5Aget_type(attr.get()), where + ": attribute '" + name + "' has no type");
  if (H5Tget_class(type.get()) != H5T_INTEGER)
    throw Error(where + ": attribute '" + name + "' should be an integer");
  Handle space = check(H5Aget_space(attr.get()), where + ": attribute '" + name + "' has no dataspace");
  if (H5Sget_simple_extent_npoints(space.get()) != 1)
    throw Error(where + ": attribute '" + name + "' should hold one integer");
  int64_t v = 0;
  check_status(H5Aread(attr.get(), H5T_NATIVE_INT64, &v), where + ": cannot read attribute '" + name + "'");
  return v;
}

static Handle write_dataset(hid_t loc, const std::string& name, hid_t file_type, hid_t mem_type, const void* data,
                            const std::vector<int64_t>& dims, const std::string& where) {
  QuietErrors quiet;
  Handle space;
  if (dims.empty()) {
    space = scalar_space();
  } else {
    std::vector<hsize_t> d(dims.begin(), dims.end());
    space = check(H5Screate_simple(static_cast<int>(d.size()), d.data(), nullptr), where + ": bad shape for " + name);
  }
  Handle ds = check(H5Dcreate2(loc, name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                    where + ": cannot create dataset '" + name + "'");
  int64_t n = 1;
  for (auto v : dims) n *= v;
  if (n > 0)
    check_status(H5Dwrite(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
                 where + ": cannot write dataset '" + name + "' (disk full?)");
  return ds;
}

Handle write_float(hid_t loc, const std::string& name, const float* data, const std::vector<int64_t>& dims,
                   const std::string& where) {
  return write_dataset(loc, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data, dims, where);
}

Handle write_int64(hid_t loc, const std::string& name, const int64_t* data, const std::vector<int64_t>& dims,
                   const std::string& where) {
  return write_dataset(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, data, dims, where);
}

Handle write_double(hid_t loc, const std::string& name, const double* data, const std::vector<int64_t>& dims,
                    const std::string& where) {
  return write_dataset(loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, data, dims, where);
}

static Handle open_dataset(hid_t loc, const std::string& name, const std::string& where) {
  if (H5Lexists(loc, name.c_str(), H5P_DEFAULT) <= 0) throw Error(where + ": dataset '" + name + "' is missing");
  return check(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), where + ": '" + name + "' cannot be opened as a dataset");
}

Shape dataset_shape(hid_t loc, const std::string& name, const std::string& where) {
  QuietErrors quiet;
  Handle ds = open_dataset(loc, name, where);
  Handle space = check(H5Dget_space(ds.get()), where + ": dataset '" + name + "' has no dataspace");
  int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0 || rank > 32) throw Error(where + ": dataset '" + name + "' has an invalid rank");
  std::vector<hsize_t> d(rank);
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), d.data(), nullptr);
  Shape s;
  for (auto v : d) s.dims.push_back(static_cast<int64_t>(v));
  return s;
}

bool dataset_is_float(hid_t loc, const std::string& name, const std::string& where) {
  QuietErrors quiet;
  Handle ds = open_dataset(loc, name, where);
  Handle type = check(H5Dget_type(ds.get()), where + ": dataset '" + name + "' has no type");
  return H5Tget_class(type.get()) == H5T_FLOAT;
}

static void read_dataset(hid_t loc, const std::string& name, hid_t mem_type, void* out, const std::string& where) {
  QuietErrors quiet;
  Handle ds = open_dataset(loc, name, where);
  check_status(H5Dread(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out),
               where + ": cannot read dataset '" + name + "': the file is truncated or corrupt, or the type does not convert");
}

void read_float(hid_t loc, const std::string& name, float* out, const std::string& where) {
  read_dataset(loc, name, H5T_NATIVE_FLOAT, out, where);
}

void read_int64(hid_t loc, const std::string& name, int64_t* out, const std::string& where) {
  read_dataset(loc, name, H5T_NATIVE_INT64, out, where);
}

void read_double(hid_t loc, const std::string& name, double* out, const std::string& where) {
  read_dataset(loc, name, H5T_NATIVE_DOUBLE, out, where);
}

// ------------------------------------------------------------------ sizes before allocation

ByteBudget::ByteBudget(const std::string& path, std::string where) : where_(std::move(where)) {
  struct stat st {};
  left_ = ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) + (uint64_t{1} << 20) : 0;
}

void ByteBudget::take(const Shape& shape, const std::string& name) {
  uint64_t n = 4;
  for (int64_t d : shape.dims) {
    if (d < 0 || (d > 0 && n > left_ / static_cast<uint64_t>(d))) n = left_ + 1;
    else n *= static_cast<uint64_t>(d);
  }
  if (n > left_)
    throw Error(where_ + ": dataset " + name + " of shape " + shape.str() +
                " claims more data than the file holds; the file is corrupt");
  left_ -= n;
}

// ------------------------------------------------------------------ reading in a child process

void check_in_child(const std::string& path, const std::function<void()>& read) {
  if (g_probe_child) return;
  if (const char* env = std::getenv("MECHSCOPE_HDF5_IN_PROCESS"); env && std::string(env) == "1") return;
  {
    QuietErrors quiet;
    preflight(path);  // a missing, truncated or altered file is named as such, before any process starts
  }
  struct stat st {};
  const uint64_t size = ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30 + size / (50u << 20));
  // The child's refusal travels back through a pipe: a file libhdf5 fails on in the child is refused with that
  // message, and the parent never hands it to libhdf5 (which may corrupt the heap on its way to the error: the
  // parent, whose heap differs, then crashed where the child had not).
  int fds[2] = {-1, -1};
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw Error("cannot read '" + path + "': cannot start the process that checks it (" + std::strerror(errno) + ")");
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw Error("cannot read '" + path + "': cannot start the process that checks it (" + std::strerror(errno) + ")");
  }
  if (pid == 0) {
    // The child: default signal dispositions (a crash must end it, not a handler the parent installed), read, and
    // leave without running exit handlers or flushing the parent's buffers.
    for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL}) ::signal(sig, SIG_DFL);
    const int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);  // glibc's "double free" notes are the parent's to explain
    if (null >= 0) ::dup2(null, 2);
    g_probe_child = true;
    ::close(fds[0]);
    int code = 0;
    std::string message;
    try {
      read();
    } catch (const std::exception& e) {
      code = 1;
      message = e.what();
    } catch (...) {
      code = 1;
      message = "'" + path + "' could not be read";
    }
    if (code) {
      message.resize(std::min<size_t>(message.size(), 4000));  // well inside a pipe's buffer: the write cannot block
      const ssize_t written = ::write(fds[1], message.data(), message.size());
      (void)written;
    }
    ::_exit(code);
  }
  ::close(fds[1]);
  struct ReadEnd {  // closed on every way out
    int fd;
    ~ReadEnd() { ::close(fd); }
  } read_end{fds[0]};
  int status = 0;
  while (true) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) throw Error("cannot read '" + path + "': lost the process that checks it");
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      throw Error("'" + path + "' is corrupt or hostile: the HDF5 library did not finish reading it in " +
                  std::to_string(30 + size / (50u << 20)) + " s (checked in a separate process); refused");
    }
    ::poll(nullptr, 0, 2);
  }
  if (WIFSIGNALED(status))
    throw Error("'" + path + "' is corrupt or hostile: the HDF5 library crashed reading it (" +
                std::string(::strsignal(WTERMSIG(status))) +
                ", in a separate process that checks files before this one reads them); refused");
  if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
    std::string message(4096, '\0');
    const ssize_t n = ::read(read_end.fd, message.data(), message.size());
    message.resize(n > 0 ? static_cast<size_t>(n) : 0);
    throw Error(message.empty() ? "'" + path + "' could not be read (in the process that checks it)" : message);
  }
}

}  // namespace mechscope::h5
