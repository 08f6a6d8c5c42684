// The digest cache (see digest_cache.h).
#include "core/util/digest_cache.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/util/files.h"
#include "core/util/sha256.h"

namespace mechscope {

namespace {

constexpr size_t kMaxEntries = 512;

int64_t ns_of(const struct timespec& t) { return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec; }

// What identifies the file's present contents without reading them.
nlohmann::json stat_key(const struct stat& st) {
  return {{"size", static_cast<int64_t>(st.st_size)}, {"inode", static_cast<int64_t>(st.st_ino)},
          {"device", static_cast<int64_t>(st.st_dev)}, {"mtime_ns", ns_of(st.st_mtim)}, {"ctime_ns", ns_of(st.st_ctim)}};
}

nlohmann::json load_cache(const std::string& file) {
  try {
    nlohmann::json j = nlohmann::json::parse(read_file_capped(file, 8 << 20, "digest cache"));
    if (j.is_object() && j.value("version", 0) == 1 && j.contains("files") && j["files"].is_object()) return j;
  } catch (const std::exception&) {  // missing, corrupt or unreadable: start afresh
  }
  return {{"version", 1}, {"files", nlohmann::json::object()}};
}

}  // namespace

std::string digest_cache_path() {
  const char* off = std::getenv("MECHSCOPE_DIGEST_CACHE");
  if (off && std::string(off) == "0") return "";
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  if (xdg && *xdg == '/') return std::string(xdg) + "/mechscope/digests.json";
  if (home && *home == '/') return std::string(home) + "/.cache/mechscope/digests.json";
  return "";
}

std::string sha256_file_cached(const std::string& path, uint64_t min_bytes) {
  struct stat st {};
  const std::string cache = digest_cache_path();
  if (cache.empty() || ::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<uint64_t>(st.st_size) < min_bytes)
    return sha256_file(path);
  std::error_code ec;
  const std::string real = std::filesystem::canonical(path, ec).string();
  if (ec) return sha256_file(path);
  const nlohmann::json key = stat_key(st);
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  nlohmann::json j = load_cache(cache);
  nlohmann::json& files = j["files"];
  std::string digest;
  if (files.contains(real) && files[real].is_object() && files[real].value("key", nlohmann::json()) == key &&
      files[real].value("sha256", "").size() == 64) {
    digest = files[real]["sha256"].get<std::string>();
  } else {
    digest = sha256_file(path);
    struct stat after {};  // changed while being read: not remembered
    if (::stat(path.c_str(), &after) != 0 || stat_key(after) != key) return digest;
  }
  files[real] = {{"key", key}, {"sha256", digest}, {"used", now}};
  if (files.size() > kMaxEntries) {  // forget the least recently used
    std::vector<std::pair<int64_t, std::string>> by_use;
    for (const auto& [name, v] : files.items())
      by_use.emplace_back(v.is_object() ? v.value("used", int64_t{0}) : 0, name);
    std::sort(by_use.begin(), by_use.end());
    for (size_t i = 0; i + kMaxEntries < by_use.size(); ++i) files.erase(by_use[i].second);
  }
  try {
    std::filesystem::create_directories(parent_folder(cache));
    write_file_atomically(cache, j.dump());
  } catch (const std::exception&) {  // a read-only home or a full disk: the digest stands without the cache
  }
  return digest;
}

}  // namespace mechscope
