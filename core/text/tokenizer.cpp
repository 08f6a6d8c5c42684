// tokenizer.json, read and run as the `tokenizers` package (0.2x) does: see tokenizer.h and docs/text.md.
#include "core/text/tokenizer.h"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#define ONIG_ESCAPE_UCHAR_COLLISION  // Oniguruma would otherwise #define UChar, which ICU declares
#include <oniguruma.h>

#include <algorithm>
#include <cctype>
#include <array>
#include <filesystem>
#include <map>
#include <optional>
#include <mutex>
#include <queue>
#include <sstream>
#include <unordered_map>

#include "core/util/files.h"
#include "core/util/json.h"

namespace mechscope {

using nlohmann::json;

namespace {

// ---------------------------------------------------------------- UTF-8

// The code point at s[i] and its length in bytes; 0 bytes for an ill-formed sequence.
std::pair<char32_t, size_t> utf8_at(const std::string& s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return {c, 1};
  size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
  if (n == 0 || c > 0xF4 || i + n > s.size()) return {0, 0};
  char32_t cp = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return {0, 0};
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  // Overlong forms, surrogates and values beyond U+10FFFF are ill-formed.
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
    return {0, 0};
  return {cp, n};
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Throws unless `s` is well-formed UTF-8, naming the first bad byte.
void require_utf8(const std::string& s, const std::string& what) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_at(s, i).second;
    if (n == 0) throw TokenizerError(what + " is not valid UTF-8 (byte " + std::to_string(i) + ")");
    i += n;
  }
}

// Bytes to text as Rust's String::from_utf8_lossy does: each maximal ill-formed subpart becomes one U+FFFD.
std::string utf8_lossy(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const auto [cp, n] = utf8_at(s, i);
    if (n > 0) {
      out.append(s, i, n);
      i += n;
      continue;
    }
    // The maximal subpart: the lead byte and the continuation bytes that a well-formed sequence could still have.
    const auto u = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = u(i);
    size_t len = 1;
    if (c >= 0xC2 && c <= 0xF4) {
      const size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
      unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range (Unicode Table 3-7)
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
      if (i + 1 < s.size() && u(i + 1) >= lo && u(i + 1) <= hi) {
        len = 2;
        while (len < need && i + len < s.size() && (u(i + len) & 0xC0) == 0x80) ++len;
      }
    }
    out += "\xEF\xBF\xBD";
    i += len;
  }
  return out;
}

// Rust's \s and \w (Unicode): White_Space; Alphabetic, marks, decimal digits, connector punctuation, Join_Control.
bool is_space(char32_t c) { return u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_WHITE_SPACE); }
bool is_word(char32_t c) {
  const auto u = static_cast<UChar32>(c);
  if (u_hasBinaryProperty(u, UCHAR_ALPHABETIC) || u_hasBinaryProperty(u, UCHAR_JOIN_CONTROL)) return true;
  const int8_t t = u_charType(u);
  return t == U_NON_SPACING_MARK || t == U_ENCLOSING_MARK || t == U_COMBINING_SPACING_MARK ||
         t == U_DECIMAL_DIGIT_NUMBER || t == U_CONNECTOR_PUNCTUATION;
}
// The character that ends s[0, end).
char32_t last_char(const std::string& s, size_t end) {
  size_t i = end;
  while (i > 0 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) --i;
  return i > 0 ? utf8_at(s, i - 1).first : 0;
}

// ---------------------------------------------------------------- Oniguruma

class Regex {
 public:
  Regex(const std::string& pattern, const std::string& where) {
    static std::once_flag once;
    std::call_once(once, [] {
      OnigEncoding enc = ONIG_ENCODING_UTF8;
      onig_initialize(&enc, 1);
    });
    OnigErrorInfo info;
    const auto* p = reinterpret_cast<const OnigUChar*>(pattern.data());
    const int r = onig_new(&re_, p, p + pattern.size(), ONIG_OPTION_NONE, ONIG_ENCODING_UTF8, ONIG_SYNTAX_DEFAULT, &info);
    if (r != ONIG_NORMAL) {
      OnigUChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
      onig_error_code_to_str(msg, r, &info);
      re_ = nullptr;
      throw TokenizerError(where + ": the regular expression " + json(pattern).dump() + " does not compile: " +
                           reinterpret_cast<const char*>(msg));
    }
  }
  ~Regex() {
    if (re_) onig_free(re_);
  }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Every match [begin, end) from left to right, as the onig crate's find_iter gives them (an empty match right
  // after the previous one is skipped by one character). A pattern that backtracks without end on the input (a
  // hostile file's "(a+)+$") stops at a bound on its retries: an error, not a hang. Tokenizers' patterns retry a
  // few times per character; the bound is a thousand times that, and at least ten million.
  std::vector<std::pair<size_t, size_t>> find_all(const std::string& s) const {
    std::vector<std::pair<size_t, size_t>> out;
    OnigMatchParam* mp = onig_new_match_param();
    onig_initialize_match_param(mp);
    const unsigned long bound = std::max<unsigned long>(10000000UL, 1000UL * s.size());
    onig_set_retry_limit_in_match_of_match_param(mp, bound);
    onig_set_retry_limit_in_search_of_match_param(mp, bound);
    OnigRegion* region = onig_region_new();
    const auto* str = reinterpret_cast<const OnigUChar*>(s.data());
    const OnigUChar* end = str + s.size();
    size_t from = 0;
    bool have_last = false;
    size_t last_end = 0;
    while (from <= s.size()) {
      onig_region_clear(region);
      const int r = onig_search_with_param(re_, str, end, str + from, end, region, ONIG_OPTION_NONE, mp);
      if (r == ONIG_MISMATCH) break;
      if (r < 0) {
        onig_region_free(region, 1);
        onig_free_match_param(mp);
        throw TokenizerError(r == ONIGERR_RETRY_LIMIT_IN_MATCH_OVER || r == ONIGERR_RETRY_LIMIT_IN_SEARCH_OVER
                                 ? "the tokenizer's regular expression backtracks without end on this input (over " +
                                       std::to_string(bound) + " retries); refused"
                                 : "the tokenizer's regular expression failed on the input (Oniguruma error " +
                                       std::to_string(r) + ")");
      }
      const auto b = static_cast<size_t>(region->beg[0]), e = static_cast<size_t>(region->end[0]);
      if (b == e && have_last && last_end == e) {
        const size_t n = from < s.size() ? std::max<size_t>(1, utf8_at(s, from).second) : 1;
        from += n;
        continue;
      }
      out.emplace_back(b, e);
      from = e;
      have_last = true;
      last_end = e;
    }
    onig_region_free(region, 1);
    onig_free_match_param(mp);
    return out;
  }

 private:
  OnigRegex re_ = nullptr;
};

// ---------------------------------------------------------------- the pipeline's parts

// A piece of the input on its way to the model: its current text and the input bytes it came from.
struct Piece {
  std::string text;
  size_t begin = 0, end = 0;
  bool exact = true;        // the text is the input's bytes [begin, end) (no normalizer changed it), or, when
  bool byte_mapped = false; // byte_mapped, their byte-level characters (one per input byte)
  int64_t added = -1;       // an added token's index (found by split_added) instead of text
};

// Input offsets of bytes of an exact piece's text. A byte-mapped piece's characters each stand for one input byte:
// the offset of byte k is the number of characters before it, counted on from the previous call when k does not
// go back (callers ask in increasing order: linear in the piece, not quadratic).
struct SourceOffsets {
  const Piece& p;
  size_t byte = 0, chars = 0;
  size_t operator()(size_t k) {
    if (!p.byte_mapped) return p.begin + k;
    if (k < byte) byte = chars = 0;
    for (; byte < k; ++byte) chars += (static_cast<unsigned char>(p.text[byte]) & 0xC0) != 0x80 ? 1 : 0;
    return p.begin + chars;
  }
};

