// torch.save zip archives and safetensors files, read without Python (see foreign.h). Every length, offset,
// count and shape read from a file is checked against the file before it is used.
#include "core/io/foreign.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <functional>
#include <memory>
#include <set>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "core/util/files.h"
#include "core/util/json.h"

namespace mechscope {
using nlohmann::json;

namespace {

// ------------------------------------------------------------------ a file read by offset

class RandomAccessFile {
 public:
  explicit RandomAccessFile(const std::string& path) : path_(path) {
    try {
      fd_ = open_regular_file(path);  // a FIFO or device is refused without blocking
    } catch (const FileError& e) {
      throw ForeignFormatError(e.what());
    }
    struct stat st {};
    ::fstat(fd_, &st);
    size_ = static_cast<uint64_t>(st.st_size);
  }
  ~RandomAccessFile() { ::close(fd_); }
  RandomAccessFile(const RandomAccessFile&) = delete;
  RandomAccessFile& operator=(const RandomAccessFile&) = delete;
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  void read(uint64_t offset, void* dst, uint64_t n) const {
    if (offset > size_ || n > size_ - offset)
      throw ForeignFormatError("'" + path_ + "' is truncated or corrupt: a read of " + std::to_string(n) +
                               " bytes at offset " + std::to_string(offset) + " runs past its end (" +
                               std::to_string(size_) + " bytes)");
    auto* p = static_cast<char*>(dst);
    while (n > 0) {
      ssize_t got = ::pread(fd_, p, std::min<uint64_t>(n, 1u << 30), static_cast<off_t>(offset));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) throw ForeignFormatError("cannot read '" + path_ + "': " + (got < 0 ? std::strerror(errno) : "short read"));
      p += got;
      offset += static_cast<uint64_t>(got);
      n -= static_cast<uint64_t>(got);
    }
  }
  std::string read_string(uint64_t offset, uint64_t n) const {
    std::string s(n, '\0');
    if (n) read(offset, s.data(), n);
    return s;
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

uint16_t le16(const unsigned char* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t le32(const unsigned char* p) { return le16(p) | (static_cast<uint32_t>(le16(p + 2)) << 16); }
uint64_t le64(const unsigned char* p) { return le32(p) | (static_cast<uint64_t>(le32(p + 4)) << 32); }

// ------------------------------------------------------------------ dtypes

struct DtypeInfo {
  const char* safetensors;  // "F32"
  const char* storage;      // "FloatStorage"
  const char* name;         // "float32"
  at::ScalarType type;
  int64_t size;
};
const DtypeInfo kDtypes[] = {
    {"F32", "FloatStorage", "float32", at::kFloat, 4},     {"F64", "DoubleStorage", "float64", at::kDouble, 8},
    {"F16", "HalfStorage", "float16", at::kHalf, 2},       {"BF16", "BFloat16Storage", "bfloat16", at::kBFloat16, 2},
    {"I64", "LongStorage", "int64", at::kLong, 8},         {"I32", "IntStorage", "int32", at::kInt, 4},
    {"I16", "ShortStorage", "int16", at::kShort, 2},       {"I8", "CharStorage", "int8", at::kChar, 1},
    {"U8", "ByteStorage", "uint8", at::kByte, 1},          {"BOOL", "BoolStorage", "bool", at::kBool, 1},
};
const DtypeInfo* dtype_by_safetensors(const std::string& s) {
  for (const auto& d : kDtypes) if (s == d.safetensors) return &d;
  return nullptr;
}
const DtypeInfo* dtype_by_storage(const std::string& s) {
  for (const auto& d : kDtypes) if (s == d.storage) return &d;
  return nullptr;
}
const DtypeInfo* dtype_by_type(at::ScalarType t) {
  for (const auto& d : kDtypes) if (t == d.type) return &d;
  return nullptr;
}

// Element count of a shape, refusing negative sizes and overflow.
int64_t checked_numel(const std::vector<int64_t>& shape, const std::string& what) {
  int64_t n = 1;
  for (int64_t s : shape) {
    if (s < 0) throw ForeignFormatError(what + ": negative size in its shape");
    if (s != 0 && n > std::numeric_limits<int64_t>::max() / 8 / s)
      throw ForeignFormatError(what + ": its shape has more elements than any file can hold");
    n *= s;
  }
  return n;
}

// Floating tensors become float32 (the engine's dtype); others keep their type.
at::Tensor to_engine(at::Tensor t) {
  return at::isFloatingType(t.scalar_type()) ? t.to(at::kFloat) : t;
}

// ------------------------------------------------------------------ zip (stored entries only, zip64 aware)

struct ZipEntry {
  uint64_t local_offset = 0, size = 0;
  uint16_t method = 0;
};

std::map<std::string, ZipEntry> read_zip_directory(const RandomAccessFile& f) {
  const std::string where = "'" + f.path() + "'";
  const uint64_t size = f.size();
  if (size < 22) throw ForeignFormatError(where + " is too short to be a zip archive (" + std::to_string(size) + " bytes)");
  const uint64_t tail_len = std::min<uint64_t>(size, 22 + 65535 + 20);
  std::string tail = f.read_string(size - tail_len, tail_len);
  const auto* t = reinterpret_cast<const unsigned char*>(tail.data());
  int64_t eocd = -1;
  for (int64_t i = static_cast<int64_t>(tail_len) - 22; i >= 0; --i)
    if (le32(t + i) == 0x06054b50u) { eocd = i; break; }
  if (eocd < 0) throw ForeignFormatError(where + " is not a complete zip archive: no end-of-directory record (truncated?)");
  uint64_t entries = le16(t + eocd + 10), cd_size = le32(t + eocd + 12), cd_offset = le32(t + eocd + 16);
  if (entries == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_offset == 0xFFFFFFFFu) {
    // zip64: the locator sits just before the end-of-directory record.
    if (eocd < 20 || le32(t + eocd - 20) != 0x07064b50u)
      throw ForeignFormatError(where + ": zip64 archive without its zip64 locator (corrupt)");
    uint64_t z64 = le64(t + eocd - 20 + 8);
    unsigned char rec[56];
    f.read(z64, rec, sizeof rec);
    if (le32(rec) != 0x06064b50u) throw ForeignFormatError(where + ": bad zip64 end-of-directory record");
    entries = le64(rec + 32);
    cd_size = le64(rec + 40);
    cd_offset = le64(rec + 48);
  }
  if (cd_offset > size || cd_size > size - cd_offset)
    throw ForeignFormatError(where + ": the zip directory lies outside the file (truncated or corrupt)");
  if (entries > cd_size / 46) throw ForeignFormatError(where + ": the zip directory claims more entries than it holds");
  std::string cd = f.read_string(cd_offset, cd_size);
  const auto* c = reinterpret_cast<const unsigned char*>(cd.data());
  std::map<std::string, ZipEntry> out;
  uint64_t pos = 0;
  for (uint64_t e = 0; e < entries; ++e) {
    if (cd_size - pos < 46 || le32(c + pos) != 0x02014b50u)
      throw ForeignFormatError(where + ": zip directory entry " + std::to_string(e) + " is corrupt");
    ZipEntry z;
    z.method = le16(c + pos + 10);
    uint64_t csize = le32(c + pos + 20), usize = le32(c + pos + 24);
    const uint64_t nlen = le16(c + pos + 28), xlen = le16(c + pos + 30), clen = le16(c + pos + 32);
    z.local_offset = le32(c + pos + 42);
    if (cd_size - pos - 46 < nlen + xlen + clen)
      throw ForeignFormatError(where + ": zip directory entry " + std::to_string(e) + " runs past the directory");
    std::string name(reinterpret_cast<const char*>(c + pos + 46), nlen);
    // zip64 extra field: the 0xFFFFFFFF fields follow in the order usize, csize, offset.
    const unsigned char* x = c + pos + 46 + nlen;
    for (uint64_t xp = 0; xp + 4 <= xlen;) {
      const uint16_t id = le16(x + xp), len = le16(x + xp + 2);
      if (xp + 4 + len > xlen) break;
      if (id == 0x0001) {
        uint64_t q = xp + 4;
        auto take = [&](uint64_t& v) {
          if (v != 0xFFFFFFFFu) return;
          if (q + 8 > xp + 4 + len) throw ForeignFormatError(where + ": short zip64 field in entry '" + name + "'");
          v = le64(x + q);
          q += 8;
        };
        take(usize);
        take(csize);
        take(z.local_offset);
      }
      xp += 4 + len;
    }
    z.size = usize;
    if (z.method == 0 && csize != usize)
      throw ForeignFormatError(where + ": zip entry '" + name + "' has inconsistent sizes");
    pos += 46 + nlen + xlen + clen;
    out[name] = z;
  }
  return out;
}

// Offset of an entry's data (after its local header) after checking it lies inside the file.
uint64_t zip_data_offset(const RandomAccessFile& f, const std::string& name, const ZipEntry& z) {
  const std::string where = "'" + f.path() + "'";
  if (z.method != 0)
    throw ForeignFormatError(where + ": zip entry '" + name + "' is compressed (method " + std::to_string(z.method) +
                             "); torch.save stores entries uncompressed, so this is not a torch.save archive");
  unsigned char h[30];
  f.read(z.local_offset, h, sizeof h);
  if (le32(h) != 0x04034b50u) throw ForeignFormatError(where + ": zip entry '" + name + "' has a corrupt local header");
  const uint64_t data = z.local_offset + 30 + le16(h + 26) + le16(h + 28);
  if (data > f.size() || z.size > f.size() - data)
    throw ForeignFormatError(where + ": zip entry '" + name + "' runs past the end of the file (truncated?)");
  return data;
}

// ------------------------------------------------------------------ the pickle machine

struct PyObj;
using Obj = std::shared_ptr<PyObj>;
struct PyObj {
  enum Kind { None, Bool, Int, Float, Str, Bytes, Tuple, List, Dict, Global, Storage, Tensor } kind = None;
  int64_t i = 0;
  double f = 0;
  std::string s, s2;                      // Str/Bytes; Global: module s, name s2
  std::vector<Obj> items;                 // Tuple, List
  std::vector<std::pair<Obj, Obj>> dict;  // Dict, in insertion order
  at::Tensor t;                           // Storage (1-d), Tensor
  const DtypeInfo* dtype = nullptr;       // Storage, Tensor: the file's dtype
  uint32_t depth = 1;                     // nesting of containers, as built
};

const char* kind_name(PyObj::Kind k) {
  static const char* names[] = {"None", "bool", "int", "float", "str", "bytes", "tuple", "list", "dict", "global",
                                "storage", "tensor"};
  return names[k];
}

// Every object a pickle makes, bounded in number. A pickle may nest objects (or make them refer to each other)
// millions deep; destroying such a tree through shared_ptr would recurse once per level and overflow the stack, so
// the arena cuts every link first (~Arena) and then frees the objects one by one.
constexpr size_t kMaxPickleObjects = 2'000'000;   // a 1,000-tensor state dict makes about 10,000
constexpr uint32_t kMaxPickleDepth = 1'000;        // a state dict nests 3-4 levels
class Arena {
 public:
  ~Arena() {
    for (auto& o : all_) {
      o->items.clear();
      o->dict.clear();
    }
  }
  Obj make(PyObj::Kind k, const std::function<void(const std::string&)>& fail) {
    if (all_.size() >= kMaxPickleObjects)
      fail("more than " + std::to_string(kMaxPickleObjects) + " objects, far more than a state dict holds");
    auto o = std::make_shared<PyObj>();
    o->kind = k;
    all_.push_back(o);
    return o;
  }

 private:
  std::vector<Obj> all_;
};

class Unpickler {
 public:
  Unpickler(const RandomAccessFile& file, std::string data, std::string prefix,
            const std::map<std::string, ZipEntry>& zip)
      : file_(file), p_(std::move(data)), prefix_(std::move(prefix)), zip_(zip) {}

  Obj run() {
    while (true) {
      const uint8_t op = u8();
      switch (op) {
        case 0x80: u8(); break;                                   // PROTO
        case 0x95: bytes(8); break;                               // FRAME
        case '.':                                                 // STOP
          if (stack_.size() != 1) fail("STOP with " + std::to_string(stack_.size()) + " objects on the stack");
          return stack_.back();
        case '(': marks_.push_back(stack_.size()); break;         // MARK
        case 'N': push(make(PyObj::None)); break;
        case 0x88: case 0x89: { auto o = make(PyObj::Bool); o->i = op == 0x88; push(o); break; }
        case 'K': push_int(u8()); break;                          // BININT1
        case 'M': push_int(le16(reinterpret_cast<const unsigned char*>(bytes(2)))); break;
        case 'J': push_int(static_cast<int32_t>(le32(reinterpret_cast<const unsigned char*>(bytes(4))))); break;
        case 0x8a: {                                               // LONG1
          const uint8_t n = u8();
          if (n > 8) fail("integer of " + std::to_string(n) + " bytes");
          const auto* b = reinterpret_cast<const unsigned char*>(bytes(n));
          uint64_t v = 0;
          for (int k = n - 1; k >= 0; --k) v = (v << 8) | b[k];
          if (n > 0 && n < 8 && (b[n - 1] & 0x80)) v |= ~uint64_t{0} << (8 * n);  // sign-extend
          push_int(static_cast<int64_t>(v));
          break;
        }
        case 'G': {                                                // BINFLOAT, big-endian
          const auto* b = reinterpret_cast<const unsigned char*>(bytes(8));
          uint64_t v = 0;
          for (int k = 0; k < 8; ++k) v = (v << 8) | b[k];
          auto o = make(PyObj::Float);
          std::memcpy(&o->f, &v, 8);
          push(o);
          break;
        }
        case 'X': push_str(PyObj::Str, le32(reinterpret_cast<const unsigned char*>(bytes(4)))); break;
        case 0x8c: push_str(PyObj::Str, u8()); break;             // SHORT_BINUNICODE
        case 0x8d: push_str(PyObj::Str, le64(reinterpret_cast<const unsigned char*>(bytes(8)))); break;
        case 'T': push_str(PyObj::Str, le32(reinterpret_cast<const unsigned char*>(bytes(4)))); break;  // BINSTRING
        case 'U': push_str(PyObj::Str, u8()); break;              // SHORT_BINSTRING
        case 'B': push_str(PyObj::Bytes, le32(reinterpret_cast<const unsigned char*>(bytes(4)))); break;
        case 'C': push_str(PyObj::Bytes, u8()); break;
        case ')': push(make(PyObj::Tuple)); break;
        case 0x85: case 0x86: case 0x87: {                        // TUPLE1..3
          const size_t n = op - 0x84;
          need(n);
          auto o = make(PyObj::Tuple);
          o->items.assign(stack_.end() - n, stack_.end());
          stack_.resize(stack_.size() - n);
          nest(o);
          push(o);
          break;
        }
        case 't': { auto o = make(PyObj::Tuple); o->items = pop_mark(); nest(o); push(o); break; }
        case ']': push(make(PyObj::List)); break;
        case 'l': { auto o = make(PyObj::List); o->items = pop_mark(); nest(o); push(o); break; }
        case 'a': { Obj v = pop(); const Obj& l = expect(top(), PyObj::List, "APPEND"); l->items.push_back(v); nest(l, v); break; }
        case 'e': {
          auto v = pop_mark();
          const Obj& l = expect(top(), PyObj::List, "APPENDS");
          l->items.insert(l->items.end(), v.begin(), v.end());
          for (const auto& x : v) nest(l, x);
          break;
        }
        case '}': push(make(PyObj::Dict)); break;
        case 'd': { auto v = pop_mark(); auto o = make(PyObj::Dict); set_items(o, v); push(o); break; }
        case 's': { Obj v = pop(); Obj k = pop(); set_items(expect(top(), PyObj::Dict, "SETITEM"), {k, v}); break; }
        case 'u': { auto v = pop_mark(); set_items(expect(top(), PyObj::Dict, "SETITEMS"), v); break; }
        case 'c': {                                                // GLOBAL "module\nname\n"
          auto o = make(PyObj::Global);
          o->s = line();
          o->s2 = line();
          push(o);
          break;
        }
        case 0x93: {                                               // STACK_GLOBAL
          Obj name = pop(), mod = pop();
          auto o = make(PyObj::Global);
          o->s = expect(mod, PyObj::Str, "STACK_GLOBAL")->s;
          o->s2 = expect(name, PyObj::Str, "STACK_GLOBAL")->s;
          push(o);
          break;
        }
        case 'q': memo_put(u8()); break;                           // BINPUT
        case 'r': memo_put(le32(reinterpret_cast<const unsigned char*>(bytes(4)))); break;
        case 0x94: memo_put(static_cast<uint32_t>(memo_.size())); break;  // MEMOIZE
        case 'h': memo_get(u8()); break;                           // BINGET
        case 'j': memo_get(le32(reinterpret_cast<const unsigned char*>(bytes(4)))); break;
        case 'Q': push(persistent_load(pop())); break;             // BINPERSID
        case 'R': case 0x81: { Obj args = pop(); Obj fn = pop(); push(call(fn, args)); break; }  // REDUCE, NEWOBJ
        case 'b': {                                                // BUILD: state of an object; ignored for ours
          Obj state = pop();
          (void)state;
          const auto k = top()->kind;
          if (k != PyObj::Dict && k != PyObj::Tensor)
            fail("BUILD on a " + std::string(kind_name(k)) + ", which a state dict does not contain");
          break;
        }
        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", op);
          fail(std::string("pickle opcode ") + hex + " is not one a tensor state dict uses");
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw ForeignFormatError("'" + file_.path() + "': cannot read its pickle (" + prefix_ + "data.pkl, byte " +
                             std::to_string(pos_) + "): " + why);
  }
  uint8_t u8() {
    if (pos_ >= p_.size()) fail("it ends before STOP (truncated)");
    return static_cast<uint8_t>(p_[pos_++]);
  }
  const char* bytes(uint64_t n) {
    if (n > p_.size() - pos_) fail("it ends inside a " + std::to_string(n) + "-byte field (truncated)");
    const char* b = p_.data() + pos_;
    pos_ += n;
    return b;
  }
  std::string line() {
    const size_t nl = p_.find('\n', pos_);
    if (nl == std::string::npos || nl - pos_ > 256) fail("unterminated GLOBAL name");
    std::string s = p_.substr(pos_, nl - pos_);
    pos_ = nl + 1;
    return s;
  }
  void push(Obj o) {
    if (stack_.size() > kMaxPickleObjects) fail("stack grows without bound");
    stack_.push_back(std::move(o));
  }
  void push_int(int64_t v) { auto o = make(PyObj::Int); o->i = v; push(o); }
  void push_str(PyObj::Kind k, uint64_t n) { auto o = make(k); o->s.assign(bytes(n), n); push(o); }
  void need(size_t n) const {
    const size_t floor = marks_.empty() ? 0 : marks_.back();
    if (stack_.size() < floor + n) fail("stack underflow");
  }
  Obj pop() { need(1); Obj o = stack_.back(); stack_.pop_back(); return o; }
  Obj& top() { need(1); return stack_.back(); }
  std::vector<Obj> pop_mark() {
    if (marks_.empty()) fail("a MARK is missing");
    const size_t m = marks_.back();
    marks_.pop_back();
    if (m > stack_.size()) fail("MARK beyond the stack");
    std::vector<Obj> v(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return v;
  }
  const Obj& expect(const Obj& o, PyObj::Kind k, const char* op) const {
    if (o->kind != k) fail(std::string(op) + " expects a " + kind_name(k) + ", found a " + kind_name(o->kind));
    return o;
  }
  void set_items(const Obj& d, const std::vector<Obj>& kv) {
    if (kv.size() % 2) fail("odd number of dict items");
    for (size_t k = 0; k < kv.size(); k += 2) {
      d->dict.emplace_back(kv[k], kv[k + 1]);
      nest(d, kv[k]);
      nest(d, kv[k + 1]);
    }
  }
  void memo_put(uint32_t idx) {
    if (memo_.size() > kMaxPickleObjects) fail("memo grows without bound");
    memo_[idx] = top();
  }
  void memo_get(uint32_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) fail("memo entry " + std::to_string(idx) + " read before it is written");
    push(it->second);
  }
  Obj make(PyObj::Kind k) {
    return arena_.make(k, [this](const std::string& why) { fail(why); });
  }
  // Records that `parent` now contains its items (or dict entries): its depth is one more than theirs.
  void nest(const Obj& parent) {
    uint32_t d = parent->depth;
    for (const auto& c : parent->items) d = std::max(d, c->depth + 1);
    if (d > kMaxPickleDepth) fail("objects nested deeper than " + std::to_string(kMaxPickleDepth) + " levels, which no state dict is");
    parent->depth = d;
  }
  void nest(const Obj& parent, const Obj& child) {
    const uint32_t d = std::max<uint32_t>(parent->depth, child->depth + 1);
    if (d > kMaxPickleDepth) fail("objects nested deeper than " + std::to_string(kMaxPickleDepth) + " levels, which no state dict is");
    parent->depth = d;
  }
  int64_t as_int(const Obj& o, const char* what) const {
    if (o->kind != PyObj::Int) fail(std::string(what) + " is a " + kind_name(o->kind) + ", expected an int");
    return o->i;
  }
  std::vector<int64_t> as_ints(const Obj& o, const char* what) const {
    if (o->kind != PyObj::Tuple && o->kind != PyObj::List) fail(std::string(what) + " is not a tuple");
    if (o->items.size() > 64) fail(std::string(what) + " has " + std::to_string(o->items.size()) + " dimensions");
    std::vector<int64_t> v;
    for (const auto& x : o->items) v.push_back(as_int(x, what));
    return v;
  }

  // ('storage', torch.XStorage, key, location, numel) -> the record's data as a 1-d tensor.
  Obj persistent_load(const Obj& pid) {
    if (pid->kind != PyObj::Tuple || pid->items.size() < 5 || pid->items[0]->kind != PyObj::Str ||
        pid->items[0]->s != "storage")
      fail("a persistent id that is not a ('storage', ...) tuple");
    const Obj& type = pid->items[1];
    if (type->kind != PyObj::Global || type->s != "torch") fail("a storage whose type is not torch.<X>Storage");
    const DtypeInfo* dt = dtype_by_storage(type->s2);
    if (!dt) fail("storage type torch." + type->s2 + " is not supported");
    const std::string key = expect(pid->items[2], PyObj::Str, "storage key")->s;
    const int64_t numel = as_int(pid->items[4], "storage size");
    if (numel < 0) fail("negative storage size");
    auto cached = storages_.find(key);
    if (cached != storages_.end()) return cached->second;
    const std::string rec = prefix_ + "data/" + key;
    auto it = zip_.find(rec);
    if (it == zip_.end()) fail("storage '" + key + "' has no record " + rec + " in the archive");
    if (static_cast<uint64_t>(numel) > it->second.size / static_cast<uint64_t>(dt->size))
      fail("storage '" + key + "' claims " + std::to_string(numel) + " elements but its record holds " +
           std::to_string(it->second.size) + " bytes");
    const uint64_t off = zip_data_offset(file_, rec, it->second);
    auto o = make(PyObj::Storage);
    o->dtype = dt;
    o->t = at::empty({numel}, at::TensorOptions().dtype(dt->type));
    if (numel > 0) file_.read(off, o->t.data_ptr(), static_cast<uint64_t>(numel) * dt->size);
    storages_[key] = o;
    return o;
  }

  Obj call(const Obj& fn, const Obj& args) {
    if (fn->kind != PyObj::Global) fail("a call of a " + std::string(kind_name(fn->kind)));
    if (args->kind != PyObj::Tuple) fail("call arguments that are not a tuple");
    const std::string name = fn->s + "." + fn->s2;
    const auto& a = args->items;
    if (name == "collections.OrderedDict" || name == "builtins.dict") {
      auto d = make(PyObj::Dict);
      if (!a.empty() && a[0]->kind == PyObj::List)
        for (const auto& kv : a[0]->items) {
          if (kv->kind != PyObj::Tuple || kv->items.size() != 2) fail("OrderedDict items that are not pairs");
          d->dict.emplace_back(kv->items[0], kv->items[1]);
          nest(d, kv->items[0]);
          nest(d, kv->items[1]);
        }
      return d;
    }
    if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
      if (a.size() < 4) fail(name + " with " + std::to_string(a.size()) + " arguments");
      const Obj& st = a[0];
      if (st->kind != PyObj::Storage) fail(name + ": its first argument is not a storage");
      const int64_t offset = as_int(a[1], "storage offset");
      std::vector<int64_t> size = as_ints(a[2], "tensor size"), stride = as_ints(a[3], "tensor stride");
      if (size.size() != stride.size()) fail("a tensor whose size and stride have different lengths");
      const int64_t numel = checked_numel(size, "'" + file_.path() + "': a tensor");
      int64_t last = offset;
      if (offset < 0) fail("negative storage offset");
      for (size_t d = 0; d < size.size(); ++d) {
        if (stride[d] < 0) fail("negative stride");
        if (size[d] > 0 && stride[d] > 0) {
          if (stride[d] > (std::numeric_limits<int64_t>::max() - last) / size[d]) fail("stride overflow");
          last += (size[d] - 1) * stride[d];
        }
      }
      if (numel > 0 && last >= st->t.numel())
        fail("a tensor view reaches element " + std::to_string(last) + " of a storage of " +
             std::to_string(st->t.numel()));
      // A view with more elements than its storage holds overlaps itself (a stride-0 expand): a state dict of
      // parameters never stores one, and copying it could take gigabytes from a few bytes of file.
      if (numel > st->t.numel() - offset)
        fail("a tensor view of " + std::to_string(numel) + " elements over a storage of " +
             std::to_string(st->t.numel()) + " overlaps itself (an expanded view), which a state dict does not hold");
      const uint64_t bytes = static_cast<uint64_t>(numel) * static_cast<uint64_t>(st->dtype->size);
      if (bytes > view_budget_)
        fail("its tensor views copy more than twice the file's size, which shared storages alone cannot explain");
      view_budget_ -= bytes;
      auto o = make(PyObj::Tensor);
      o->dtype = st->dtype;
      o->t = numel == 0 ? at::empty(size, st->t.options()) : st->t.as_strided(size, stride, offset).clone();
      return o;
    }
    if (name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state") {
      if (a.empty() || a[0]->kind != PyObj::Tensor) fail(name + " without a tensor");
      return a[0];
    }
    fail("it calls " + name + ", which a tensor state dict does not contain (MechScope reads the output of "
         "torch.save(model.state_dict()), never a whole pickled model)");
  }

  Arena arena_;  // first member: destroyed last, after the stack, memo and storages let go
  const RandomAccessFile& file_;
  std::string p_;
  std::string prefix_;
  const std::map<std::string, ZipEntry>& zip_;
  size_t pos_ = 0;
  std::vector<Obj> stack_;
  std::vector<size_t> marks_;
  std::map<uint32_t, Obj> memo_;
  std::map<std::string, Obj> storages_;
  uint64_t view_budget_ = 2 * file_.size() + (uint64_t{64} << 20);  // bytes all views may copy, in total
};

// Finds the state dict in what the pickle returned: the dict itself, or one nested under a usual key.
const PyObj* find_state_dict(const PyObj& root, const std::string& where, int depth = 0) {
  if (root.kind != PyObj::Dict)
    throw ForeignFormatError(where + " holds a " + std::string(kind_name(root.kind)) + ", not a dict of tensors");
  size_t tensors = 0;
  for (const auto& [k, v] : root.dict) tensors += v->kind == PyObj::Tensor;
  if (tensors > 0) return &root;
  if (depth < 2)
    for (const char* key : {"state_dict", "model", "module", "model_state_dict"})
      for (const auto& [k, v] : root.dict)
        if (k->kind == PyObj::Str && k->s == key && v->kind == PyObj::Dict) return find_state_dict(*v, where, depth + 1);
  std::vector<std::string> keys;
  for (const auto& [k, v] : root.dict)
    if (k->kind == PyObj::Str && keys.size() < 8) keys.push_back(k->s);
  std::string list;
  for (const auto& k : keys) list += (list.empty() ? "" : ", ") + k;
  throw ForeignFormatError(where + " holds a dict without tensors (keys: " + (list.empty() ? "none" : list) + ")");
}

}  // namespace

// ------------------------------------------------------------------ public readers

TensorFile read_torch_zip(const std::string& path) {
  RandomAccessFile f(path);
  const std::string where = "'" + path + "'";
  unsigned char magic[4] = {0, 0, 0, 0};
  if (f.size() >= 4) f.read(0, magic, 4);
  if (!(magic[0] == 'P' && magic[1] == 'K')) {
    if (magic[0] == 0x80)
      throw ForeignFormatError(where + " is a legacy (pre-1.6, non-zip) torch.save file, which MechScope does not read; "
                               "re-save it with a current torch (torch.save(torch.load(f), f)) or as safetensors");
    throw ForeignFormatError(where + " is not a torch.save archive (no zip signature)");
  }
  auto zip = read_zip_directory(f);
  std::string pkl;
  for (const auto& [name, e] : zip)
    if (name.size() >= 8 && name.compare(name.size() - 8, 8, "data.pkl") == 0 &&
        std::count(name.begin(), name.end(), '/') == 1) {
      pkl = name;
      break;
    }
  if (pkl.empty()) throw ForeignFormatError(where + " is a zip archive without <name>/data.pkl: not written by torch.save");
  const std::string prefix = pkl.substr(0, pkl.size() - 8);
  if (auto bo = zip.find(prefix + "byteorder"); bo != zip.end()) {
    if (bo->second.size > 16) throw ForeignFormatError(where + ": corrupt byteorder record");
    std::string order = f.read_string(zip_data_offset(f, bo->first, bo->second), bo->second.size);
    if (order != "little") throw ForeignFormatError(where + " was written on a big-endian machine, which is not supported");
  }
  const ZipEntry& pe = zip.at(pkl);
  if (pe.size > (uint64_t{1} << 30)) throw ForeignFormatError(where + ": its data.pkl is implausibly large");
  std::string data = f.read_string(zip_data_offset(f, pkl, pe), pe.size);
  Unpickler up(f, std::move(data), prefix, zip);
  Obj root = up.run();
  const PyObj* sd = find_state_dict(*root, where);
  TensorFile out;
  out.format = "torch-zip";
  std::set<std::string> seen;
  for (const auto& [k, v] : sd->dict) {
    if (v->kind != PyObj::Tensor) continue;  // e.g. a step counter beside the tensors
    if (k->kind != PyObj::Str) throw ForeignFormatError(where + ": a state dict key that is not a string");
    if (!seen.insert(k->s).second) throw ForeignFormatError(where + ": tensor '" + k->s + "' appears twice");
    out.dtypes[k->s] = v->dtype->name;
    out.tensors.emplace_back(k->s, to_engine(v->t));
  }
  return out;
}

namespace {

// A safetensors file's tensors as its header lists them, every extent checked against the file, sorted by offset.
struct SafetensorsItem {
  std::string name;
  const DtypeInfo* dt;
  std::vector<int64_t> shape;
  uint64_t b, e;
};
std::vector<SafetensorsItem> safetensors_items(const RandomAccessFile& f, const std::string& where, uint64_t& base) {
  if (f.size() < 8) throw ForeignFormatError(where + " is too short to be a safetensors file");
  unsigned char h8[8];
  f.read(0, h8, 8);
  const uint64_t hlen = le64(h8);
  if (hlen > f.size() - 8 || hlen > (uint64_t{100} << 20))
    throw ForeignFormatError(where + ": its header length (" + std::to_string(hlen) + " bytes) exceeds the file (" +
                             std::to_string(f.size()) + " bytes): not a safetensors file, or truncated");
  json header;
  try {
    header = parse_json(f.read_string(8, hlen));
  } catch (const json::exception& e) {
    throw ForeignFormatError(where + ": its safetensors header is not valid JSON (" + e.what() + ")");
  } catch (const JsonDepthError& e) {
    throw ForeignFormatError(where + ": its safetensors header: " + e.what());
  }
  if (!header.is_object()) throw ForeignFormatError(where + ": its safetensors header is not a JSON object");
  base = 8 + hlen;
  const uint64_t data_len = f.size() - base;
  using Item = SafetensorsItem;
  std::vector<Item> items;
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") continue;
    const std::string what = where + ": tensor '" + name + "'";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      throw ForeignFormatError(what + " lacks dtype, shape or data_offsets");
    Item it;
    it.name = name;
    try {
      const std::string dt = v.at("dtype").get<std::string>();
      it.dt = dtype_by_safetensors(dt);
      if (!it.dt) throw ForeignFormatError(what + " has dtype " + dt + ", which MechScope does not read");
      it.shape = v.at("shape").get<std::vector<int64_t>>();
      auto off = v.at("data_offsets").get<std::vector<uint64_t>>();
      if (off.size() != 2) throw ForeignFormatError(what + ": data_offsets must hold two numbers");
      it.b = off[0];
      it.e = off[1];
    } catch (const json::exception& e) {
      throw ForeignFormatError(what + ": malformed entry (" + e.what() + ")");
    }
    if (it.shape.size() > 64) throw ForeignFormatError(what + " has too many dimensions");
    const int64_t numel = checked_numel(it.shape, what);
    if (it.b > it.e || it.e > data_len)
      throw ForeignFormatError(what + ": its data [" + std::to_string(it.b) + ", " + std::to_string(it.e) +
                               ") lies outside the file's " + std::to_string(data_len) + " data bytes (truncated?)");
    if (it.e - it.b != static_cast<uint64_t>(numel) * static_cast<uint64_t>(it.dt->size))
      throw ForeignFormatError(what + ": " + std::to_string(it.e - it.b) + " data bytes for " + std::to_string(numel) +
                               " elements of " + it.dt->safetensors);
    items.push_back(std::move(it));
  }
  std::sort(items.begin(), items.end(), [](const Item& x, const Item& y) { return x.b < y.b; });
  // Tensors own disjoint byte ranges (so that together they cannot claim more memory than the file holds).
  for (size_t k = 1; k < items.size(); ++k)
    if (items[k].b < items[k - 1].e)
      throw ForeignFormatError(where + ": tensors '" + items[k - 1].name + "' and '" + items[k].name +
                               "' overlap in the file (bytes " + std::to_string(items[k].b) + " to " +
                               std::to_string(items[k - 1].e) + "); the header is corrupt");
  return items;
}

// In its stored dtype.
at::Tensor read_safetensors_item(const RandomAccessFile& f, const SafetensorsItem& it, uint64_t base) {
  at::Tensor t = at::empty(it.shape, at::TensorOptions().dtype(it.dt->type));
  if (it.e > it.b) f.read(base + it.b, t.data_ptr(), it.e - it.b);
  return t;
}
}  // namespace

TensorFile read_safetensors(const std::string& path) {
  RandomAccessFile f(path);
  const std::string where = "'" + path + "'";
  uint64_t base = 0;
  const std::vector<SafetensorsItem> items = safetensors_items(f, where, base);
  TensorFile out;
  out.format = "safetensors";
  for (const auto& it : items) {
    out.dtypes[it.name] = it.dt->name;
    out.tensors.emplace_back(it.name, to_engine(read_safetensors_item(f, it, base)));
  }
  return out;
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> data;
  uint64_t off = 0;
  for (const auto& [name, t0] : tensors) {
    at::Tensor t = t0.detach().to(at::kCPU).contiguous();
    const DtypeInfo* dt = dtype_by_type(t.scalar_type());
    if (!dt) throw ForeignFormatError("cannot write '" + name + "' to safetensors: dtype " + c10::toString(t.scalar_type()));
    const uint64_t n = static_cast<uint64_t>(t.numel()) * dt->size;
    header[name] = {{"dtype", dt->safetensors}, {"shape", t.sizes().vec()}, {"data_offsets", {off, off + n}}};
    off += n;
    data.push_back(t);
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8) h += ' ';  // data aligned to 8 bytes, as the reference writer does
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  FILE* fp = std::fopen(tmp.c_str(), "wb");
  if (!fp) throw ForeignFormatError("cannot write '" + tmp + "': " + std::strerror(errno));
  bool ok = true;
  unsigned char len[8];
  for (int k = 0; k < 8; ++k) len[k] = static_cast<unsigned char>((h.size() >> (8 * k)) & 0xFF);
  ok &= std::fwrite(len, 1, 8, fp) == 8;
  ok &= std::fwrite(h.data(), 1, h.size(), fp) == h.size();
  for (const auto& t : data) {
    const size_t n = static_cast<size_t>(t.numel()) * t.element_size();
    ok &= n == 0 || std::fwrite(t.data_ptr(), 1, n, fp) == n;
  }
  ok &= std::fflush(fp) == 0 && ::fsync(fileno(fp)) == 0;
  ok &= std::fclose(fp) == 0;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw ForeignFormatError("cannot write '" + path + "': " + std::strerror(errno));
  }
}

namespace {

// Each format by its own structure: safetensors is an 8-byte little-endian header length that fits the file, then
// '{'. (Its first byte is the length's low byte, which can be 0x80 or 'P' like the other formats' magic.)
bool is_safetensors(const RandomAccessFile& f) {
  unsigned char m[9] = {0};
  if (f.size() < 9) return false;
  f.read(0, m, 9);
  return m[8] == '{' && le64(m) <= f.size() - 8;
}

}  // namespace

double WeightFileSize::engine_bytes(at::ScalarType floating_dtype) const {
  double total = static_cast<double>(other_bytes);
  for (const auto& [dt, n] : floating) total += static_cast<double>(n) * static_cast<double>(c10::elementSize(floating_dtype));
  return total;
}

WeightFileSize weight_file_size(const std::string& path) {
  RandomAccessFile f(path);
  WeightFileSize out;
  if (is_safetensors(f)) {
    uint64_t base = 0;
    for (const auto& it : safetensors_items(f, "'" + path + "'", base)) {
      if (at::isFloatingType(it.dt->type)) out.floating[it.dt->type] += (it.e - it.b) / static_cast<uint64_t>(it.dt->size);
      else out.other_bytes += it.e - it.b;
    }
    return out;
  }
  out.exact = false;  // a torch.save archive: its storages as stored (their dtypes are in the pickle)
  out.other_bytes = f.size();
  return out;
}

TensorSource open_tensor_file(const std::string& path) {
  auto f = std::make_shared<const RandomAccessFile>(path);
  TensorSource out;
  if (is_safetensors(*f)) {
    uint64_t base = 0;
    out.format = "safetensors";
    for (const auto& it : safetensors_items(*f, "'" + path + "'", base)) {
      out.dtypes[it.name] = it.dt->name;
      out.tensors.emplace_back(it.name, [f, it, base] { return read_safetensors_item(*f, it, base); });
    }
    return out;
  }
  TensorFile whole = read_tensor_file(path);
  out.format = whole.format;
  out.dtypes = std::move(whole.dtypes);
  for (auto& [name, t] : whole.tensors) out.tensors.emplace_back(name, [t = std::move(t)] { return t; });
  return out;
}

TensorFile read_tensor_file(const std::string& path) {
  RandomAccessFile f(path);
  if (is_safetensors(f)) return read_safetensors(path);
  unsigned char m[2] = {0, 0};
  if (f.size() >= 2) f.read(0, m, 2);
  if ((m[0] == 'P' && m[1] == 'K') || m[0] == 0x80) return read_torch_zip(path);
  throw ForeignFormatError("'" + path + "' is neither a torch.save archive nor a safetensors file");
}

}  // namespace mechscope
