// Thin RAII layer over the HDF5 C API for MechScope's files: handles that close themselves, string and
// integer attributes, float32/int64 datasets of any rank, and errors that name the file and object.
// Must not: know about models or checkpoints. HDF5 objects of one file stay in one thread (TOOLCHAIN.md).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <hdf5.h>

namespace mechscope::h5 {

/// Error with the file path already in the message.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Owns an hid_t and closes it with the matching H5*close.
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id) : id_(id) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : id_(o.id_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept;
  ~Handle() { reset(); }
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset();

 private:
  hid_t id_ = H5I_INVALID_HID;
};

/// Silences HDF5's own error printing for the lifetime of the object (errors become exceptions instead).
class QuietErrors {
 public:
  QuietErrors();
  ~QuietErrors();

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

struct Shape {
  std::vector<int64_t> dims;
  int64_t numel() const;
  std::string str() const;
};

class File {
 public:
  static File create(const std::string& path);         ///< truncates
  static File open_read(const std::string& path);      ///< checks existence and HDF5 signature first
  const std::string& path() const { return path_; }
  hid_t id() const { return h_.get(); }
  void flush();
  void close() { h_.reset(); }

 private:
  Handle h_;
  std::string path_;
};

/// MechScope's integrity seal. File::create reserves a 512-byte HDF5 user block (ignored by every HDF5 reader,
/// h5py included); seal() writes into it, after the file is closed, a header with the file's length and the
/// SHA-256 of everything after the block. File::open_read verifies it before libhdf5 sees the file, so a
/// truncated or corrupted file is refused with a message instead of reaching libhdf5 1.10, which can crash on
/// corrupt metadata (docs/robustness.md). Files without a user block (written before the seal existed, or by
/// other tools) are opened as before.
inline constexpr uint64_t kUserBlock = 512;
void seal(const std::string& path);
/// Whether the file starts with the HDF5 signature or MechScope's seal, or has the signature after a user block.
bool looks_like_hdf5(const std::string& path);
/// Removes `path`.tmp-<pid>[-<random>] files left by writers that were killed (their process no longer exists).
void remove_stale_temporaries(const std::string& path);

/// Runs `read` — a reader of `path` that uses libhdf5 and plain allocation only (no torch compute, no Qt) — in a
/// short-lived child process first (fork, no exec). libhdf5 1.10 can crash or hang on a hostile file even when
/// its metadata checksums agree; in the child that costs the child, not the process holding the user's work.
/// When the child dies from a signal or runs past its deadline (30 s + 1 s per 50 MB), throws Error naming the
/// file and the signal; otherwise returns, and the caller reads the file in-process with the same code, which
/// then follows the same path through libhdf5 on the same bytes (an exception in the child is left for the
/// in-process read to throw, with its own type and message). Inside the child, or with
/// MECHSCOPE_HDF5_IN_PROCESS=1 (for debuggers), it only returns. docs/robustness.md explains the design.
void check_in_child(const std::string& path, const std::function<void()>& read);

/// The bytes a file's datasets may claim in all. MechScope stores them uncompressed, so together they cannot exceed
/// the file (plus 1 MiB): a hostile file that declares huge datasets without storing them (compressed, or never
/// written and read back as fill values) is refused from its shapes, before anything is allocated. Counted at 4 bytes
/// per element (float32); int64 datasets may claim up to twice the file, still bounded.
class ByteBudget {
 public:
  ByteBudget(const std::string& path, std::string where);
  /// Takes a dataset's share; throws Error "<where>: dataset <name> of shape [...] claims more data than the file
  /// holds; the file is corrupt" when the budget is spent.
  void take(const Shape& shape, const std::string& name);

 private:
  std::string where_;
  uint64_t left_ = 0;
};

// Location = a file or a group id. `where` is used in error messages.
bool exists(hid_t loc, const std::string& name);
Handle create_group(hid_t loc, const std::string& name, const std::string& where);
Handle open_group(hid_t loc, const std::string& name, const std::string& where);
std::vector<std::string> list_children(hid_t group, const std::string& where);

void write_attr_string(hid_t obj, const std::string& name, const std::string& value, const std::string& where);
void write_attr_int(hid_t obj, const std::string& name, int64_t value, const std::string& where);
void write_attr_double(hid_t obj, const std::string& name, double value, const std::string& where);
bool has_attr(hid_t obj, const std::string& name);
std::optional<std::string> read_attr_string(hid_t obj, const std::string& name, const std::string& where);
std::optional<int64_t> read_attr_int(hid_t obj, const std::string& name, const std::string& where);

/// Writes a contiguous float32 / int64 dataset of the given shape (rank 0 = scalar).
Handle write_float(hid_t loc, const std::string& name, const float* data, const std::vector<int64_t>& dims,
                   const std::string& where);
Handle write_int64(hid_t loc, const std::string& name, const int64_t* data, const std::vector<int64_t>& dims,
                   const std::string& where);
/// A float64 dataset (collected tables keep the digits their CSV cells have).
Handle write_double(hid_t loc, const std::string& name, const double* data, const std::vector<int64_t>& dims,
                    const std::string& where);
/// Shape of a dataset, and whether its element type is a float / integer class.
Shape dataset_shape(hid_t loc, const std::string& name, const std::string& where);
bool dataset_is_float(hid_t loc, const std::string& name, const std::string& where);
/// Reads a dataset converted to float32 / int64 into `out` (sized by the caller from dataset_shape).
void read_float(hid_t loc, const std::string& name, float* out, const std::string& where);
void read_int64(hid_t loc, const std::string& name, int64_t* out, const std::string& where);
void read_double(hid_t loc, const std::string& name, double* out, const std::string& where);

}  // namespace mechscope::h5
