// File helpers shared by the reader tests: whole-file read and write, the message of a call that throws, and an
// edit of a checkpoint with raw HDF5 calls (as another tool would) that seals it again afterwards.
#pragma once

#include <exception>
#include <fstream>
#include <iterator>
#include <string>

#include <hdf5.h>

#include "core/io/hdf5.h"

namespace mechscope::test {

inline std::string read_all(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_all(const std::string& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}

/// The message of the exception `f` throws, or "" when it returns.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

/// Opens a checkpoint read-write with the raw HDF5 API; closing it seals the file again, so that the checks after
/// the seal (format, version, configs, parameters) are what a test reaches.
struct Edit {
  explicit Edit(const std::string& p) : path(p), id(H5Fopen(p.c_str(), H5F_ACC_RDWR, H5P_DEFAULT)) {}
  ~Edit() {
    H5Fclose(id);
    h5::seal(path);
  }
  Edit(const Edit&) = delete;
  Edit& operator=(const Edit&) = delete;
  std::string path;
  hid_t id;
};

}  // namespace mechscope::test