// The piece's sub-range [b, e) of its text, with input offsets where they are known.
Piece sub_piece(const Piece& p, size_t b, size_t e, SourceOffsets* at = nullptr) {
  Piece out;
  out.text = p.text.substr(b, e - b);
  out.begin = p.begin;
  out.end = p.end;
  out.exact = p.exact;
  out.byte_mapped = p.byte_mapped;
  if (p.exact) {
    SourceOffsets own{p};
    SourceOffsets& offset = at ? *at : own;
    out.begin = offset(b);
    out.end = offset(e);
  }
  return out;
}

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

// Splits a piece by matches (offsets, is_match) as tokenizers' NormalizedString::split does; empty pieces vanish.
std::vector<Piece> split_by(const Piece& p, std::vector<std::pair<std::pair<size_t, size_t>, bool>> m, Behavior how) {
  std::vector<std::pair<std::pair<size_t, size_t>, bool>> keep;  // (offsets, remove)
  bool prev = false;
  switch (how) {
    case Behavior::Isolated:
      for (auto& [o, is] : m) keep.push_back({o, false});
      break;
    case Behavior::Removed:
      keep = m;
      break;
    case Behavior::Contiguous:
      for (auto& [o, is] : m) {
        if (is == prev && !keep.empty()) keep.back().first.second = o.second;
        else keep.push_back({o, false});
        prev = is;
      }
      break;
    case Behavior::MergedWithPrevious:
      for (auto& [o, is] : m) {
        if (is && !prev && !keep.empty()) keep.back().first.second = o.second;
        else keep.push_back({o, false});
        prev = is;
      }
      break;
    case Behavior::MergedWithNext:
      std::reverse(m.begin(), m.end());
      for (auto& [o, is] : m) {
        if (is && !prev && !keep.empty()) keep.back().first.first = o.first;
        else keep.push_back({o, false});
        prev = is;
      }
      std::reverse(keep.begin(), keep.end());
      break;
  }
  std::vector<Piece> out;
  SourceOffsets offset{p};
  for (const auto& [o, remove] : keep)
    if (!remove && o.second > o.first) out.push_back(sub_piece(p, o.first, o.second, &offset));
  return out;
}

// Matches and the gaps between them, in order (tokenizers' Pattern::find_matches).
std::vector<std::pair<std::pair<size_t, size_t>, bool>> with_gaps(const std::vector<std::pair<size_t, size_t>>& found,
                                                                  size_t size) {
  std::vector<std::pair<std::pair<size_t, size_t>, bool>> out;
  if (size == 0) return {{{0, 0}, false}};
  size_t prev = 0;
  for (const auto& [b, e] : found) {
    if (prev != b) out.push_back({{prev, b}, false});
    out.push_back({{b, e}, true});
    prev = e;
  }
  if (prev != size) out.push_back({{prev, size}, false});
  return out;
}

// The byte <-> character table of byte-level BPE (GPT-2's bytes_to_unicode): printable Latin-1 bytes stand for
// themselves, the others for U+0100 onwards in byte order.
const std::array<char32_t, 256>& byte_chars() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    std::array<bool, 256> direct{};
    for (int b = 0; b < 256; ++b) direct[b] = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    char32_t n = 0;
    for (int b = 0; b < 256; ++b) t[b] = direct[b] ? static_cast<char32_t>(b) : 256 + n++;
    return t;
  }();
  return table;
}

struct AddedToken {
  std::string content;
  int64_t id = 0;
  bool special = false, single_word = false, lstrip = false, rstrip = false, normalized = false;
  std::string pattern;  // what is matched: the content, or its normalized form
};

enum class Prepend { Always, First, Never };

struct PreTokenizer {
  enum Kind { ByteLevel, Split, Digits, Metaspace } kind = ByteLevel;
  bool add_prefix_space = false, use_regex = true, individual_digits = false, invert = false;
  std::shared_ptr<Regex> regex;
  Behavior behavior = Behavior::Isolated;
  std::string replacement;  // Metaspace: its character (UTF-8)
  Prepend prepend = Prepend::Always;
  bool split = true;
};

// A normalizer step: a Unicode normalization form (ICU), a replacement of every match, a prefix, or stripped
// whitespace.
struct NormalizerStep {
  enum Kind { Form, Replace, Prepend, Strip } kind = Form;
  const icu::Normalizer2* form = nullptr;
  std::shared_ptr<Regex> regex;
  std::string content;
  bool left = false, right = false;
};

// A decoder step over the list of token strings (tokenizers' decode_chain); the result is joined without separator.
struct DecoderStep {
  enum Kind { ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace } kind = ByteLevel;
  std::shared_ptr<Regex> regex;
  std::string content;  // Replace: the replacement; Strip: the character; Metaspace: the replacement character
  size_t start = 0, stop = 0;
  Prepend prepend = Prepend::Always;
};

struct TemplatePiece {
  bool special = false;  // else the sequence ("A")
  std::vector<int64_t> ids;
  std::vector<std::string> tokens;
};

}  // namespace

struct Tokenizer::Impl {
  std::string where;
  // model: BPE
  std::unordered_map<std::string, int64_t> vocab;
  std::vector<std::string> id_token;  // id -> string (model and added); empty where no token has the id
  std::map<std::pair<int64_t, int64_t>, std::pair<int64_t, int64_t>> merges;  // pair -> (rank, new id)
  bool byte_fallback = false, fuse_unk = false, ignore_merges = false;
  int64_t unk_id = -1;
  std::vector<NormalizerStep> normalizers;  // in order
  std::vector<std::string> normalizer_names;
  std::vector<PreTokenizer> pre;
  std::vector<DecoderStep> decoders;  // empty: tokens joined with spaces, as tokenizers does without a decoder
  std::vector<std::string> decoder_names;
  std::vector<AddedToken> added;
  std::array<std::vector<size_t>, 256> added_by_byte;  // the added tokens whose pattern starts with each byte
  std::vector<bool> special_id;
  std::vector<TemplatePiece> single;  // TemplateProcessing's "single"; empty: none
  std::string description;

  std::string normalize(const std::string& s) const;
  std::vector<Piece> split_added(const Piece& p, bool normalized_tokens, std::vector<EncodedToken>* found) const;
  std::vector<Piece> pre_tokenize(std::vector<Piece> pieces) const;
  void bpe(const Piece& p, std::vector<EncodedToken>& out) const;
};

namespace {

// ---------------------------------------------------------------- reading tokenizer.json

// A JSON object's keys must all be known: anything else is refused by name.
void only_keys(const json& j, std::initializer_list<const char*> known, const std::string& what) {
  if (!j.is_object()) throw TokenizerError(what + " is not a JSON object");
  for (const auto& [k, v] : j.items()) {
    bool ok = false;
    for (const char* n : known) ok = ok || k == n;
    if (!ok) throw TokenizerError(what + " has '" + k + "', which MechScope's tokenizer does not implement");
  }
}

bool flag(const json& j, const char* key, bool def, const std::string& what) {
  if (!j.contains(key) || j.at(key).is_null()) return def;
  if (!j.at(key).is_boolean()) throw TokenizerError(what + "." + key + " is not true or false");
  return j.at(key).get<bool>();
}

const icu::Normalizer2* icu_normalizer(const std::string& type, const std::string& what) {
  UErrorCode st = U_ZERO_ERROR;
  const icu::Normalizer2* n = type == "NFC"    ? icu::Normalizer2::getNFCInstance(st)
                              : type == "NFD"  ? icu::Normalizer2::getNFDInstance(st)
                              : type == "NFKC" ? icu::Normalizer2::getNFKCInstance(st)
                              : type == "NFKD" ? icu::Normalizer2::getNFKDInstance(st)
                                               : nullptr;
  if (!n || U_FAILURE(st))
    throw TokenizerError(what + ": normalizer '" + type + "' is not implemented (NFC, NFD, NFKC, NFKD, Replace, Prepend, "
                         "Strip and Sequence are)");
  return n;
}

// A literal as an Oniguruma pattern matching exactly it.
std::string escape_regex(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string("\\^$.|?*+()[]{}-#&~ \t\n\r").find(c) != std::string::npos) out += '\\';
    out += c;
  }
  return out;
}

