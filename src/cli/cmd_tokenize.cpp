// speedrun tokenize: a corpus (text files, JSON Lines, directories, file lists, standard
// input: data/corpus_inputs.h) -> GPT-2 token shards (.bin), each document preceded by
// <|endoftext|>, split into a val shard and training shards.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/fmt/fmt.h>

#include "cli/commands.h"
#include "core/error.h"
#include "core/files.h"
#include "core/log.h"
#include "data/corpus_inputs.h"
#include "data/parallel_encode.h"
#include "data/shard_set_writer.h"
#include "data/tokenizer.h"
#include "train/progress.h"

namespace speedrun::cli {

namespace fs = std::filesystem;

namespace {

// Documents are read and tokenized in batches of about this many bytes, so memory stays
// bounded however large the corpus is (a single larger document is one batch). A corpus
// of a few hundred MB or less gets smaller batches (a twentieth of it), so that its
// progress moves, but at least kChunksPerThread of the encoder's 1 MB chunks per thread,
// so that the threads do not wait on each batch's last chunk.
constexpr size_t kBatchBytes = size_t{64} << 20;
constexpr size_t kChunksPerThread = 4;
// Progress (with an ETA) is shown for inputs larger than this, or of unknown size (stdin).
constexpr int64_t kProgressBytes = int64_t{4} << 20;
// The default val split: about a tenth of the corpus, estimated at GPT-2's ~4 bytes per
// token of English, at most Track 3's data.val_tokens (20 x 524288).
constexpr int64_t kBytesPerTokenEstimate = 4;
constexpr int64_t kMaxAutoValTokens = 10'485'760;

struct Options {
  std::vector<std::string> inputs;
  std::string out;
  std::string prefix;
  std::string jsonl_field;
  std::string glob;
  int64_t shard_tokens = 100'000'000;
  int64_t val_tokens = 0;
  bool val_tokens_given = false;  // else the automatic split
  std::string encoder;
  std::string vocab;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  bool force = false;
};

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The default prefix is the output directory's name: --out data/sotu -> sotu_*.bin.
std::string resolve_prefix(const Options& o) {
  std::string prefix = o.prefix;
  if (prefix.empty()) prefix = fs::absolute(o.out).lexically_normal().filename().string();
  if (prefix.empty() || prefix == "." || prefix == "..") prefix = "tokens";
  if (prefix.find('/') != std::string::npos)
    throw UserError("tokenize: --prefix " + prefix + " must be a file-name prefix, without '/'");
  return prefix;
}

// Refuses to mix new shards with old ones; --force removes the old ones first.
void clear_old_shards(const fs::path& dir, const std::string& prefix, bool force) {
  const std::vector<fs::path> old = data::ShardSetWriter::existing_shards(dir, prefix);
  if (old.empty()) return;
  if (!force)
    throw UserError("tokenize: " + dir.string() + " already holds " + std::to_string(old.size()) + " " + prefix +
                    "_*.bin file(s), e.g. " + old.front().string() +
                    "; refusing to overwrite (use --force to replace them, or another --out/--prefix)");
  for (const fs::path& path : old) {
    std::error_code ec;
    fs::remove(path, ec);
    if (ec) throw UserError("tokenize: cannot remove old shard " + path.string() + ": " + ec.message());
  }
  spdlog::info("removed {} old {}_*.bin file(s) from {}", old.size(), prefix, dir.string());
}

data::Gpt2Tokenizer load_tokenizer(const Options& o) {
  data::Gpt2Tokenizer tokenizer =
      o.encoder.empty() ? data::Gpt2Tokenizer::load_default() : data::Gpt2Tokenizer::load(o.encoder, o.vocab);
  if (!tokenizer.end_of_text())
    throw UserError("tokenize: the tokenizer has no <|endoftext|> token, which separates documents in shards");
  return tokenizer;
}

// Progress of a long tokenization (over kProgressBytes) on stderr: redrawn in place on a
// terminal, else a line at the first batch, at most every 10 s, and at the end, as the
// trainer's progress does.
class TokenizeProgress {
 public:
  // total_bytes < 0: unknown (standard input); shown once kProgressBytes were read.
  explicit TokenizeProgress(int64_t total_bytes) : total_(total_bytes), live_(::isatty(STDERR_FILENO) == 1) {}
  void update(int64_t bytes, int64_t documents, double seconds, bool last) {
    if (total_ >= 0 ? total_ <= kProgressBytes : bytes <= kProgressBytes) return;
    if (spdlog::get_level() > spdlog::level::info) return;  // --quiet
    if (!live_ && !last && printed_ && seconds - last_print_ < 10.0) return;
    printed_ = true;
    last_print_ = seconds;
    const double rate = static_cast<double>(bytes) / 1e6 / std::max(seconds, 1e-9);
    std::string line;
    if (total_ > 0) {
      const double eta = rate > 0 ? static_cast<double>(total_ - bytes) / 1e6 / rate : 0.0;
      line = fmt::format("tokenize: {:.1f} of {:.1f} MB ({:.0f}%), {} documents, {:.1f} MB/s, ETA {}", bytes / 1e6,
                         total_ / 1e6, 100.0 * static_cast<double>(bytes) / static_cast<double>(total_), documents,
                         rate, train::format_duration(eta));
    } else {
      line = fmt::format("tokenize: {:.1f} MB, {} documents, {:.1f} MB/s (size unknown: no ETA)", bytes / 1e6,
                         documents, rate);
    }
    if (live_) std::fprintf(stderr, "\r\033[2K%s%s", line.c_str(), last ? "\n" : "");
    else std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
  }

