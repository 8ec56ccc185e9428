// speedrun tokenize: text files -> GPT-2 token shards (.bin), one document per file,
// each preceded by <|endoftext|>, split into a val shard and training shards.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "core/files.h"
#include "core/log.h"
#include "data/parallel_encode.h"
#include "data/shard_set_writer.h"
#include "data/tokenizer.h"

namespace speedrun::cli {

namespace fs = std::filesystem;

namespace {

// Documents are read and tokenized in batches of about this many bytes, so memory stays
// bounded however large the corpus is (a single larger document is one batch).
constexpr size_t kBatchBytes = size_t{64} << 20;

struct Options {
  std::vector<std::string> inputs;
  std::string out;
  std::string prefix;
  int64_t shard_tokens = 100'000'000;
  int64_t val_tokens = 0;
  std::string encoder;
  std::string vocab;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  bool force = false;
};

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The option values themselves (counts, ranges, --encoder with --vocab) are checked by
// CLI11 while parsing: a bad one is a usage error (exit 2). Here: the files.
void check_options(const Options& o) {
  // Every input is checked before anything is written, so that no input is left out
  // (or read twice) after shards already exist.
  std::map<std::pair<dev_t, ino_t>, std::string> seen;  // file identity -> first name given
  for (const std::string& input : o.inputs) {
    std::error_code ec;
    const fs::file_status status = fs::status(input, ec);
    if (!fs::exists(status)) throw UserError("tokenize: input file " + input + " does not exist");
    if (fs::is_directory(status))
      throw UserError("tokenize: input " + input + " is a directory; pass its files (e.g. " + input + "/*.txt)");
    if (!fs::is_regular_file(status))
      throw UserError("tokenize: input " + input + " is not a regular file (a pipe or a device); pass text files");
    const int fd = ::open(input.c_str(), O_RDONLY);
    if (fd < 0) throw UserError("tokenize: cannot read input " + input + ": " + errno_string(errno));
    struct stat st {};
    const int rc = ::fstat(fd, &st);
    ::close(fd);
    if (rc != 0) throw UserError("tokenize: cannot read input " + input + ": " + errno_string(errno));
    const auto [it, fresh] = seen.emplace(std::make_pair(st.st_dev, st.st_ino), input);
    if (!fresh)
      throw UserError("tokenize: input " + input + " is the same file as " + it->second +
                      ", given before; each file is one document, so it would be tokenized twice (pass it once)");
  }
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

struct Totals {
  int64_t documents = 0;
  int64_t bytes = 0;
  int64_t tokens = 0;
  double tokenize_seconds = 0;
};

void run_tokenize(const Options& o) {
  const auto start = Clock::now();
  check_options(o);
  const std::string prefix = resolve_prefix(o);
  const data::Gpt2Tokenizer tokenizer = load_tokenizer(o);
  const uint16_t end_of_text = *tokenizer.end_of_text();
  const fs::path dir = o.out;
  ensure_writable_directory(dir);
  clear_old_shards(dir, prefix, o.force);

  data::ShardSetWriter writer({dir, prefix, o.shard_tokens, o.val_tokens});
  Totals totals;
  std::vector<uint16_t> document;
  for (size_t next = 0; next < o.inputs.size();) {
    std::vector<std::string> texts;
    size_t batch_bytes = 0;
    while (next < o.inputs.size() && (texts.empty() || batch_bytes < kBatchBytes)) {
      texts.push_back(read_text_file(o.inputs[next++]));
      if (texts.back().empty())
        spdlog::warn("tokenize: input {} is empty: its document is the <|endoftext|> token alone", o.inputs[next - 1]);
      batch_bytes += texts.back().size();
    }
    const std::vector<std::string_view> views(texts.begin(), texts.end());
    const auto encode_start = Clock::now();
    const std::vector<std::vector<uint16_t>> ids = data::encode_documents(tokenizer, views, o.threads);
    const double encode_seconds = seconds_since(encode_start);
    totals.tokenize_seconds += encode_seconds;
    for (const std::vector<uint16_t>& doc_ids : ids) {
      document.assign(1, end_of_text);  // every document starts with <|endoftext|>
      document.insert(document.end(), doc_ids.begin(), doc_ids.end());
      writer.add_document(document);
      totals.tokens += static_cast<int64_t>(document.size());
    }
    totals.documents += static_cast<int64_t>(texts.size());
    totals.bytes += static_cast<int64_t>(batch_bytes);
    spdlog::info("tokenized {}/{} documents ({:.1f} MB at {:.1f} MB/s)", next, o.inputs.size(), batch_bytes / 1e6,
                 batch_bytes / 1e6 / std::max(encode_seconds, 1e-9));
  }
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
}

}  // namespace

Command add_tokenize_command(CLI::App& app) {
  auto opts = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand(
      "tokenize",
      "GPT-2-tokenize text files into .bin token shards: each file is one document, preceded by <|endoftext|>; the "
      "first documents (--val-tokens) form <prefix>_val_000000.bin, the rest <prefix>_train_000001.bin ...");
  sub->add_option("files", opts->inputs, "input text files, one document each, in this order")->required();
  sub->add_option("--out", opts->out, "output directory (created if needed)")->required();
  sub->add_option("--prefix", opts->prefix, "shard file-name prefix (default: the output directory's name)");
  // At most INT32_MAX: the shard header's token count is an int32.
  sub->add_option("--shard-tokens", opts->shard_tokens, "most tokens per training shard")
      ->check(CLI::Range(int64_t{1}, int64_t{INT32_MAX}))
      ->capture_default_str();
  sub->add_option("--val-tokens", opts->val_tokens,
                  "tokens for the val shard: whole documents from the start until it has at least this many (0: no "
                  "val shard)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  auto* encoder = sub->add_option("--encoder", opts->encoder, "encoder.json (default: the GPT-2 files in data/gpt2)");
  auto* vocab = sub->add_option("--vocab", opts->vocab, "vocab.bpe (with --encoder)");
  encoder->needs(vocab);  // the two go together (or neither: the default GPT-2 files)
  vocab->needs(encoder);
  sub->add_option("--threads", opts->threads, "tokenizer threads (default: all hardware threads)")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  sub->add_flag("--force", opts->force, "replace existing <prefix>_*.bin files in the output directory");
  return {sub, [opts] { run_tokenize(*opts); }};
}

}  // namespace speedrun::cli