// {"Regex": ...} or {"String": ...} as a compiled pattern.
std::shared_ptr<Regex> pattern_regex(const json& pat, const std::string& what) {
  if (pat.is_object() && pat.contains("Regex") && pat.size() == 1)
    return std::make_shared<Regex>(pat.at("Regex").get<std::string>(), what);
  if (pat.is_object() && pat.contains("String") && pat.size() == 1)
    return std::make_shared<Regex>(escape_regex(pat.at("String").get<std::string>()), what);
  throw TokenizerError(what + ": pattern " + pat.dump() + " is neither {\"Regex\": ...} nor {\"String\": ...}");
}

void read_normalizer(Tokenizer::Impl& d, const json& j, const std::string& what) {
  if (j.is_null()) return;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    only_keys(j, {"type", "normalizers"}, what);
    for (const auto& n : j.at("normalizers")) read_normalizer(d, n, what + ".normalizers[]");
    return;
  }
  NormalizerStep n;
  if (type == "Replace") {
    only_keys(j, {"type", "pattern", "content"}, what);
    n.kind = NormalizerStep::Replace;
    n.regex = pattern_regex(j.at("pattern"), what);
    n.content = j.at("content").get<std::string>();
  } else if (type == "Prepend") {
    only_keys(j, {"type", "prepend"}, what);
    n.kind = NormalizerStep::Prepend;
    n.content = j.at("prepend").get<std::string>();
  } else if (type == "Strip") {
    only_keys(j, {"type", "strip_left", "strip_right"}, what);
    n.kind = NormalizerStep::Strip;
    n.left = flag(j, "strip_left", true, what);
    n.right = flag(j, "strip_right", true, what);
  } else {
    only_keys(j, {"type"}, what + " (" + type + ")");
    n.form = icu_normalizer(type, what);
  }
  d.normalizers.push_back(std::move(n));
  d.normalizer_names.push_back(type);
}

Behavior behavior_of(const json& j, const std::string& what) {
  const std::string b = j.is_string() ? j.get<std::string>() : "";
  if (b == "Removed") return Behavior::Removed;
  if (b == "Isolated") return Behavior::Isolated;
  if (b == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::MergedWithNext;
  if (b == "Contiguous") return Behavior::Contiguous;
  throw TokenizerError(what + ": split behavior " + j.dump() + " is not one tokenizers defines");
}

// Metaspace's replacement character and prepend scheme (older files: add_prefix_space instead of the scheme).
void read_metaspace(const json& j, std::string& replacement, Prepend& prepend, const std::string& what) {
  replacement = j.at("replacement").get<std::string>();
  require_utf8(replacement, what + ".replacement");
  if (replacement.empty() || utf8_at(replacement, 0).second != replacement.size())
    throw TokenizerError(what + ".replacement " + json(replacement).dump() + " is not one character");
  if (j.contains("prepend_scheme")) {
    const std::string s = j.at("prepend_scheme").get<std::string>();
    if (s == "always") prepend = Prepend::Always;
    else if (s == "first") prepend = Prepend::First;
    else if (s == "never") prepend = Prepend::Never;
    else throw TokenizerError(what + ".prepend_scheme " + json(s).dump() + " is not always, first or never");
  } else {
    prepend = flag(j, "add_prefix_space", true, what) ? Prepend::Always : Prepend::Never;
  }
}

void read_pre_tokenizer(Tokenizer::Impl& d, const json& j, const std::string& what) {
  if (j.is_null()) return;
  const std::string type = j.value("type", "");
  PreTokenizer p;
  if (type == "Sequence") {
    only_keys(j, {"type", "pretokenizers"}, what);
    for (const auto& n : j.at("pretokenizers")) read_pre_tokenizer(d, n, what + ".pretokenizers[]");
    return;
  } else if (type == "ByteLevel") {
    only_keys(j, {"type", "add_prefix_space", "trim_offsets", "use_regex"}, what);
    p.kind = PreTokenizer::ByteLevel;
    p.add_prefix_space = flag(j, "add_prefix_space", true, what);
    p.use_regex = flag(j, "use_regex", true, what);
    if (p.use_regex)
      p.regex = std::make_shared<Regex>(
          R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)", what);
  } else if (type == "Split") {
    only_keys(j, {"type", "pattern", "behavior", "invert"}, what);
    p.kind = PreTokenizer::Split;
    p.regex = pattern_regex(j.at("pattern"), what);
    p.behavior = behavior_of(j.at("behavior"), what);
    p.invert = flag(j, "invert", false, what);
  } else if (type == "Digits") {
    only_keys(j, {"type", "individual_digits"}, what);
    p.kind = PreTokenizer::Digits;
    p.individual_digits = flag(j, "individual_digits", false, what);
  } else if (type == "Metaspace") {
    only_keys(j, {"type", "replacement", "prepend_scheme", "split", "add_prefix_space", "str_rep"}, what);
    p.kind = PreTokenizer::Metaspace;
    read_metaspace(j, p.replacement, p.prepend, what);
    p.split = flag(j, "split", true, what);
    if (j.contains("str_rep") && j.at("str_rep") != p.replacement)
      throw TokenizerError(what + ".str_rep " + j.at("str_rep").dump() + " differs from its replacement");
  } else {
    throw TokenizerError(what + ": pre-tokenizer '" + type +
                         "' is not implemented (ByteLevel, Split, Digits, Metaspace and Sequence are)");
  }
  d.pre.push_back(std::move(p));
}

void read_model(Tokenizer::Impl& d, const json& m, const std::string& what) {
  const std::string type = m.value("type", "");
  if (type != "BPE")
    throw TokenizerError(what + ": model '" + type + "' is not implemented (BPE is; WordPiece, Unigram and WordLevel "
                         "are not)");
  only_keys(m, {"type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk",
                "byte_fallback", "ignore_merges", "vocab", "merges"},
            what);
  if (m.contains("dropout") && !m.at("dropout").is_null() && m.at("dropout").get<double>() != 0.0)
    throw TokenizerError(what + ".dropout " + m.at("dropout").dump() + ": BPE dropout is random at encoding; refused");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(k) && !m.at(k).is_null() && m.at(k) != "")
      throw TokenizerError(what + "." + k + " " + m.at(k).dump() + " is not implemented");
  d.byte_fallback = flag(m, "byte_fallback", false, what);
  d.fuse_unk = flag(m, "fuse_unk", false, what);
  d.ignore_merges = flag(m, "ignore_merges", false, what);
  const json& vocab = m.at("vocab");
  if (!vocab.is_object()) throw TokenizerError(what + ".vocab is not an object");
  for (const auto& [tok, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > (int64_t{1} << 24))
      throw TokenizerError(what + ".vocab: the id of " + json(tok).dump() + " is " + id.dump());
    require_utf8(tok, what + ".vocab entry");
    d.vocab[tok] = id.get<int64_t>();
  }
  if (m.contains("unk_token") && !m.at("unk_token").is_null()) {
    const std::string unk = m.at("unk_token").get<std::string>();
    if (!d.vocab.count(unk)) throw TokenizerError(what + ".unk_token " + json(unk).dump() + " is not in the vocabulary");
    d.unk_id = d.vocab.at(unk);
  }
  int64_t rank = 0;
  for (const auto& mg : m.at("merges")) {
    std::string a, b;
    if (mg.is_string()) {  // "a b" (older files)
      const std::string s = mg.get<std::string>();
      const size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) throw TokenizerError(what + ".merges: " + mg.dump() + " is not two tokens");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {  // ["a", "b"]
      a = mg[0].get<std::string>();
      b = mg[1].get<std::string>();
    } else {
      throw TokenizerError(what + ".merges: " + mg.dump() + " is not a merge");
    }
    const auto ia = d.vocab.find(a), ib = d.vocab.find(b), iab = d.vocab.find(a + b);
    if (ia == d.vocab.end() || ib == d.vocab.end() || iab == d.vocab.end())
      throw TokenizerError(what + ".merges: " + mg.dump() + ": a token of it, or their merge, is not in the vocabulary");
    d.merges.emplace(std::make_pair(ia->second, ib->second), std::make_pair(rank++, iab->second));
  }
}

