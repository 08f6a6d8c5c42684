// SHA-256 of a file, for provenance in results files (which checkpoint made this figure) and the checkpoint seal,
// computed by OpenSSL's libcrypto.
#pragma once
#include <string>
namespace mechscope {
/// Lower-case hex digest; throws std::runtime_error if the file cannot be read.
std::string sha256_file(const std::string& path);
/// Digest of the bytes from `offset` to the end of the file.
std::string sha256_file_from(const std::string& path, unsigned long long offset);
std::string sha256_hex(const std::string& bytes);
/// The same by our plain FIPS 180-4 code (the reference the tests hold libcrypto's to).
std::string sha256_hex_reference(const std::string& bytes);
}  // namespace mechscope
