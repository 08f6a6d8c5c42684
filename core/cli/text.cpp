// mechscope-cli tokenize: text through a model's tokenizer.json (core/text/tokenizer.h), as ids or, with --json,
// ids, token strings and the input bytes each covers.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/cli/cli_util.h"
#include "core/cli/commands.h"
#include "core/io/checkpoint.h"
#include "core/io/import.h"
#include "core/io/tokens.h"
#include "core/model/generate.h"
#include "core/model/model.h"
#include "core/text/kv_retrieval.h"
#include "core/text/phone_book.h"
#include "core/text/scoring.h"
#include "core/text/tokenizer.h"
#include "core/util/files.h"

namespace mechscope::cli {

using nlohmann::json;

namespace {

std::string read_text_file(const std::string& path) { return read_file_capped(path, uint64_t{64} << 20, "text file"); }

}  // namespace

std::vector<int64_t> typed_input(const TypedInput& in, const std::string& model, const std::vector<std::string>& vocab,
                                 int64_t rows, const json& task_config) {
  if (!in.text.empty() || !in.text_file.empty()) {
    const std::unique_ptr<Tokenizer> tok = model_tokenizer(model, task_config);
    return encode_prompt(*tok, in.text_file.empty() ? in.text : read_text_file(in.text_file), rows);
  }
  return in.tokens.empty() ? read_token_file(in.tokens_file, vocab, rows) : parse_tokens(in.tokens, vocab, rows);
}

int run_tokenize(const TokenizeOptions& o) {
  if (o.model.empty() == o.tokenizer.empty())
    throw std::invalid_argument("tokenize: give exactly one of --checkpoint (a model with tokenizer.json) or --tokenizer");
  if ((o.text.empty() ? 0 : 1) + (o.text_file.empty() ? 0 : 1) + (o.ids.empty() ? 0 : 1) != 1)
    throw std::invalid_argument("tokenize: give exactly one of --text, --text-file or --decode");
  std::string path = o.tokenizer;
  std::unique_ptr<Tokenizer> own;
  if (path.empty() && is_native_checkpoint(o.model)) {  // a checkpoint trained on a text task carries its tokenizer
    own = model_tokenizer(o.model, load_checkpoint(o.model).task_config, false);
    path = o.model;
  }
  if (!own && path.empty()) path = model_tokenizer_path(o.model);
  const Tokenizer tok = own ? *own : Tokenizer::from_model_file(path);
  if (!o.ids.empty()) {
    const std::string text = tok.decode(o.ids, !o.keep_special);
    if (o.json) std::cout << json({{"tokenizer", path}, {"ids", o.ids}, {"text", text}}).dump(2) << "\n";
    else std::cout << text << "\n";
    return 0;
  }
  const std::string text = o.text_file.empty() ? o.text : read_text_file(o.text_file);
  const auto toks = tok.encode_tokens(text, !o.no_special);
  if (!o.json) {
    for (size_t k = 0; k < toks.size(); ++k) std::cout << (k ? "," : "") << toks[k].id;
    std::cout << "\n";
    return 0;
  }
  json list = json::array();
  for (const auto& t : toks)
    list.push_back({{"id", t.id},
                    {"token", t.token},
                    {"bytes", {t.begin, t.end}},
                    {"text", text.substr(t.begin, t.end - t.begin)},
                    {"special", t.special},
                    {"exact", t.exact}});  // false: "bytes" is the whole piece a normalizer changed
  std::cout << json({{"tokenizer", path}, {"describe", tok.describe()}, {"tokens", list}})
                   .dump(2, ' ', false, json::error_handler_t::replace)
            << "\n";
  return 0;
}

int run_generate(const GenerateOptions& o) {
  if (o.input.given() != 1)
    throw std::invalid_argument("generate: give exactly one of --tokens, --tokens-file, --text or --text-file");
  if (o.max_new_tokens < 1 || o.max_new_tokens > 100000) throw std::invalid_argument("generate: --max-new must be in 1..100000");
  Checkpoint ck = open_checkpoint(o.checkpoint, o.dtype);
  ck.model->eval();
  const int64_t rows = ck.config.padded_vocab_size();
  const std::vector<int64_t> prompt = typed_input(o.input, o.checkpoint, ck.vocab, rows, ck.task_config);
  const std::unique_ptr<Tokenizer> tok = model_tokenizer(o.checkpoint, ck.task_config, false);
  GenerationOptions g;
  g.max_new_tokens = o.max_new_tokens;
  g.stop = o.stop;
  if (!o.stop_text.empty()) {
    if (!tok) throw std::invalid_argument("generate: --stop-text needs the model's tokenizer; give --stop ids");
    const std::vector<int64_t> ids = tok->encode(o.stop_text, false);
    if (ids.size() != 1)
      throw std::invalid_argument("generate: --stop-text is " + std::to_string(ids.size()) + " tokens; it must be one");
    g.stop.push_back(ids[0]);
  }
  for (int64_t id : g.stop)
    if (id < 0 || id >= rows) throw std::invalid_argument("generate: stop id " + std::to_string(id) + " is not a row of the model");
  const at::Tensor p = at::tensor(prompt, at::kLong).unsqueeze(0);
  const auto t0 = std::chrono::steady_clock::now();
  const at::Tensor out = o.reference ? greedy_generate_reference(*ck.model, p, g) : greedy_generate(*ck.model, p, g);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::vector<int64_t> ids;
  for (int64_t k = 0; k < out.size(1) && out[0][k].item<int64_t>() >= 0; ++k) ids.push_back(out[0][k].item<int64_t>());
  std::string text;
  if (tok) {
    text = tok->decode(ids, false);
  } else {
    for (size_t k = 0; k < ids.size(); ++k)
      text += (k ? " " : "") + (ids[k] < static_cast<int64_t>(ck.vocab.size()) ? ck.vocab[static_cast<size_t>(ids[k])] : std::to_string(ids[k]));
  }
  if (o.json) {
    std::cout << json({{"prompt_ids", prompt}, {"ids", ids}, {"text", text}, {"ms", ms},
                       {"caches", !o.reference}}).dump(2, ' ', false, json::error_handler_t::replace) << "\n";
    return 0;
  }
  std::cerr << "prompt " << prompt.size() << " tokens; " << ids.size() << " generated in " << static_cast<int64_t>(ms)
            << " ms" << (o.reference ? " (full forward each step)" : "") << "\n";
  std::cout << text << "\n";
  for (size_t k = 0; k < ids.size(); ++k) std::cout << (k ? "," : "") << ids[k];
  std::cout << "\n";
  return 0;
}

int run_make_dataset(const MakeDatasetOptions& o) {
  if (o.kind != "kv-retrieval" && o.kind != "phone-book")
    throw std::invalid_argument("make-dataset: unknown kind '" + o.kind + "'; kinds: kv-retrieval, phone-book");
  if (o.examples < 1 || o.examples > 1000000) throw std::invalid_argument("make-dataset: --examples must be in 1..1000000");
  const bool kv = o.kind == "kv-retrieval";
  if (kv && o.model.empty() == o.tokenizer.empty())
    throw std::invalid_argument("make-dataset kv-retrieval: give exactly one of --checkpoint (a model with tokenizer.json) "
                                "or --tokenizer (its values must be one token each)");
  const std::string path = !kv ? "" : o.tokenizer.empty() ? model_tokenizer_path(o.model) : o.tokenizer;
  refuse_overwrite(o.out, o.force, {path});
  std::string text, what;
  int64_t without = 0;
  if (kv) {
    const Tokenizer tok = Tokenizer::from_model_file(path);
    const KvRetrievalConfig c = KvRetrievalConfig::from_json(
        {{"min_pairs", o.min_pairs}, {"max_pairs", o.max_pairs}, {"values", o.values}, {"queries", o.queries}},
        "make-dataset");
    const std::vector<int64_t> values = kv_retrieval_values(c, tok);
    for (int64_t i = 0; i < o.examples; ++i) {
      const json line = kv_retrieval_line(c, values, o.seed + static_cast<uint64_t>(i), tok);
      without += line.contains("corrupted") ? 0 : 1;
      text += line.dump() + "\n";
    }
    what = "kv-retrieval prompts (" + std::to_string(c.min_pairs) + "-" + std::to_string(c.max_pairs) + " pairs, values 0-" +
           std::to_string(c.values - 1) + (c.queries > 1 ? ", " + std::to_string(c.queries) + " queries" : "");
  } else {
    const PhoneBookConfig c = PhoneBookConfig::from_json({{"min_entries", o.min_entries}, {"max_entries", o.max_entries}},
                                                         "make-dataset");
    for (int64_t i = 0; i < o.examples; ++i) text += phone_book_line(c, o.seed + static_cast<uint64_t>(i)).dump() + "\n";
    what = "phone-book prompts (" + std::to_string(c.min_entries) + "-" + std::to_string(c.max_entries) + " entries";
  }
  write_file_atomically(o.out, text);
  std::cout << "wrote " << o.examples << " " << what << ", seeds " << o.seed << ".." << o.seed + o.examples - 1 << ") to "
            << o.out << "\n";
  if (without > 0)
    std::cerr << "note: " << without << " prompts have no \"corrupted\" twin (no other key gives as many tokens); "
              << "patching needs one on every line\n";
  return 0;
}

int run_score(const ScoreOptionsCli& o) {
  const ScoreBy by = score_by(o.by);
  if (o.examples < 0) throw std::invalid_argument("score: --examples must be positive");
  if (o.max_new_tokens < 1 || o.max_new_tokens > 100000) throw std::invalid_argument("score: --max-new must be in 1..100000");
  if (!o.csv.empty()) refuse_overwrite(o.csv, o.force, {o.checkpoint, o.dataset});
  Checkpoint ck = open_checkpoint(o.checkpoint, o.dtype);
  ck.model->eval();
  const std::unique_ptr<Tokenizer> tok = model_tokenizer(o.checkpoint, ck.task_config, false);
  const std::vector<PromptLine> lines = read_prompt_lines(o.dataset, tok.get(), ck.config.padded_vocab_size(), o.examples);
  ScoreOptions so;
  so.by = by;
  so.max_new_tokens = o.max_new_tokens;
  const bool tty = !o.json && ::isatty(2);  // progress on a terminal only (a log would get one line per prompt)
  if (tty)
    so.progress = [](double f, const std::string& w) {
      std::cerr << "\r" << static_cast<int>(100 * f) << "% " << w << "\033[K" << std::flush;
    };
  const std::vector<LineScore> scores = score_lines(*ck.model, lines, tok.get(), so);
  if (tty) std::cerr << "\r\033[K" << std::flush;
  double right = 0, lp = 0;
  for (const auto& s : scores) right += s.correct ? 1 : 0, lp += std::isnan(s.logprob) ? 0 : s.logprob;
  const double n = static_cast<double>(scores.size());
  const std::string measure = by == ScoreBy::Generation ? "exact match" : by == ScoreBy::Choice ? "multiple-choice accuracy"
                                                                                                 : "greedy accuracy";
  if (!o.csv.empty()) {
    std::string csv = "line,logprob,correct,chosen,generated\n";
    for (const auto& s : scores)
      csv += std::to_string(s.line) + "," + (std::isnan(s.logprob) ? std::string() : fmt("%.6f", s.logprob)) + "," +
             (s.correct ? "1" : "0") + "," + (s.chosen >= 0 ? std::to_string(s.chosen) : std::string()) + "," +
             csv_quote(s.generated) + "\n";
    write_file_atomically(o.csv, csv);
  }
  if (o.json) {
    json rows = json::array();
    for (const auto& s : scores)
      rows.push_back({{"line", s.line}, {"logprob", std::isnan(s.logprob) ? json() : json(s.logprob)}, {"correct", s.correct},
                      {"chosen", s.chosen}, {"generated", s.generated}});
    std::cout << json({{"by", o.by}, {"lines", scores.size()}, {"accuracy", right / n},
                       {"mean_logprob", by == ScoreBy::Generation ? json() : json(lp / n)}, {"scores", rows}})
                     .dump(2, ' ', false, json::error_handler_t::replace)
              << "\n";
    return 0;
  }
  std::cout << "score by " << o.by << " on " << scores.size() << " lines of " << o.dataset << ": " << measure << " "
            << fmt("%.3f", right / n) << " (" << static_cast<int64_t>(right) << " of " << scores.size() << ")";
  if (by != ScoreBy::Generation) std::cout << ", mean answer log-probability " << fmt("%.4f", lp / n);
  std::cout << "\n";
  if (!o.csv.empty()) std::cout << "wrote " << o.csv << "\n";
  return 0;
}

}  // namespace mechscope::cli