void read_added(Tokenizer::Impl& d, const json& list, const std::string& what) {
  if (list.is_null()) return;
  for (const auto& t : list) {
    only_keys(t, {"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"}, what);
    AddedToken a;
    a.id = t.at("id").get<int64_t>();
    a.content = t.at("content").get<std::string>();
    require_utf8(a.content, what + " content");
    if (a.content.empty()) throw TokenizerError(what + ": an added token with empty content (id " + std::to_string(a.id) + ")");
    if (a.id < 0 || a.id > (int64_t{1} << 24)) throw TokenizerError(what + ": id " + std::to_string(a.id));
    a.special = flag(t, "special", false, what);
    a.single_word = flag(t, "single_word", false, what);
    a.lstrip = flag(t, "lstrip", false, what);
    a.rstrip = flag(t, "rstrip", false, what);
    a.normalized = flag(t, "normalized", !a.special, what);
    a.pattern = a.normalized ? d.normalize(a.content) : a.content;
    if (a.pattern.empty())
      throw TokenizerError(what + ": added token " + json(a.content).dump() + " normalizes to nothing");
    d.added.push_back(std::move(a));
  }
}

void read_post_processor(Tokenizer::Impl& d, const json& j, const std::string& what) {
  if (j.is_null()) return;
  const std::string type = j.value("type", "");
  if (type == "Sequence") {
    only_keys(j, {"type", "processors"}, what);
    for (const auto& p : j.at("processors")) read_post_processor(d, p, what + ".processors[]");
    return;
  }
  if (type == "ByteLevel") return;  // offsets only (trim_offsets): the ids are unchanged
  if (type != "TemplateProcessing")
    throw TokenizerError(what + ": post-processor '" + type +
                         "' is not implemented (TemplateProcessing, ByteLevel and Sequence are)");
  only_keys(j, {"type", "single", "pair", "special_tokens"}, what);
  const json& specials = j.at("special_tokens");
  for (const auto& item : j.at("single")) {
    TemplatePiece p;
    if (item.contains("SpecialToken")) {
      const std::string name = item.at("SpecialToken").at("id").get<std::string>();
      if (!specials.contains(name)) throw TokenizerError(what + ": special token " + json(name).dump() + " is not defined");
      p.special = true;
      for (const auto& id : specials.at(name).at("ids")) p.ids.push_back(id.get<int64_t>());
      for (const auto& tk : specials.at(name).at("tokens")) p.tokens.push_back(tk.get<std::string>());
      if (p.ids.size() != p.tokens.size()) throw TokenizerError(what + ": special token " + name + "'s ids and tokens differ in number");
    } else if (item.contains("Sequence")) {
      if (item.at("Sequence").at("id") != "A")
        throw TokenizerError(what + ": the single template reads sequence " + item.at("Sequence").at("id").dump());
    } else {
      throw TokenizerError(what + ": template piece " + item.dump() + " is not understood");
    }
    d.single.push_back(std::move(p));
  }
}

void read_decoder(Tokenizer::Impl& d, const json& j, const std::string& what) {
  if (j.is_null()) return;
  const std::string type = j.value("type", "");
  DecoderStep s;
  if (type == "Sequence") {
    only_keys(j, {"type", "decoders"}, what);
    for (const auto& n : j.at("decoders")) read_decoder(d, n, what + ".decoders[]");
    return;
  } else if (type == "ByteLevel") {
    only_keys(j, {"type", "add_prefix_space", "trim_offsets", "use_regex"}, what);
    s.kind = DecoderStep::ByteLevel;
  } else if (type == "Replace") {
    only_keys(j, {"type", "pattern", "content"}, what);
    s.kind = DecoderStep::Replace;
    s.regex = pattern_regex(j.at("pattern"), what);
    s.content = j.at("content").get<std::string>();
  } else if (type == "ByteFallback") {
    only_keys(j, {"type"}, what);
    s.kind = DecoderStep::ByteFallback;
  } else if (type == "Fuse") {
    only_keys(j, {"type"}, what);
    s.kind = DecoderStep::Fuse;
  } else if (type == "Strip") {
    only_keys(j, {"type", "content", "start", "stop"}, what);
    s.kind = DecoderStep::Strip;
    s.content = j.at("content").get<std::string>();
    if (s.content.empty() || utf8_at(s.content, 0).second != s.content.size())
      throw TokenizerError(what + ".content " + j.at("content").dump() + " is not one character");
    s.start = j.at("start").get<size_t>();
    s.stop = j.at("stop").get<size_t>();
  } else if (type == "Metaspace") {
    only_keys(j, {"type", "replacement", "prepend_scheme", "split", "add_prefix_space", "str_rep"}, what);
    s.kind = DecoderStep::Metaspace;
    read_metaspace(j, s.content, s.prepend, what);
  } else {
    throw TokenizerError(what + ": decoder '" + type + "' is not implemented (ByteLevel, Replace, ByteFallback, Fuse, "
                         "Strip, Metaspace and Sequence are)");
  }
  d.decoders.push_back(std::move(s));
  d.decoder_names.push_back(type);
}

}  // namespace

// ---------------------------------------------------------------- encoding

std::string Tokenizer::Impl::normalize(const std::string& s) const {
  std::string out = s;
  for (const auto& n : normalizers) {
    switch (n.kind) {
      case NormalizerStep::Form: {
        icu::UnicodeString u = icu::UnicodeString::fromUTF8(out);
        UErrorCode st = U_ZERO_ERROR;
        u = n.form->normalize(u, st);
        if (U_FAILURE(st)) throw TokenizerError(where + ": the normalizer failed (" + std::string(u_errorName(st)) + ")");
        out.clear();
        u.toUTF8String(out);
        break;
      }
      case NormalizerStep::Replace: {
        std::string r;
        size_t prev = 0;
        for (const auto& [b, e] : n.regex->find_all(out)) {
          r.append(out, prev, b - prev);
          r += n.content;
          prev = e;
        }
        r.append(out, prev, std::string::npos);
        out = std::move(r);
        break;
      }
      case NormalizerStep::Prepend:
        if (!out.empty()) out.insert(0, n.content);
        break;
      case NormalizerStep::Strip: {  // Rust's char::is_whitespace: White_Space
        size_t b = 0, e = out.size();
        if (n.left)
          while (b < e && is_space(utf8_at(out, b).first)) b += utf8_at(out, b).second;
        if (n.right)
          while (e > b) {
            size_t k = e - 1;
            while (k > b && (static_cast<unsigned char>(out[k]) & 0xC0) == 0x80) --k;
            if (!is_space(utf8_at(out, k).first)) break;
            e = k;
          }
        out = out.substr(b, e - b);
        break;
      }
    }
  }
  return out;
}

