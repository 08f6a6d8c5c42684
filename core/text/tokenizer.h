// Text in: a Hugging Face tokenizer.json read and run as the `tokenizers` package runs it (docs/text.md), for the
// byte-level BPE tokenizers of GPT-2, GPT-NeoX/Pythia, Mamba, Llama 3, Qwen and OLMo. Encoding: added tokens split
// off first (those matched on the raw text, then, after the normalizer, those matched on normalized text), the
// pre-tokenizers (ByteLevel, Split with the file's own regex run by Oniguruma, the engine `tokenizers` uses), BPE
// merges by rank, and the post-processor's special tokens. Decoding: the ByteLevel decoder, special tokens skipped
// unless asked for. Every component, option or value this reader does not implement is refused by name.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mechscope {

class TokenizerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One token of an encoding: its id, its vocabulary string, and the bytes of the input it covers ([begin, end);
/// within a piece the normalizer changed, every token of the piece covers the whole piece; the post-processor's
/// special tokens cover nothing: begin == end == 0).
struct EncodedToken {
  int64_t id = 0;
  std::string token;
  size_t begin = 0, end = 0;
  bool special = false;
  bool exact = true;  ///< begin and end are this token's own bytes (false: the whole piece a normalizer changed)
};

class Tokenizer {
 public:
  /// Reads tokenizer.json (at most 256 MiB). Throws TokenizerError naming the file and what is not supported.
  static Tokenizer from_file(const std::string& path);
  /// The same from parsed JSON; `where` names it in errors.
  static Tokenizer from_json(const nlohmann::json& j, const std::string& where);
  /// A model's tokenizer.json at `path` with the special tokens the tokenizer_config.json beside it asks for, as
  /// transformers 4 loads it: where the config's tokenizer_class is one that builds its own template
  /// (Llama, CodeLlama, Gemma, GPT-NeoX; slow or fast names), BOS and EOS come from its add_bos_token and
  /// add_eos_token (the class's defaults where absent) and its bos_token and eos_token; any other class, or no
  /// config, keeps the file's template. A value of the wrong type, or a token the vocabulary lacks, is refused by name.
  static Tokenizer from_model_file(const std::string& path);
  /// This tokenizer with its template replaced by `bos` (if not empty), the text, `eos` (if not empty); `why` says
  /// where they came from in describe() and errors. Each must be a token of the vocabulary (or an added token).
  Tokenizer with_template(const std::string& bos, const std::string& eos, const std::string& why) const;

  /// The ids of `text` (UTF-8; invalid UTF-8 is refused), with the post-processor's special tokens when
  /// `add_special_tokens` (what `tokenizers`' encode does by default).
  std::vector<int64_t> encode(const std::string& text, bool add_special_tokens = true) const;
  /// The same with each token's string and input bytes.
  std::vector<EncodedToken> encode_tokens(const std::string& text, bool add_special_tokens = true) const;
  /// The text of `ids` (the decoder's; invalid UTF-8 in byte-level tokens becomes U+FFFD as `tokenizers` does);
  /// special added tokens are left out when `skip_special_tokens` (`tokenizers`' default). An id outside the
  /// vocabulary is refused by value.
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = true) const;
  /// The vocabulary string of `id` (the model's or an added token's); throws for an unknown id.
  std::string id_to_token(int64_t id) const;
  /// One more than the largest id (model vocabulary and added tokens).
  int64_t vocab_size() const;
  /// What the file holds, in words ("BPE, byte-level, 50257 tokens, normalizer NFC, ...").
  std::string describe() const;

  struct Impl;

 private:
  static Tokenizer read_tokenizer(const nlohmann::json& j, const std::string& where);
  std::shared_ptr<const Impl> d_;
};

/// The tokenizer.json of a model: the file itself, beside its config.json or weights, or in its folder; "" when
/// there is none and not `required` (else a TokenizerError saying so).
std::string model_tokenizer_path(const std::string& model, bool required = true);
/// A model's tokenizer: the one its task carries (a checkpoint trained on a text task: `task_config`'s "tokenizer"
/// object), else the tokenizer.json beside it read with its tokenizer_config.json (Tokenizer::from_model_file);
/// null when there is none and not `required`.
std::unique_ptr<Tokenizer> model_tokenizer(const std::string& model, const nlohmann::json& task_config, bool required = true);
/// A prompt's ids for a model with `rows` embedding rows: `text` with the tokenizer's special tokens (BOS); throws
/// std::invalid_argument when it encodes to nothing or to an id beyond the rows (another model's tokenizer).
std::vector<int64_t> encode_prompt(const Tokenizer& tokenizer, const std::string& text, int64_t rows);
/// A token's text for people: its decoding (special tokens kept), with newlines, tabs and carriage returns
/// written as \n, \t, \r so that an axis label stays on one line.
std::string token_label(const Tokenizer& tokenizer, int64_t id);

}  // namespace mechscope