 private:
  int64_t total_;
  bool live_, printed_ = false;
  double last_print_ = 0.0;
};

struct Totals {
  int64_t documents = 0;
  int64_t bytes = 0;
  int64_t tokens = 0;
  double tokenize_seconds = 0;
};

// What a run config needs from these shards: the globs and how many val tokens there are.
void print_how_to_train(const std::vector<data::ShardInfo>& shards, const fs::path& dir, const std::string& prefix,
                        const Options& o) {
  const data::ShardInfo* val = nullptr;
  for (const data::ShardInfo& s : shards)
    if (s.path.filename().string().starts_with(prefix + "_val_")) val = &s;
  std::printf("run config: \"data\": {\"train_glob\": \"%s\"", (dir / (prefix + "_train_*.bin")).c_str());
  if (val != nullptr) {
    std::printf(", \"val_glob\": \"%s\", \"val_tokens\": N} with N at most %lld and a multiple of model.seq_len\n",
                (dir / (prefix + "_val_*.bin")).c_str(), static_cast<long long>(val->num_tokens - 1));
  } else {
    std::printf(", ...}\nno val shard (%s), and a run needs one (data.val_glob): rerun with --val-tokens N (the "
                "first whole documents, at least N tokens, go to %s_val_000000.bin), or tokenize held-out text "
                "into the same --out with another --prefix\n",
                o.val_tokens_given ? "--val-tokens 0" : "the input is a single document, which the split does not cut",
                prefix.c_str());
  }
}

void run_tokenize(const Options& o) {
  const auto start = Clock::now();
  // Every input is checked before anything is written, so that no input is left out
  // (or read twice) after shards already exist.
  std::vector<data::CorpusInput> inputs = data::expand_corpus_inputs(o.inputs, {o.jsonl_field, o.glob});
  const std::string prefix = resolve_prefix(o);
  const data::Gpt2Tokenizer tokenizer = load_tokenizer(o);
  const uint16_t end_of_text = *tokenizer.end_of_text();
  const fs::path dir = o.out;
  ensure_writable_directory(dir);
  clear_old_shards(dir, prefix, o.force);

  int64_t total_bytes = 0;  // -1: unknown (standard input)
  for (const data::CorpusInput& in : inputs)
    total_bytes = in.bytes < 0 || total_bytes < 0 ? -1 : total_bytes + in.bytes;
  int64_t val_tokens = o.val_tokens;
  if (!o.val_tokens_given)
    val_tokens = total_bytes < 0 ? 1  // unknown size: the first document
                                 : std::clamp<int64_t>(total_bytes / kBytesPerTokenEstimate / 10, 1, kMaxAutoValTokens);
  data::ShardSetWriter writer({dir, prefix, o.shard_tokens, val_tokens, /*val_optional=*/!o.val_tokens_given});
  const size_t min_batch = std::min(kBatchBytes, static_cast<size_t>(o.threads) * kChunksPerThread *
                                                     data::kDefaultChunkBytes);
  const size_t batch_bytes = total_bytes < 0 ? kBatchBytes
                                             : std::clamp<size_t>(static_cast<size_t>(total_bytes) / 20, min_batch,
                                                                  kBatchBytes);
  TokenizeProgress progress(total_bytes);
  data::DocumentReader reader(std::move(inputs), o.jsonl_field);
  Totals totals;
  std::vector<uint16_t> document;
  std::vector<std::string> texts;
  for (texts.clear(); reader.next_batch(texts, batch_bytes); texts.clear()) {
    const std::vector<std::string_view> views(texts.begin(), texts.end());
    const auto encode_start = Clock::now();
    const std::vector<std::vector<uint16_t>> ids = data::encode_documents(tokenizer, views, o.threads);
    totals.tokenize_seconds += seconds_since(encode_start);
    for (const std::vector<uint16_t>& doc_ids : ids) {
      document.assign(1, end_of_text);  // every document starts with <|endoftext|>
      document.insert(document.end(), doc_ids.begin(), doc_ids.end());
      writer.add_document(document);
      totals.tokens += static_cast<int64_t>(document.size());
    }
    for (const std::string& t : texts) totals.bytes += static_cast<int64_t>(t.size());
    progress.update(reader.bytes_read(), reader.documents(), seconds_since(start), false);
  }
  totals.documents = reader.documents();
  if (totals.documents == 0) throw UserError("tokenize: the inputs hold no document (JSON Lines without a record?)");
  progress.update(reader.bytes_read(), reader.documents(), seconds_since(start), true);
  const std::vector<data::ShardInfo> shards = writer.finish();

  std::printf("documents:  %lld\n", static_cast<long long>(totals.documents));
  std::printf("bytes:      %lld\n", static_cast<long long>(totals.bytes));
  std::printf("tokens:     %lld (including %lld <|endoftext|>)\n", static_cast<long long>(totals.tokens),
              static_cast<long long>(totals.documents));
  std::printf("shards:     %zu\n", shards.size());
  for (const data::ShardInfo& shard : shards)
    std::printf("  %s  %lld tokens\n", shard.path.string().c_str(), static_cast<long long>(shard.num_tokens));
  std::printf("seconds:    %.3f tokenizing (%d threads), %.3f total\n", totals.tokenize_seconds, o.threads,
              seconds_since(start));
  std::printf("throughput: %.2f MB/s\n", totals.bytes / 1e6 / std::max(totals.tokenize_seconds, 1e-9));
  print_how_to_train(shards, fs::absolute(dir).lexically_normal(), prefix, o);
}

}  // namespace

Command add_tokenize_command(CLI::App& app) {
  auto opts = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand(
      "tokenize",
      "GPT-2-tokenize a corpus into .bin token shards: each document preceded by <|endoftext|>; the first documents "
      "(--val-tokens) form <prefix>_val_000000.bin, the rest <prefix>_train_000001.bin ...");
  sub->add_option("inputs", opts->inputs,
                  "in this order: text files (one document each), directories (their files matching --glob, "
                  "recursively), @LIST (the paths in file LIST, one per line), - (standard input); with "
                  "--jsonl-field, JSON Lines instead of text")
      ->required();
  sub->add_option("--out", opts->out, "output directory (created if needed)")->required();
  sub->add_option("--prefix", opts->prefix, "shard file-name prefix (default: the output directory's name)");
  sub->add_option("--jsonl-field", opts->jsonl_field,
                  "the inputs are JSON Lines: one document per line, the string under this key (e.g. text)");
  sub->add_option("--glob", opts->glob,
                  "the files a directory input contributes, matched against the file name, or against the path "
                  "below the directory when the glob holds a '/' (default: *.txt; with --jsonl-field, *.jsonl)");
  // At most INT32_MAX: the shard header's token count is an int32.
  sub->add_option("--shard-tokens", opts->shard_tokens, "most tokens per training shard")
      ->check(CLI::Range(int64_t{1}, int64_t{INT32_MAX}))
      ->capture_default_str();
  auto* val_tokens =
      sub->add_option("--val-tokens", opts->val_tokens,
                      "tokens of the val shard <prefix>_val_000000.bin: whole documents from the start until it has "
                      "at least this many; 0: no val shard (default: about a tenth of the input, at most 10485760; "
                      "from standard input the first document; none for a single-document input)")
          ->check(CLI::NonNegativeNumber);
  auto* encoder = sub->add_option("--encoder", opts->encoder, "encoder.json (default: the GPT-2 files in data/gpt2)");
  auto* vocab = sub->add_option("--vocab", opts->vocab, "vocab.bpe (with --encoder)");
  encoder->needs(vocab);  // the two go together (or neither: the default GPT-2 files)
  vocab->needs(encoder);
  sub->add_option("--threads", opts->threads, "tokenizer threads (default: all hardware threads)")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  sub->add_flag("--force", opts->force, "replace existing <prefix>_*.bin files in the output directory");
  return {sub, [opts, val_tokens] {
            opts->val_tokens_given = val_tokens->count() > 0;
            run_tokenize(*opts);
          }};
}

}  // namespace speedrun::cli