// Splits off the added tokens matched on the raw (normalized_tokens false) or the normalized text: leftmost, longest
// first, with each token's single_word, lstrip and rstrip as tokenizers' AddedVocabulary::find_matches applies them.
// The tokens found are appended to `found`, and stand in the result as pieces whose `added` is their index there.
std::vector<Piece> Tokenizer::Impl::split_added(const Piece& p, bool normalized_tokens,
                                                std::vector<EncodedToken>* found) const {
  std::vector<Piece> out;
  const std::string& s = p.text;
  size_t start_offset = 0, i = 0;
  std::vector<std::tuple<size_t, size_t, const AddedToken*>> splits;  // (b, e, token or null)
  while (i < s.size()) {
    const AddedToken* best = nullptr;
    for (size_t k : added_by_byte[static_cast<unsigned char>(s[i])]) {
      const AddedToken& a = added[k];
      if (a.normalized == normalized_tokens && s.compare(i, a.pattern.size(), a.pattern) == 0 &&
          (!best || a.pattern.size() > best->pattern.size()))
        best = &a;
    }
    if (!best) {
      ++i;
      continue;
    }
    size_t b = i, e = i + best->pattern.size();
    bool take = true;
    if (best->single_word) {
      const bool start_space = b == 0 || !is_word(last_char(s, b));
      const bool stop_space = e == s.size() || !is_word(utf8_at(s, e).first);
      take = start_space && stop_space;
    }
    if (!take) {  // the leftmost-longest search goes on after this match, as aho-corasick's iterator does
      i = e;
      continue;
    }
    if (best->lstrip) {
      size_t nb = b;
      while (nb > 0) {
        size_t k = nb - 1;
        while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
        if (!is_space(utf8_at(s, k).first)) break;
        nb = k;
      }
      b = std::max(nb, start_offset);
    }
    if (best->rstrip)
      while (e < s.size() && utf8_at(s, e).second > 0 && is_space(utf8_at(s, e).first)) e += utf8_at(s, e).second;
    if (start_offset < b) splits.emplace_back(start_offset, b, nullptr);
    splits.emplace_back(b, e, best);
    start_offset = e;
    i = e;
  }
  if (start_offset != s.size() || s.empty()) splits.emplace_back(start_offset, s.size(), nullptr);
  for (const auto& [b, e, tok] : splits) {
    Piece q = sub_piece(p, b, e);
    if (tok) {
      found->push_back({tok->id, tok->content, q.begin, q.end, tok->special, q.exact});
      q.text.clear();
      q.added = static_cast<int64_t>(found->size()) - 1;
    }
    out.push_back(std::move(q));
  }
  return out;
}

std::vector<Piece> Tokenizer::Impl::pre_tokenize(std::vector<Piece> pieces) const {
  for (const auto& pt : pre) {
    std::vector<Piece> next;
    for (auto& piece : pieces) {
      if (pt.kind == PreTokenizer::ByteLevel) {
        std::vector<Piece> parts;
        if (pt.add_prefix_space && piece.text.rfind(" ", 0) != 0) {
          piece.text.insert(0, " ");
          piece.exact = false;  // tokenizers maps the added space onto the first character; so do we, roughly
        }
        parts = pt.use_regex ? split_by(piece, with_gaps(pt.regex->find_all(piece.text), piece.text.size()),
                                        Behavior::Isolated)
                             : std::vector<Piece>{piece};
        for (auto& q : parts) {
          if (q.byte_mapped) throw TokenizerError(where + ": two ByteLevel pre-tokenizers in a row");
          std::string mapped;
          for (unsigned char c : q.text) append_utf8(mapped, byte_chars()[c]);
          q.text = std::move(mapped);
          q.byte_mapped = true;
          next.push_back(std::move(q));
        }
      } else if (pt.kind == PreTokenizer::Metaspace) {
        // Spaces become the replacement character; the prefix per the scheme ("first": only a piece that starts the
        // input); then, with split, a piece per replacement character, joined to what follows it.
        std::string t;
        for (char c : piece.text) t += c == ' ' ? pt.replacement : std::string(1, c);
        const bool starts = t.rfind(pt.replacement, 0) == 0;
        if (!starts && (pt.prepend == Prepend::Always || (pt.prepend == Prepend::First && piece.begin == 0)))
          t.insert(0, pt.replacement);
        if (t != piece.text) {
          piece.text = std::move(t);
          piece.exact = false;
        }
        if (!pt.split) {
          next.push_back(piece);
          continue;
        }
        std::vector<std::pair<size_t, size_t>> cut;
        for (size_t k = piece.text.find(pt.replacement); k != std::string::npos;
             k = piece.text.find(pt.replacement, k + pt.replacement.size()))
          cut.emplace_back(k, k + pt.replacement.size());
        for (auto& q : split_by(piece, with_gaps(cut, piece.text.size()), Behavior::MergedWithNext))
          next.push_back(std::move(q));
      } else if (pt.kind == PreTokenizer::Split) {
        auto m = with_gaps(pt.regex->find_all(piece.text), piece.text.size());
        if (pt.invert)
          for (auto& x : m) x.second = !x.second;
        for (auto& q : split_by(piece, m, pt.behavior)) next.push_back(std::move(q));
      } else {  // Digits: each numeric character (Rust's char::is_numeric) a match; runs joined unless individual
        std::vector<std::pair<size_t, size_t>> cut;
        for (size_t k = 0; k < piece.text.size();) {
          const auto [cp, n] = utf8_at(piece.text, k);
          const int8_t t = u_charType(static_cast<UChar32>(cp));
          if (t == U_DECIMAL_DIGIT_NUMBER || t == U_LETTER_NUMBER || t == U_OTHER_NUMBER) cut.emplace_back(k, k + n);
          k += std::max<size_t>(n, 1);
        }
        const Behavior how = pt.individual_digits ? Behavior::Isolated : Behavior::Contiguous;
        for (auto& q : split_by(piece, with_gaps(cut, piece.text.size()), how)) next.push_back(std::move(q));
      }
    }
    pieces = std::move(next);
  }
  return pieces;
}

// BPE on one pre-token (tokenizers' BPE::merge_word and Word::merge_all).
void Tokenizer::Impl::bpe(const Piece& p, std::vector<EncodedToken>& out) const {
  const std::string& w = p.text;
  if (w.empty()) return;
  SourceOffsets offset{p};
  auto emit = [&](int64_t id, size_t b, size_t e) {
    size_t ob = p.begin, oe = p.end;
    if (p.exact) {
      ob = offset(b);
      oe = offset(e);
    }
    out.push_back({id, id_token.at(static_cast<size_t>(id)), ob, oe, false, p.exact});
  };
  if (ignore_merges) {
    if (auto it = vocab.find(w); it != vocab.end()) {
      emit(it->second, 0, w.size());
      return;
    }
  }
  struct Symbol {
    int64_t id;
    size_t b, e;  // bytes of w
    int prev, next;
    bool gone = false;
  };
  std::vector<Symbol> sym;
  int64_t unk = -1;
  size_t unk_b = 0, unk_e = 0;
  auto add = [&](int64_t id, size_t b, size_t e) {
    const int n = static_cast<int>(sym.size());
    sym.push_back({id, b, e, n - 1, n + 1});
  };
  for (size_t i = 0; i < w.size();) {
    const size_t n = utf8_at(w, i).second;
    const std::string ch = w.substr(i, n);
    if (auto it = vocab.find(ch); it != vocab.end()) {
      if (unk >= 0) add(unk, unk_b, unk_e), unk = -1;
      add(it->second, i, i + n);
    } else {
      bool fell_back = false;
      if (byte_fallback) {
        std::vector<int64_t> ids;
        for (unsigned char c : ch) {
          char code[8];
          std::snprintf(code, sizeof code, "<0x%02X>", c);
          auto f = vocab.find(code);
          if (f == vocab.end()) break;
          ids.push_back(f->second);
        }
        if (ids.size() == ch.size()) {  // a pending unknown stays pending here, as in tokenizers' merge_word
          for (size_t k = 0; k < ids.size(); ++k) add(ids[k], i + k, i + k + 1);
          fell_back = true;
        }
      }
      if (!fell_back && unk_id >= 0) {
        if (unk >= 0 && fuse_unk) {
          unk_e = i + n;
        } else {
          if (unk >= 0) add(unk, unk_b, unk_e);
          unk = unk_id, unk_b = i, unk_e = i + n;
        }
      }
      // neither: the character is dropped, as tokenizers drops it
    }
    i += n;
  }
  if (unk >= 0) add(unk, unk_b, unk_e);
  if (sym.empty()) return;
  sym.back().next = -1;
  struct Merge {
    int64_t rank;
    int pos;
    int64_t new_id;
    bool operator<(const Merge& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }  // min-heap
  };
  std::priority_queue<Merge> queue;
  auto pair_of = [&](int a, int b) { return merges.find({sym[a].id, sym[b].id}); };
  for (int k = 0; k + 1 < static_cast<int>(sym.size()); ++k)
    if (auto it = pair_of(k, k + 1); it != merges.end()) queue.push({it->second.first, k, it->second.second});
  while (!queue.empty()) {
    const Merge top = queue.top();
    queue.pop();
    Symbol& left = sym[top.pos];
    if (left.gone || left.next < 0) continue;
    auto it = pair_of(top.pos, left.next);
    if (it == merges.end() || it->second.second != top.new_id) continue;  // an expired entry
    Symbol& right = sym[left.next];
    left.id = top.new_id;
    left.e = right.e;
    right.gone = true;
    left.next = right.next;
    if (right.next >= 0) sym[right.next].prev = top.pos;
    if (left.prev >= 0)
      if (auto p2 = pair_of(left.prev, top.pos); p2 != merges.end()) queue.push({p2->second.first, left.prev, p2->second.second});
    if (left.next >= 0)
      if (auto n2 = pair_of(top.pos, left.next); n2 != merges.end()) queue.push({n2->second.first, top.pos, n2->second.second});
  }
  for (const auto& s : sym)
    if (!s.gone) emit(s.id, s.b, s.e);
}

std::vector<EncodedToken> Tokenizer::encode_tokens(const std::string& text, bool add_special_tokens) const {
  const Impl& d = *d_;
  require_utf8(text, "the text to encode");
  std::vector<EncodedToken> added;  // the added tokens found, by index
  // 1. Added tokens matched on the raw text; 2. the normalizer on the rest, then those matched on normalized text.
  std::vector<Piece> pieces;
  Piece whole;
  whole.text = text;
  whole.end = text.size();
  for (auto& p : d.split_added(whole, false, &added)) {
    if (p.added >= 0) {
      pieces.push_back(p);
      continue;
    }
    const std::string n = d.normalize(p.text);
    if (n != p.text) {
      p.text = n;
      p.exact = false;
    }
    for (auto& q : d.split_added(p, true, &added)) pieces.push_back(q);
  }
  std::vector<EncodedToken> body;
  for (const auto& p : pieces) {
    if (p.added >= 0) {
      body.push_back(added.at(static_cast<size_t>(p.added)));
      continue;
    }
    if (p.text.empty()) continue;
    for (const auto& q : d.pre_tokenize({p})) d.bpe(q, body);
  }
  if (!add_special_tokens || d.single.empty()) return body;
  std::vector<EncodedToken> out;
  for (const auto& t : d.single) {
    if (!t.special) {
      out.insert(out.end(), body.begin(), body.end());
      continue;
    }
    for (size_t k = 0; k < t.ids.size(); ++k) out.push_back({t.ids[k], t.tokens[k], 0, 0, true, true});
  }
  return out;
}

std::vector<int64_t> Tokenizer::encode(const std::string& text, bool add_special_tokens) const {
  std::vector<int64_t> ids;
  for (const auto& t : encode_tokens(text, add_special_tokens)) ids.push_back(t.id);
  return ids;
}

// ---------------------------------------------------------------- decoding

namespace {

// One decoder of the chain, as tokenizers' decode_chain does it.
std::vector<std::string> decode_step(const DecoderStep& step, std::vector<std::string> tokens) {
  std::vector<std::string> out;
  switch (step.kind) {
    case DecoderStep::ByteLevel: {  // characters back to bytes (a token with another character keeps its UTF-8)
      static const std::unordered_map<char32_t, unsigned char> back = [] {
        std::unordered_map<char32_t, unsigned char> m;
        for (int b = 0; b < 256; ++b) m[byte_chars()[b]] = static_cast<unsigned char>(b);
        return m;
      }();
      std::string bytes;
      for (const auto& t : tokens) {
        std::string mine;
        bool all = true;
        for (size_t i = 0; i < t.size() && all;) {
          const auto [cp, n] = utf8_at(t, i);
          auto it = back.find(cp);
          if (n == 0 || it == back.end()) all = false;
          else mine += static_cast<char>(it->second);
          i += std::max<size_t>(n, 1);
        }
        bytes += all ? mine : t;
      }
      return {utf8_lossy(bytes)};
    }
    case DecoderStep::Replace:
      for (const auto& t : tokens) {
        std::string r;
        size_t prev = 0;
        for (const auto& [b, e] : step.regex->find_all(t)) {
          r.append(t, prev, b - prev);
          r += step.content;
          prev = e;
        }
        r.append(t, prev, std::string::npos);
        out.push_back(std::move(r));
      }
      return out;
    case DecoderStep::ByteFallback: {  // runs of <0xXX> tokens: their bytes if UTF-8, else one U+FFFD per byte
      std::string run;
      size_t run_len = 0;
      auto flush = [&] {
        if (run_len == 0) return;
        bool valid = true;
        for (size_t i = 0; i < run.size() && valid;) {
          const size_t n = utf8_at(run, i).second;
          valid = n > 0;
          i += n;
        }
        if (valid) out.push_back(run);
        else
          for (size_t k = 0; k < run_len; ++k) out.push_back("\xEF\xBF\xBD");
        run.clear();
        run_len = 0;
      };
      for (const auto& t : tokens) {
        const bool hex = t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && std::isxdigit(static_cast<unsigned char>(t[3])) &&
                         std::isxdigit(static_cast<unsigned char>(t[4]));
        if (hex) {
          run += static_cast<char>(std::stoi(t.substr(3, 2), nullptr, 16));
          ++run_len;
          continue;
        }
        flush();
        out.push_back(t);
      }
      flush();
      return out;
    }
    case DecoderStep::Fuse: {
      std::string all;
      for (const auto& t : tokens) all += t;
      return {all};
    }
    case DecoderStep::Strip:  // up to `start` of the character from the front, `stop` from the back
      for (const auto& t : tokens) {
        std::vector<std::pair<size_t, size_t>> chars;  // (byte offset, length)
        for (size_t i = 0; i < t.size();) {
          const size_t n = std::max<size_t>(utf8_at(t, i).second, 1);
          chars.emplace_back(i, n);
          i += n;
        }
        auto is = [&](size_t k) { return t.compare(chars[k].first, chars[k].second, step.content) == 0; };
        size_t b = 0, e = chars.size();
        for (size_t k = 0; k < std::min(step.start, chars.size()) && is(k); ++k) b = k + 1;
        for (size_t k = 0; k < step.stop && k < chars.size() && is(chars.size() - k - 1); ++k) e = chars.size() - k - 1;
        if (e < b) e = b;
        const size_t from = b < chars.size() ? chars[b].first : t.size(), to = e < chars.size() ? chars[e].first : t.size();
        out.push_back(t.substr(from, to - from));
      }
      return out;
    case DecoderStep::Metaspace:  // the replacement back to spaces; in the first token dropped unless "never"
      for (size_t i = 0; i < tokens.size(); ++i) {
        std::string r;
        const std::string& t = tokens[i];
        for (size_t k = 0; k < t.size();) {
          if (t.compare(k, step.content.size(), step.content) == 0) {
            if (!(i == 0 && step.prepend != Prepend::Never)) r += ' ';
            k += step.content.size();
          } else {
            r += t[k++];
          }
        }
        out.push_back(std::move(r));
      }
      return out;
  }
  return tokens;
}

}  // namespace

std::string Tokenizer::id_to_token(int64_t id) const {
  if (id < 0 || id >= static_cast<int64_t>(d_->id_token.size()) || d_->id_token[static_cast<size_t>(id)].empty())
    throw TokenizerError("token id " + std::to_string(id) + " is not in the tokenizer's vocabulary (" +
                         std::to_string(d_->id_token.size()) + " ids)");
  return d_->id_token[static_cast<size_t>(id)];
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  for (int64_t id : ids) {
    const std::string t = id_to_token(id);
    if (skip_special_tokens && d_->special_id[static_cast<size_t>(id)]) continue;
    tokens.push_back(t);
  }
  if (d_->decoders.empty()) {
    std::string out;
    for (size_t k = 0; k < tokens.size(); ++k) out += (k ? " " : "") + tokens[k];
    return out;
  }
  for (const auto& step : d_->decoders) tokens = decode_step(step, std::move(tokens));
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(d_->id_token.size()); }

std::string Tokenizer::describe() const { return d_->description; }

// ---------------------------------------------------------------- loading

Tokenizer Tokenizer::from_json(const json& j, const std::string& where) {
  try {
    return read_tokenizer(j, where);
  } catch (const json::exception& e) {  // a key missing or of the wrong type
    throw TokenizerError(where + ": " + e.what());
  }
}

Tokenizer Tokenizer::read_tokenizer(const json& j, const std::string& where) {
  auto d = std::make_shared<Impl>();
  d->where = where;
  only_keys(j, {"version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer", "post_processor",
                "decoder", "model"},
            where);
  if (!j.contains("model")) throw TokenizerError(where + " has no model");
  // Truncation and padding change what `tokenizers`' encode returns (ids cut at max_length, pad ids added): a file
  // that sets them is refused, naming them, rather than encoded differently from the package.
  for (const char* k : {"truncation", "padding"})
    if (j.contains(k) && !j.at(k).is_null())
      throw TokenizerError(where + ": " + k + " " + j.at(k).dump() + " is set; MechScope encodes without " + k +
                           " (set it to null in tokenizer.json)");
  read_normalizer(*d, j.value("normalizer", json()), where + ": normalizer");
  read_pre_tokenizer(*d, j.value("pre_tokenizer", json()), where + ": pre_tokenizer");
  read_model(*d, j.at("model"), where + ": model");
  read_added(*d, j.value("added_tokens", json()), where + ": added_tokens");
  for (size_t k = 0; k < d->added.size(); ++k)
    d->added_by_byte[static_cast<unsigned char>(d->added[k].pattern[0])].push_back(k);
  read_post_processor(*d, j.value("post_processor", json()), where + ": post_processor");
  read_decoder(*d, j.value("decoder", json()), where + ": decoder");
  int64_t top = -1;
  for (const auto& [t, id] : d->vocab) top = std::max(top, id);
  for (const auto& a : d->added) top = std::max(top, a.id);
  d->id_token.assign(static_cast<size_t>(top + 1), "");
  d->special_id.assign(static_cast<size_t>(top + 1), false);
  for (const auto& [t, id] : d->vocab) d->id_token[static_cast<size_t>(id)] = t;
  for (const auto& a : d->added) {  // an added token's content wins for its id, as tokenizers' decode looks it up first
    d->id_token[static_cast<size_t>(a.id)] = a.content;
    d->special_id[static_cast<size_t>(a.id)] = a.special;
  }
  for (const auto& p : d->single)
    for (int64_t id : p.ids)
      if (id < 0 || id > top) throw TokenizerError(where + ": post_processor's special id " + std::to_string(id) + " is not in the vocabulary");
  std::ostringstream desc;
  desc << "BPE, " << d->vocab.size() << " tokens, "
       << d->merges.size() << " merges, " << d->added.size() << " added tokens";
  if (!d->normalizer_names.empty()) {
    desc << ", normalizer";
    for (const auto& n : d->normalizer_names) desc << " " << n;
  }
  if (!d->decoder_names.empty()) {
    desc << ", decoder";
    for (const auto& n : d->decoder_names) desc << " " << n;
  }
  if (!d->single.empty()) desc << ", special tokens around each sequence";
  d->description = desc.str();
  Tokenizer t;
  t.d_ = std::move(d);
  return t;
}

Tokenizer Tokenizer::with_template(const std::string& bos, const std::string& eos, const std::string& why) const {
  auto d = std::make_shared<Impl>(*d_);
  d->single.clear();
  auto special = [&](const std::string& token, const char* name) {
    int64_t id = -1;
    for (const auto& a : d->added)
      if (a.content == token) id = a.id;
    if (id < 0 && d->vocab.count(token)) id = d->vocab.at(token);
    if (id < 0) throw TokenizerError(why + ": " + name + " " + json(token).dump() + " is not a token of " + d->where);
    TemplatePiece p;
    p.special = true;
    p.ids = {id};
    p.tokens = {token};
    d->single.push_back(p);
  };
  if (!bos.empty()) special(bos, "bos_token");
  d->single.push_back(TemplatePiece{});
  if (!eos.empty()) special(eos, "eos_token");
  if (bos.empty() && eos.empty()) d->single.clear();
  const std::string around = bos.empty() && eos.empty() ? "none" : (bos.empty() ? "" : bos + " ") + "text" + (eos.empty() ? "" : " " + eos);
  const auto at = d->description.find(", special tokens around each sequence");
  if (at != std::string::npos) d->description.erase(at);
  d->description += ", special tokens " + around + " (" + why + ")";
  Tokenizer t;
  t.d_ = std::move(d);
  return t;
}

namespace {

json read_json_text(const std::string& path, uint64_t cap, const std::string& what) {
  std::string text;
  try {
    text = read_file_capped(path, cap, what);
  } catch (const FileError& e) {
    throw TokenizerError(e.what());
  }
  try {
    return parse_json(text);  // nesting bounded before anything is built
  } catch (const std::exception& e) {
    throw TokenizerError("'" + path + "' is not valid JSON: " + e.what());
  }
}

// The classes whose transformers 4 constructor rebuilds the template (update_post_processor), with their defaults.
struct ClassDefaults {
  bool bos, eos;
  std::vector<std::pair<const char*, const char*>> tokens;  // special token defaults: key -> content
};
const std::map<std::string, ClassDefaults>& rebuilding_classes() {
  static const std::map<std::string, ClassDefaults> m = {
      {"LlamaTokenizer", {true, false, {{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"unk_token", "<unk>"}}}},
      {"GemmaTokenizer", {true, false, {{"bos_token", "<bos>"}, {"eos_token", "<eos>"}, {"unk_token", "<unk>"}, {"pad_token", "<pad>"}}}},
      {"GPTNeoXTokenizer",
       {false, false, {{"bos_token", "<|endoftext|>"}, {"eos_token", "<|endoftext|>"}, {"unk_token", "<|endoftext|>"}}}}};
  return m;
}

// A special token of tokenizer_config.json: a string or an AddedToken object {"content": ..., flags}.
json config_token(const json& v, const std::string& where, const std::string& key) {
  if (v.is_string()) return {{"content", v}};
  if (v.is_object() && v.contains("content") && v.at("content").is_string()) return v;
  throw TokenizerError(where + ": " + key + " is " + v.dump() + ", neither a string nor an AddedToken's {\"content\": ...}");
}

// Adds the config's special tokens (and the class's defaults for those it leaves unset) to `file`'s added tokens, as
// transformers does when it builds the tokenizer: a special token that is not an added token yet becomes one, with
// its vocabulary id, or, where the vocabulary lacks it, the next id after every other (as transformers appends it;
// a model without a row for it refuses the id where it is used).
void add_config_specials(json& file, const json& c, const ClassDefaults* defaults, const std::string& where) {
  std::vector<std::pair<std::string, json>> tokens;
  for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}) {
    if (c.contains(key) && !c.at(key).is_null()) {
      tokens.push_back({key, config_token(c.at(key), where, key)});
    } else if (defaults) {
      for (const auto& [k, v] : defaults->tokens)
        if (std::string(k) == key) tokens.push_back({key, {{"content", v}}});
    }
  }
  if (c.contains("additional_special_tokens") && !c.at("additional_special_tokens").is_null()) {
    if (!c.at("additional_special_tokens").is_array())
      throw TokenizerError(where + ": additional_special_tokens is not a list");
    for (const auto& v : c.at("additional_special_tokens"))
      tokens.push_back({"additional_special_tokens", config_token(v, where, "additional_special_tokens")});
  }
  if (!file.contains("added_tokens") || file.at("added_tokens").is_null()) file["added_tokens"] = json::array();
  const json& vocab = file.at("model").at("vocab");
  int64_t next = 0;
  if (vocab.is_object())
    for (const auto& [k, v] : vocab.items()) next = std::max(next, v.is_number_integer() ? v.get<int64_t>() + 1 : next);
  for (const auto& a : file.at("added_tokens"))
    if (a.contains("id") && a.at("id").is_number_integer()) next = std::max(next, a.at("id").get<int64_t>() + 1);
  for (const auto& [key, t] : tokens) {
    const std::string content = t.at("content").get<std::string>();
    bool present = false;
    for (const auto& a : file.at("added_tokens")) present = present || a.value("content", "") == content;
    if (present) continue;
    const bool known = vocab.is_object() && vocab.contains(content);
    json added = {{"id", known ? vocab.at(content) : json(next++)}, {"content", content}, {"special", true}, {"normalized", false},
                  {"lstrip", false}, {"rstrip", false}, {"single_word", false}};
    for (const char* f : {"lstrip", "rstrip", "single_word", "normalized"})
      if (t.contains(f) && t.at(f).is_boolean()) added[f] = t.at(f);
    file["added_tokens"].push_back(added);
  }
}

// ByteLevel's add_prefix_space in a tokenizer.json's pre-tokenizer (or a Sequence's), if it has a ByteLevel step.
std::optional<bool> byte_level_prefix_space(const json& pre) {
  if (!pre.is_object()) return std::nullopt;
  if (pre.value("type", "") == "ByteLevel") return pre.value("add_prefix_space", true);
  if (pre.value("type", "") == "Sequence" && pre.contains("pretokenizers"))
    for (const auto& p : pre.at("pretokenizers"))
      if (auto f = byte_level_prefix_space(p)) return f;
  return std::nullopt;
}

// What else the rebuilding classes' constructors change, MechScope does not: a config that would make them differ
// from the file is refused by name.
void refuse_rebuilt_pre_tokenizer(const json& file, const json& c, const std::string& cls, const std::string& where,
                                  const std::string& path) {
  const auto file_flag = byte_level_prefix_space(file.value("pre_tokenizer", json()));
  if (c.contains("add_prefix_space") && !c.at("add_prefix_space").is_null()) {
    if (cls != "GPTNeoXTokenizer" || !c.at("add_prefix_space").is_boolean() || !file_flag ||
        *file_flag != c.at("add_prefix_space").get<bool>())
      throw TokenizerError(where + ": add_prefix_space " + c.at("add_prefix_space").dump() + " makes transformers 4's " +
                           cls + " rebuild the pre-tokenizer of '" + path + "', which MechScope reads as the file says");
  } else if (cls == "GPTNeoXTokenizer" && file_flag && *file_flag) {  // its default (false) replaces the file's true
    throw TokenizerError(where + ": GPTNeoXTokenizer's add_prefix_space defaults to false, and '" + path +
                         "' adds a prefix space: transformers 4 rebuilds its pre-tokenizer, which MechScope reads as "
                         "the file says (set add_prefix_space to true in the config, or false in the file)");
  }
}

}  // namespace

Tokenizer Tokenizer::from_model_file(const std::string& path) {
  json file = read_json_text(path, uint64_t{256} << 20, "tokenizer");
  const std::string config_path = (std::filesystem::path(path).parent_path() / "tokenizer_config.json").string();
  std::error_code ec;
  if (!std::filesystem::exists(config_path, ec)) return from_json(file, "'" + path + "'");
  const json c = read_json_text(config_path, uint64_t{64} << 20, "tokenizer config");
  const std::string where = "'" + config_path + "'";
  if (!c.is_object()) throw TokenizerError(where + " is not a JSON object");
  std::string cls;
  if (c.contains("tokenizer_class")) {
    if (!c.at("tokenizer_class").is_string()) throw TokenizerError(where + ": tokenizer_class is not a string");
    cls = c.at("tokenizer_class").get<std::string>();
  }
  const std::string shown = cls;
  if (cls.size() > 4 && cls.compare(cls.size() - 4, 4, "Fast") == 0) cls.resize(cls.size() - 4);
  if (cls == "CodeLlamaTokenizer")
    throw TokenizerError(where + ": CodeLlamaTokenizer adds fill-in-the-middle tokens MechScope does not read");
  const auto it = rebuilding_classes().find(cls);
  const ClassDefaults* defaults = it == rebuilding_classes().end() ? nullptr : &it->second;
  if (!file.is_object() || !file.contains("model") || !file.at("model").is_object())
    return from_json(file, "'" + path + "'");  // from_json says what is wrong
  add_config_specials(file, c, defaults, where);
  Tokenizer t = from_json(file, "'" + path + "'");
  if (!defaults) return t;
  refuse_rebuilt_pre_tokenizer(file, c, cls, where, path);
  auto flag = [&](const char* key, bool fallback) {
    if (!c.contains(key) || c.at(key).is_null()) return fallback;
    if (!c.at(key).is_boolean()) throw TokenizerError(where + ": " + key + " is " + c.at(key).dump() + ", not true or false");
    return c.at(key).get<bool>();
  };
  auto token = [&](const char* key) {
    if (c.contains(key) && !c.at(key).is_null()) return config_token(c.at(key), where, key).at("content").get<std::string>();
    for (const auto& [k, v] : defaults->tokens)
      if (std::string(k) == key) return std::string(v);
    return std::string();
  };
  const bool bos = flag("add_bos_token", defaults->bos), eos = flag("add_eos_token", defaults->eos);
  return t.with_template(bos ? token("bos_token") : "", eos ? token("eos_token") : "",
                         "tokenizer_config.json: " + shown + ", add_bos_token " + (bos ? "true" : "false") +
                             ", add_eos_token " + (eos ? "true" : "false"));
}

std::string model_tokenizer_path(const std::string& model, bool required) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_regular_file(model, ec) && fs::path(model).filename() == "tokenizer.json") return model;
  const fs::path dir = fs::is_directory(model, ec) ? fs::path(model) : fs::path(model).parent_path();
  const fs::path t = dir / "tokenizer.json";
  if (fs::is_regular_file(t, ec)) return t.string();
  if (!required) return "";
  throw TokenizerError("'" + model + "' has no tokenizer.json beside it (a MechScope checkpoint carries a tokenizer " +
                       "only when trained on a text task such as kv-text; give --tokenizer FILE)");
}

std::unique_ptr<Tokenizer> model_tokenizer(const std::string& model, const json& task_config, bool required) {
  if (task_config.is_object() && task_config.contains("tokenizer") && task_config.at("tokenizer").is_object())
    return std::make_unique<Tokenizer>(Tokenizer::from_json(task_config.at("tokenizer"), "the tokenizer of '" + model + "'"));
  const std::string path = model_tokenizer_path(model, required);
  if (path.empty()) return nullptr;
  return std::make_unique<Tokenizer>(Tokenizer::from_model_file(path));
}

std::vector<int64_t> encode_prompt(const Tokenizer& tokenizer, const std::string& text, int64_t rows) {
  const std::vector<int64_t> ids = tokenizer.encode(text);
  if (ids.empty()) throw std::invalid_argument("the text encodes to no tokens");
  for (int64_t id : ids)
    if (id >= rows)
      throw std::invalid_argument("the tokenizer gives id " + std::to_string(id) + ", beyond the model's " +
                                  std::to_string(rows) + " embedding rows: tokenizer.json does not belong to this model");
  return ids;
}

std::string token_label(const Tokenizer& tokenizer, int64_t id) {
  std::string out;
  for (char c : tokenizer.decode({id}, false)) out += c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : std::string(1, c);
  return out;
}

Tokenizer Tokenizer::from_file(const std::string& path) {
  std::string text;
  try {
    text = read_file_capped(path, uint64_t{256} << 20, "tokenizer");  // a FIFO refused without blocking
  } catch (const FileError& e) {
    throw TokenizerError(e.what());
  }
  json j;
  try {
    j = parse_json(text);  // nesting bounded before anything is built
  } catch (const std::exception& e) {
    throw TokenizerError("'" + path + "' is not valid JSON: " + e.what());
  }
  return from_json(j, "'" + path + "'");
}

}  // namespace mechscope
